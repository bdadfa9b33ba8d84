"""The local platform: services that stand in for the cloud on one machine (moto's AWS first;
PostgreSQL, the MLflow server and the model server register here too)."""

from infra.local.service import REGISTRY, Service, ServiceStatus, discover, local_root, register

__all__ = ["REGISTRY", "Service", "ServiceStatus", "discover", "local_root", "register"]
