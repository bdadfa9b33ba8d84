"""The prompt sink of the Hugging Face runtime: KServe's inference logger posts every request
to it, and it scrubs, samples and writes the drift log (``tuneops monitor sink``).

A Deployment running the project's image, a Service the logger posts to, and a NetworkPolicy
that admits only the model pods (whose logger agent sends the events) and Prometheus: the
logger sends no credential, so the network is the sink's access control.
"""

from __future__ import annotations

from typing import Any

from workloads.deploy.config import DeployConfig
from workloads.deploy.k8s import labels, metadata, predictor_names

# The sink's routes (workloads/monitor/sink): events are posted here, probes read health.
INGEST_PATH = "/events"
HEALTH_PATH = "/healthz"


def sink_url(cfg: DeployConfig) -> str:
    logging_cfg = cfg.serving.prompt_logging
    host = f"{logging_cfg.name}.{cfg.serving.namespace}.svc.cluster.local"
    return f"http://{host}:{logging_cfg.port}{INGEST_PATH}"


def _selector(cfg: DeployConfig) -> dict[str, str]:
    return {"app.kubernetes.io/name": cfg.serving.prompt_logging.name}


def _container(cfg: DeployConfig) -> dict[str, Any]:
    logging_cfg = cfg.serving.prompt_logging
    probe = {"httpGet": {"path": HEALTH_PATH, "port": logging_cfg.port}, "periodSeconds": 10}
    return {
        "name": "sink",
        "image": cfg.images.ref(logging_cfg.image).reference(),
        "args": [
            "monitor",
            "sink",
            "--host",
            "0.0.0.0",
            "--port",
            str(logging_cfg.port),
            "--log",
            logging_cfg.destination,
            "--set",
            f"sink.rate={logging_cfg.rate}",
            # No credential comes with the logger's events: the NetworkPolicy below is the
            # sink's access control, and the sink refuses a non-loopback bind without this.
            "--set",
            "sink.auth.network_policy=true",
        ],
        "ports": [{"name": "http", "containerPort": logging_cfg.port, "protocol": "TCP"}],
        # The root filesystem is read-only; anything the process writes goes to /tmp.
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "TUNEOPS_CACHE_DIR", "value": "/tmp/tuneops"},
        ],
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "initialDelaySeconds": 10},
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _deployment(cfg: DeployConfig) -> dict[str, Any]:
    logging_cfg = cfg.serving.prompt_logging
    pod_labels = {**labels(cfg, "prompt-sink"), **_selector(cfg)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**metadata(cfg, logging_cfg.name, "prompt-sink"), "labels": pod_labels},
        "spec": {
            "replicas": logging_cfg.replicas,
            "selector": {"matchLabels": _selector(cfg)},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": logging_cfg.service_account,
                    # Longer than the sink's own shutdown (sink.shutdown_s, 20 s), which
                    # writes the last partial object of sampled prompts.
                    "terminationGracePeriodSeconds": 30,
                    "automountServiceAccountToken": True,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [_container(cfg)],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
                },
            },
        },
    }


def _service(cfg: DeployConfig) -> dict[str, Any]:
    logging_cfg = cfg.serving.prompt_logging
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cfg, logging_cfg.name, "prompt-sink"),
        "spec": {
            "selector": _selector(cfg),
            "ports": [{"name": "http", "port": logging_cfg.port, "targetPort": "http"}],
        },
    }


def _network_policy(cfg: DeployConfig) -> dict[str, Any]:
    logging_cfg = cfg.serving.prompt_logging
    model_pods = {
        "podSelector": {
            "matchExpressions": [
                {
                    "key": "serving.kserve.io/inferenceservice",
                    "operator": "In",
                    "values": predictor_names(cfg),
                }
            ]
        }
    }
    prometheus = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(cfg, f"{logging_cfg.name}-ingress", "network"),
        "spec": {
            "podSelector": {"matchLabels": _selector(cfg)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [model_pods, prometheus],
                    "ports": [{"protocol": "TCP", "port": logging_cfg.port}],
                }
            ],
        },
    }


def manifests(cfg: DeployConfig) -> dict[str, dict[str, Any]]:
    """The sink's manifests when prompt logging is on, else none."""
    if not cfg.serving.prompt_logging.enabled:
        return {}
    return {
        "serving/prompt-sink-deployment.yaml": _deployment(cfg),
        "serving/prompt-sink-service.yaml": _service(cfg),
        "serving/prompt-sink-networkpolicy.yaml": _network_policy(cfg),
    }
