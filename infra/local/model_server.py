"""The model server of the local platform: ``tuneops serve`` (KServe ModelServer with the
OpenAI routes) on loopback, resolving ``models:/`` references through the local MLflow server
and ``s3://`` ones through moto's S3, as the InferenceService does on the cluster.

It is started by its command line (``python -m tuneops.cli serve ...``), so the infrastructure
layer needs nothing of the serving code.

The server is closed like every other: its bearer token is made at the first start into
``<cache>/local/model-server/token`` (mode 0600), reused at every later start, and handed to
the server as ``auth.token_file``; ``tuneops local status`` says where it is.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from infra.local.mlflow_server import MlflowServerService
from infra.local.postgres import LocalPlatformSettings, load_platform_settings
from infra.local.service import Service, ServiceStatus, python
from tuneops.core.errors import UserError
from tuneops.core.io import atomic_path
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

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    def ensure_token(self) -> str:
        """The server's bearer token: the one in ``token_file``, else a new random one written
        there, readable by this user alone."""
        path = self.token_file
        token = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
        if token:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return token
        token = secrets.token_urlsafe(32)
        with atomic_path(path) as tmp:
            tmp.chmod(0o600)
            tmp.write_text(token + "\n", encoding="utf-8")
        return token

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
            # The token comes from the file alone, whatever the calling shell exports.
            "--set",
            f"auth.token_file={self.token_file}",
            "--set",
            "auth.token_env=null",
        ]

    def start(self) -> ServiceStatus:
        if not self.settings.model_server.enabled:
            return self.status()  # turned off in configs/deploy/platform/local.yaml
        if self.model.startswith("models:/") and not self.mlflow.healthy():
            raise UserError(f"{self.model} needs the local MLflow server at {self.mlflow.url}")
        self.ensure_token()
        return super().start()

    def status(self) -> ServiceStatus:
        status = super().status()
        status.note = f"bearer token in {self.token_file}"
        return status
