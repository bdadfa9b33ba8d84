"""Registry lookups for model references: which version an alias names right now.

Resolved copies are cached by reference, so a ``models:/name@alias`` reference is pinned to
``models:/name/<version>`` before anything is fetched: a promotion between two commands then
changes what is loaded, and the label a report gives is the version really loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tuneops.core.errors import UserError
from tuneops.core.paths import default_tracking_uri
from workloads.models.refs import ModelRef, parse_ref, registry_uri

log = logging.getLogger(__name__)

# What MLflow answers for a model, version or alias that does not exist; anything else (an
# unreachable server, a broken store) is an error of its own, not a missing version.
MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str | None
    source: str | None = None

    @property
    def pinned(self) -> str:
        return registry_uri(self.name, version=self.version)


def registry_client(tracking_uri: str | None = None):
    from mlflow import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def lookup_version(
    ref: str | ModelRef, *, tracking_uri: str | None = None, client=None
) -> RegisteredVersion | None:
    """The registered version a ``models:/`` reference names; None when it does not exist."""
    from mlflow.exceptions import MlflowException

    parsed = ref if isinstance(ref, ModelRef) else parse_ref(ref)
    if not parsed.is_registry:
        raise UserError(f"{parsed}: not a models:/ registry reference")
    client = client or registry_client(tracking_uri)
    try:
        return _get_version(client, parsed)
    except MlflowException as exc:
        if exc.error_code in MISSING:
            return None
        where = getattr(client, "tracking_uri", None) or tracking_uri or default_tracking_uri()
        raise UserError(
            f"cannot look up {parsed} in the MLflow registry at {where}: {exc}"
        ) from exc


def _get_version(client, parsed: ModelRef) -> RegisteredVersion | None:
    if parsed.alias:
        mv = client.get_model_version_by_alias(parsed.name, parsed.alias)
    elif parsed.version:
        mv = client.get_model_version(parsed.name, parsed.version)
    else:
        return None  # models:/<model_id>: a logged model, not a registered version
    return RegisteredVersion(mv.name, str(mv.version), mv.run_id, getattr(mv, "source", None))


def require_version(
    ref: str | ModelRef, *, tracking_uri: str | None = None, client=None
) -> RegisteredVersion:
    """Like ``lookup_version``, but a missing version is one ``UserError``."""
    found = lookup_version(ref, tracking_uri=tracking_uri, client=client)
    if found is None:
        where = tracking_uri or default_tracking_uri()
        raise UserError(f"{ref} does not exist in the MLflow registry at {where}")
    return found


def run_logged_model(client, run, name: str) -> str | None:
    """The id of the logged model ``name`` that ``run`` wrote (MLflow 3), or None: an older
    store, or a model logged as plain artifacts."""
    try:
        found = client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run.info.run_id}'",
        )
    except Exception as exc:  # stores without logged models; the artifact path still works
        log.debug("no logged-model search: %s", exc)
        return None
    return next((model.model_id for model in found if model.name == name), None)


def logged_model_id(ref: str, *, tracking_uri: str | None = None) -> str | None:
    """The logged model a ``runs:/<run>/<name>`` or ``models:/...`` reference comes down to,
    so that one download serves both; None when MLflow does not say."""
    from mlflow.exceptions import MlflowException

    parsed = parse_ref(ref)
    client = registry_client(tracking_uri)
    try:
        if parsed.kind == "runs":
            name = parsed.text[len("runs:/") :].partition("/")[2].strip("/")
            return run_logged_model(client, client.get_run(parsed.name), name) if name else None
        if parsed.is_registry and not parsed.alias:
            if parsed.version is None:  # models:/<model id>
                return parsed.name if parsed.name.startswith("m-") else None
            version = client.get_model_version(parsed.name, parsed.version)
            if model_id := getattr(version, "model_id", None):
                return model_id
            # Stores that keep no model id on the version still name its source.
            source = parse_ref(version.source) if version.source else None
            if source and (source.kind == "runs" or (source.is_registry and not source.version)):
                return logged_model_id(source.text, tracking_uri=tracking_uri)
    except (MlflowException, UserError) as exc:  # a missing run, an odd source: no sharing
        log.debug("%s: no logged model found: %s", ref, exc)
    return None


def pin_alias(ref: str, *, tracking_uri: str | None = None) -> str:
    """``models:/name@alias`` -> ``models:/name/<version>`` it names right now; others as given."""
    parsed = parse_ref(ref)
    if not parsed.is_alias:
        return ref
    pinned = require_version(parsed, tracking_uri=tracking_uri).pinned
    log.info("%s is %s", ref, pinned)
    return pinned
