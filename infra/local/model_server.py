"""The model server of the local platform: ``tuneops serve`` (KServe ModelServer with the
OpenAI routes) on loopback, resolving ``models:/`` references through the local MLflow server
and ``s3://`` ones through moto's S3, as the InferenceService does on the cluster.

It is started by its command line (``python -m tuneops.cli serve ...``), so the infrastructure
layer needs nothing of the serving code.
"""

from __future__ import annotations

from pathlib import Path

from infra.local.mlflow_server import MlflowServerService
from infra.local.postgres import LocalPlatformSettings, load_platform_settings
from infra.local.service import Service, ServiceStatus, python
from tuneops.core.errors import UserError
from tuneops.core.paths import REPO_ROOT


class ModelServerService(Service):
    name = "model-server"
    start_timeout_s = 300.0  # loading (and, the first time, converting) the model
    health_path = "/v2/health/ready"

    def __init__(
        self,
        root: Path | None = None,
        settings: LocalPlatformSettings | None = None,
        *,
        model: str | None = None,
        mlflow: MlflowServerService | None = None,
    ) -> None:
        self.settings = settings or load_platform_settings()
        super().__init__(root, host=self.settings.host, port=self.settings.model_server.port)
        self.model = model or self.settings.model_server.model
        self.mlflow = mlflow or MlflowServerService(self.root.parent, self.settings)

    def environment(self) -> dict[str, str]:
        return {
            **self.mlflow.environment(),
            "MLFLOW_TRACKING_URI": self.mlflow.url,
        }

    def command(self) -> list[str]:
        return [
            python(),
            "-m",
            "tuneops.cli",
            "serve",
            "--model",
            self.model,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--config",
            str(REPO_ROOT / self.settings.model_server.config),
        ]

    def start(self) -> ServiceStatus:
        if not self.settings.model_server.enabled:
            return self.status()  # turned off in configs/deploy/platform/local.yaml
        if self.model.startswith("models:/") and not self.mlflow.healthy():
            raise UserError(f"{self.model} needs the local MLflow server at {self.mlflow.url}")
        return super().start()
