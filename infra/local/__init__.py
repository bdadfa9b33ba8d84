"""The local platform: services that stand in for the cloud on one machine (moto's AWS,
PostgreSQL, the MLflow server and the model server), listed in ``infra.local.registry``.

``ServiceName`` names them for the command line (``tuneops local up --only NAME``); it lives
here, light to import (tests check that it names every service the registry builds)."""

from enum import StrEnum


class ServiceName(StrEnum):
    moto = "moto"
    postgres = "postgres"
    mlflow = "mlflow"
    model_server = "model-server"
