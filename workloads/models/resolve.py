"""Resolve a model reference (see ``workloads.models.refs``) to a directory ``transformers`` loads.

Resolved copies live under ``<cache>/models`` and are written atomically. An alias
(``models:/name@champion``) is pinned to its version first, so the cache never hands out the
model an alias named before a promotion. MLflow references are cached under the logged model
they come down to, when MLflow names one, so a run's model and its registered version share a
copy.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tuneops.core.errors import UserError
from tuneops.core.io import atomic_dir
from tuneops.core.paths import default_tracking_uri
from tuneops.core.s3 import download_prefix, split_uri
from workloads.models.embedded import ensure_embedded, models_cache
from workloads.models.refs import DEFAULT_MODEL, parse_ref
from workloads.models.registry import logged_model_id, pin_alias


def _digest(ref: str) -> str:
    return hashlib.sha256(ref.encode()).hexdigest()[:16]


def find_hf_dir(root: Path) -> Path:
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


def _resolve_mlflow(ref: str, tracking_uri: str) -> Path:
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    # A run's model and the registered version made from it are one logged model: cached
    # under its id, the weights are fetched once (evaluation, then the model server).
    model_id = logged_model_id(ref, tracking_uri=tracking_uri)
    key = f"logged-model:{model_id}" if model_id else ref
    target = models_cache() / "mlflow" / _digest(key + tracking_uri)
    if not target.exists():
        try:
            with atomic_dir(target) as tmp:
                mlflow.artifacts.download_artifacts(artifact_uri=ref, dst_path=str(tmp))
        except MlflowException as exc:
            raise UserError(f"cannot resolve {ref} in MLflow: {exc.message}") from exc
    return find_hf_dir(target)


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
    return find_hf_dir(target)


def _resolve_path(ref: str) -> Path:
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"model path {path} is a file; give the directory that holds it")
        return find_hf_dir(path) if not (path / "config.json").is_file() else path
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


def resolve_model(
    ref: str | os.PathLike[str] = DEFAULT_MODEL, *, tracking_uri: str | None = None
) -> Path:
    """Return a local directory holding a loadable model (and tokenizer) for ``ref``."""
    parsed = parse_ref(ref)
    if parsed.kind == "embedded":
        return ensure_embedded(parsed.name)
    if parsed.kind in ("runs", "models"):
        uri = tracking_uri or default_tracking_uri()
        return _resolve_mlflow(pin_alias(parsed.text, tracking_uri=uri), uri)
    if parsed.kind == "s3":
        return _resolve_s3(parsed.text)
    if parsed.kind == "endpoint":
        raise UserError(f"{parsed}: an endpoint serves a model; it cannot be loaded locally")
    return _resolve_path(parsed.text)


def tokenizer_dir(ref: str, *, tracking_uri: str | None = None) -> Path:
    """A folder with the tokenizer of ``ref``; an embedded model's is read without its weights."""
    from workloads.models.embedded import embedded_tokenizer_dir

    parsed = parse_ref(ref)
    if parsed.kind == "embedded":
        return embedded_tokenizer_dir(parsed.name)
    local = Path(parsed.text).expanduser()
    if parsed.kind == "path" and (local / "tokenizer_config.json").is_file():
        return local
    return resolve_model(parsed.text, tracking_uri=tracking_uri)
