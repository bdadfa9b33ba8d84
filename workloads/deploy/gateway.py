"""What stands in front of the model server on the cluster.

- The weighted ``HTTPRoute`` (stable and canary) on the gateway's TLS listener.
- Envoy Gateway's ``SecurityPolicy``: every request carries a JWT from the configured identity
  provider; the user's claim becomes a header for the per-user rate limit
  (``BackendTrafficPolicy``).
- On the project's runtime, an ``HTTPRouteFilter`` swaps the user's token for the server's own
  bearer token (from the same Secret the server reads), so the JWT never reaches the pod and
  the pod still refuses anyone who bypasses the gateway.
- A ``NetworkPolicy`` that admits only the gateway's proxies and Prometheus to the model pods,
  and a ``PodMonitor`` that scrapes them (with the token where the server needs one).
"""

from __future__ import annotations

from typing import Any

from tuneops.core.errors import UserError
from workloads.deploy.config import DeployConfig
from workloads.deploy.k8s import canary_name, metadata, predictor_names

GATEWAY_GROUP = "gateway.networking.k8s.io"
ENVOY_GROUP = "gateway.envoyproxy.io"
ENVOY_API = f"{ENVOY_GROUP}/v1alpha1"
# Envoy Gateway reads an injected credential from this key of its Secret.
CREDENTIAL_KEY = "credential"
# With the inference logger on, KServe puts its agent in front of the server on this port.
KSERVE_AGENT_PORT = 9081


def route_name(cfg: DeployConfig) -> str:
    return f"{cfg.serving.name}-traffic"


def _route_target(cfg: DeployConfig) -> list[dict[str, str]]:
    return [{"group": GATEWAY_GROUP, "kind": "HTTPRoute", "name": route_name(cfg)}]


def _credential_filter_name(cfg: DeployConfig) -> str:
    return f"{cfg.serving.name}-backend-token"


def _backend(name: str, port: int, weight: int) -> dict[str, Any]:
    return {"kind": "Service", "name": f"{name}-predictor", "port": port, "weight": weight}


def traffic_route(cfg: DeployConfig, canary_percent: int | None) -> dict[str, Any]:
    """Gateway API HTTPRoute on the TLS listener, splitting traffic between the stable and
    canary predictors."""
    serving, route = cfg.serving, cfg.route
    port = route.service_port
    backends = [_backend(serving.name, port, 100 - (canary_percent or 0))]
    if canary_percent:
        backends.append(_backend(canary_name(cfg), port, canary_percent))
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": backends,
    }
    if serving.runtime == "project" and serving.auth.token_secret is not None:
        rule["filters"] = [
            {
                "type": "ExtensionRef",
                "extensionRef": {
                    "group": ENVOY_GROUP,
                    "kind": "HTTPRouteFilter",
                    "name": _credential_filter_name(cfg),
                },
            }
        ]
    parent = {
        "name": route.gateway.name,
        "namespace": route.gateway.namespace,
        "sectionName": route.tls.listener,
    }
    spec: dict[str, Any] = {"parentRefs": [parent], "rules": [rule]}
    if route.hostnames:
        spec["hostnames"] = list(route.hostnames)
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(cfg, route_name(cfg), "traffic"),
        "spec": spec,
    }


def security_policy(cfg: DeployConfig) -> dict[str, Any] | None:
    """JWT authentication at the gateway; refused when a shared environment names no
    identity provider."""
    auth = cfg.route.auth
    if auth.jwt is None:
        if auth.required:
            raise UserError(
                f"{cfg.env}: route.auth.jwt is not set; the gateway never serves a shared "
                "environment without authentication (name the identity provider: issuer, "
                "audiences, jwks_uri)"
            )
        return None
    jwt = auth.jwt
    provider = {
        "name": jwt.name,
        "issuer": jwt.issuer,
        "audiences": list(jwt.audiences),
        "remoteJWKS": {"uri": jwt.jwks_uri},
        "claimToHeaders": [{"claim": jwt.user_claim, "header": auth.user_header}],
    }
    return {
        "apiVersion": ENVOY_API,
        "kind": "SecurityPolicy",
        "metadata": metadata(cfg, f"{cfg.serving.name}-auth", "gateway-auth"),
        "spec": {"targetRefs": _route_target(cfg), "jwt": {"providers": [provider]}},
    }


def credential_filter(cfg: DeployConfig) -> dict[str, Any] | None:
    """On the project's runtime: replace the caller's Authorization header with the server's
    own bearer token, read from the server's Secret (its ``credential`` key holds
    ``Bearer <token>``)."""
    secret = cfg.serving.auth.token_secret
    if cfg.serving.runtime != "project" or secret is None:
        return None
    return {
        "apiVersion": ENVOY_API,
        "kind": "HTTPRouteFilter",
        "metadata": metadata(cfg, _credential_filter_name(cfg), "gateway-auth"),
        "spec": {
            "credentialInjection": {
                "header": "Authorization",
                "overwrite": True,
                "credential": {"valueRef": {"kind": "Secret", "name": secret.name}},
            }
        },
    }


def rate_limit_policy(cfg: DeployConfig) -> dict[str, Any] | None:
    """Requests per user (the header the SecurityPolicy sets from the JWT claim)."""
    if cfg.route.auth.jwt is None:
        return None
    limit = cfg.route.rate_limit
    rule = {
        "clientSelectors": [
            {"headers": [{"name": cfg.route.auth.user_header, "type": "Distinct"}]}
        ],
        "limit": {"requests": limit.requests, "unit": limit.unit},
    }
    return {
        "apiVersion": ENVOY_API,
        "kind": "BackendTrafficPolicy",
        "metadata": metadata(cfg, f"{cfg.serving.name}-rate-limit", "gateway-limits"),
        "spec": {
            "targetRefs": _route_target(cfg),
            "rateLimit": {"type": "Local", "local": {"rules": [rule]}},
        },
    }


def _model_pods(cfg: DeployConfig) -> dict[str, Any]:
    return {
        "matchExpressions": [
            {
                "key": "serving.kserve.io/inferenceservice",
                "operator": "In",
                "values": predictor_names(cfg),
            }
        ]
    }


def network_policy(cfg: DeployConfig) -> dict[str, Any]:
    """Only the gateway's proxies and Prometheus may open connections to the model pods."""
    sources = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
        for namespace in cfg.route.network.ingress_namespaces
    ]
    ports = [cfg.serving.port]
    if cfg.serving.prompt_logging.enabled:
        ports.append(KSERVE_AGENT_PORT)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(cfg, f"{cfg.serving.name}-ingress", "network"),
        "spec": {
            "podSelector": _model_pods(cfg),
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": sources, "ports": [{"protocol": "TCP", "port": p} for p in ports]}
            ],
        },
    }


def pod_monitor(cfg: DeployConfig) -> dict[str, Any]:
    """Prometheus scrapes the model pods' /metrics: the queue depth and time to first token
    that autoscaling and canary analysis read. The project's server wants its token."""
    endpoint: dict[str, Any] = {"path": "/metrics", "portNumber": cfg.serving.port}
    secret = cfg.serving.auth.token_secret
    if cfg.serving.runtime == "project" and secret is not None:
        endpoint["authorization"] = {
            "type": "Bearer",
            "credentials": {"name": secret.name, "key": secret.key},
        }
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(cfg, f"{cfg.serving.name}-metrics", "metrics"),
        "spec": {"selector": _model_pods(cfg), "podMetricsEndpoints": [endpoint]},
    }
