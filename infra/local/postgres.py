"""PostgreSQL for the local platform: MLflow's backend store, as on the cluster (RDS there).

The server binaries on PATH (``initdb``, ``postgres``) run a cluster under
``<cache>/local/postgres/data``, listening on loopback only, with its Unix socket in the same
folder. PostgreSQL refuses to run as root, so when this runs as root the server runs as the
``postgres`` system user (or ``nobody``), which owns the data folder.

The settings of all local services are in ``configs/deploy/platform/local.yaml``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from pydantic import Field

from infra.local.service import Service, ServiceStatus
from tuneops.core.config import StrictModel, load_config
from tuneops.core.errors import MissingToolError, UserError
from tuneops.core.paths import CONFIG_DIR

PLATFORM_CONFIG = CONFIG_DIR / "deploy" / "platform" / "local.yaml"


class PostgresSettings(StrictModel):
    port: int = Field(5433, ge=1, le=65535)
    user: str = "tuneops"
    database: str = "mlflow"


class MlflowSettings(StrictModel):
    port: int = Field(5000, ge=1, le=65535)
    artifacts_bucket: str | None = None
    artifacts_prefix: str = "mlflow"
    workers: int = Field(1, ge=1)


class ModelServerSettings(StrictModel):
    enabled: bool = True
    port: int = Field(8080, ge=1, le=65535)
    model: str = "embedded:smollm2-135m-instruct"
    config: str = "configs/serve/default.yaml"


class LocalPlatformSettings(StrictModel):
    host: str = "127.0.0.1"
    postgres: PostgresSettings = PostgresSettings()
    mlflow: MlflowSettings = MlflowSettings()
    model_server: ModelServerSettings = ModelServerSettings()


def load_platform_settings(overrides: list[str] | None = None) -> LocalPlatformSettings:
    return load_config(LocalPlatformSettings, PLATFORM_CONFIG, overrides=overrides)


def _binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise MissingToolError(
            f"{name} is not on PATH: install the PostgreSQL server (Debian: postgresql) and put "
            "its bin folder on PATH"
        )
    return found


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as when this process is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise UserError("PostgreSQL cannot run as root and there is no postgres or nobody account")


def _as_user(cmd: list[str], account: pwd.struct_passwd | None) -> list[str]:
    if account is None:
        return cmd
    setpriv = shutil.which("setpriv")
    if not setpriv:
        raise MissingToolError("running PostgreSQL from root needs setpriv (util-linux)")
    return [
        setpriv,
        f"--reuid={account.pw_uid}",
        f"--regid={account.pw_gid}",
        "--clear-groups",
        *cmd,
    ]


class PostgresService(Service):
    name = "postgres"
    start_timeout_s = 60.0

    def __init__(self, root: Path | None = None, settings: LocalPlatformSettings | None = None):
        self.settings = settings or load_platform_settings()
        super().__init__(root, host=self.settings.host, port=self.settings.postgres.port)
        self.user = self.settings.postgres.user
        self.database = self.settings.postgres.database
        self.data_dir = self.root / "data"
        self.account = _run_as()

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def sqlalchemy_url(self) -> str:
        """The URL for SQLAlchemy (MLflow): the psycopg2 driver, the one installed."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{self.database}"

    def _chown(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def _check_reachable(self) -> None:
        """The unprivileged account must be able to walk down to the data folder."""
        if self.account is None:
            return
        for folder in reversed(self.root.resolve().parents):
            mode = folder.stat()
            if folder.stat().st_uid != self.account.pw_uid and not mode.st_mode & 0o001:
                raise UserError(
                    f"PostgreSQL runs as {self.account.pw_name}, who cannot enter {folder}; "
                    f"keep the cache (TUNEOPS_CACHE_DIR) under folders others may traverse"
                )

    def initdb(self) -> None:
        """Create the database cluster once (trust auth: it listens on loopback only)."""
        if (self.data_dir / "PG_VERSION").is_file():
            return
        self._check_reachable()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        self._chown(self.root)
        cmd = [
            _binary("initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]
        proc = subprocess.run(
            _as_user(cmd, self.account), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise UserError(f"initdb failed for {self.data_dir}: {proc.stderr.strip()[-500:]}")

    def command(self) -> list[str]:
        cmd = [
            _binary("postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            "max_connections=50",
            "-c",
            "fsync=on",
        ]
        return _as_user(cmd, self.account)

    def connect(self, database: str | None = None):
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=database or "postgres",
            connect_timeout=2,
        )

    def healthy(self) -> bool:
        import psycopg2

        try:
            with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        except psycopg2.Error:
            return False

    def ensure_database(self) -> None:
        with contextlib.closing(self.connect()) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{self.database}"')

    def start(self) -> ServiceStatus:
        self.initdb()
        status = super().start()
        self.ensure_database()
        return status

    def stop(self, timeout: float = 15.0) -> bool:
        # SIGINT is PostgreSQL's fast shutdown: it does not wait for clients (MLflow's pool)
        # to disconnect, as SIGTERM's smart shutdown would.
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.running():
                time.sleep(0.1)
        return super().stop(timeout) or pid is not None
