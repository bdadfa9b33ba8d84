"""Typed models for the custom resources that have no Python SDK: Argo CD's Application and
Gateway API's HTTPRoute.

They follow the CRDs' own field names and rules for the fields this project renders (weights
0..1,000,000, a backend per route rule, sync policy shape, ...) and refuse any other key, so a
typo fails here instead of being ignored by the cluster.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneops.core.errors import UserError

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ObjectMeta(_Strict):
    name: str = Field(pattern=_DNS_SUBDOMAIN, max_length=253)
    namespace: str | None = Field(default=None, pattern=_DNS_LABEL, max_length=63)
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None


# --- Argo CD (argoproj.io/v1alpha1) ---------------------------------------------------------


class AppDirectory(_Strict):
    recurse: bool | None = None
    include: str | None = None
    exclude: str | None = None


class AppSource(_Strict):
    repoURL: str = Field(min_length=1)
    path: str | None = None
    targetRevision: str | None = None
    directory: AppDirectory | None = None


class AppDestination(_Strict):
    server: str | None = None
    name: str | None = None
    namespace: str | None = None


class AppAutomated(_Strict):
    prune: bool | None = None
    selfHeal: bool | None = None
    allowEmpty: bool | None = None


class AppRetryBackoff(_Strict):
    duration: str | None = None
    factor: int | None = None
    maxDuration: str | None = None


class AppRetry(_Strict):
    limit: int | None = None
    backoff: AppRetryBackoff | None = None


class AppSyncPolicy(_Strict):
    automated: AppAutomated | None = None
    syncOptions: list[str] | None = None
    retry: AppRetry | None = None


class ApplicationSpec(_Strict):
    project: str = Field(min_length=1)
    source: AppSource
    destination: AppDestination
    syncPolicy: AppSyncPolicy | None = None


class Application(_Strict):
    apiVersion: Literal["argoproj.io/v1alpha1"]
    kind: Literal["Application"]
    metadata: ObjectMeta
    spec: ApplicationSpec


# --- Gateway API (gateway.networking.k8s.io/v1) ---------------------------------------------


class ParentRef(_Strict):
    group: str | None = None
    kind: str | None = None
    name: str = Field(min_length=1)
    namespace: str | None = None
    sectionName: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)


class BackendRef(_Strict):
    group: str | None = None
    kind: str | None = None
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = None
    port: int = Field(ge=1, le=65535)
    weight: int = Field(default=1, ge=0, le=1_000_000)


class PathMatch(_Strict):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = "/"


class RouteMatch(_Strict):
    path: PathMatch | None = None


class RouteTimeouts(_Strict):
    request: str | None = None
    backendRequest: str | None = None


class RouteRule(_Strict):
    matches: list[RouteMatch] | None = Field(default=None, max_length=64)
    backendRefs: list[BackendRef] = Field(min_length=1, max_length=16)
    timeouts: RouteTimeouts | None = None


class HTTPRouteSpec(_Strict):
    parentRefs: list[ParentRef] = Field(min_length=1, max_length=32)
    hostnames: list[str] | None = Field(default=None, max_length=16)
    rules: list[RouteRule] = Field(min_length=1, max_length=16)


class HTTPRoute(_Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["HTTPRoute"]
    metadata: ObjectMeta
    spec: HTTPRouteSpec


VALIDATORS: dict[str, dict[str, type[BaseModel]]] = {
    "argoproj.io": {"Application": Application},
    "gateway.networking.k8s.io": {"HTTPRoute": HTTPRoute},
}


def validate(manifest: dict[str, Any], label: str) -> None:
    group = manifest.get("apiVersion", "").split("/", 1)[0]
    kind = manifest.get("kind", "")
    model = VALIDATORS.get(group, {}).get(kind)
    if model is None:
        raise UserError(f"{label}: no model for {group} kind {kind!r}")
    try:
        model.model_validate(manifest)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise UserError(f"{label}: invalid {kind}: {problems}") from exc
