"""PostgreSQL for the local platform: MLflow's backend store, as on the cluster (RDS there).

The server binaries on PATH (``initdb``, ``postgres``) run a cluster under
``<cache>/local/postgres/data``, listening on loopback only, with its Unix socket in the folder
above it. PostgreSQL refuses to run as root, so when this runs as root the server runs as the
``postgres`` system user (or ``nobody``), which owns the cluster's folder and must be able to
walk down to it. A clone often sits where that account cannot (a ``mktemp -d`` folder, root's
home: mode 0700). The cluster then lives in a folder of its own under ``/var/tmp`` (one per
cache, named by a digest of its path), and ``<cache>/local/postgres/data`` is a link to it, so
the data is found the same way and stays between starts.

A server that was killed (SIGKILL, a crash, the machine's OOM killer) leaves ``postmaster.pid``
and the socket's lock file behind, naming a process that is gone, or a zombie, or by now
another program; PostgreSQL refuses to start while such a file names a live process. ``start``
therefore ends what the old server left running in its data folder, removes lock files that
name no live server of this cluster, and starts it again: PostgreSQL replays its write-ahead
log, so every committed row (every MLflow run) is back.

The settings of all local services are in ``configs/deploy/platform/local.yaml``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from pydantic import Field

from infra.local.processes import command_name, end_processes, processes_in
from infra.local.service import Service, ServiceStatus
from tuneops.core.config import StrictModel, load_config
from tuneops.core.errors import MissingToolError, UserError
from tuneops.core.paths import CONFIG_DIR

PLATFORM_CONFIG = CONFIG_DIR / "deploy" / "platform" / "local.yaml"
# Where a cluster goes when its account cannot reach the cache (sticky and world-traversable).
SHARED_PARENTS = (Path("/var/tmp"), Path(tempfile.gettempdir()))
# How long the processes of a killed server get to notice and exit before they are killed.
LEFTOVER_GRACE_S = 10.0


class PostgresSettings(StrictModel):
    port: int = Field(5433, ge=1, le=65535)
    user: str = "tuneops"
    database: str = "mlflow"


class MlflowSettings(StrictModel):
    port: int = Field(5000, ge=1, le=65535)
    artifacts_bucket: str | None = None
    artifacts_prefix: str = "mlflow"
    workers: int = Field(1, ge=1)
    # MLflow's server-side job runner (Huey consumers for its GenAI jobs: scorers, prompt
    # optimisation, trace rollups). Nothing here submits such jobs; on, it starts seven more
    # Python processes that import MLflow (about 25 s of CPU at every start).
    job_execution: bool = False


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


def blocked_folder(path: Path, account: pwd.struct_passwd) -> Path | None:
    """The first folder on the way down to ``path`` that ``account`` may not enter (search
    permission by owner, primary group or others), or None when it can walk all the way."""
    for folder in [*reversed(path.parents), path]:
        try:
            info = folder.stat()
        except FileNotFoundError:
            break  # below here nothing exists yet; it will be made for the account
        if info.st_uid == account.pw_uid:
            allowed = info.st_mode & 0o100
        elif info.st_gid == account.pw_gid:
            allowed = info.st_mode & 0o010
        else:
            allowed = info.st_mode & 0o001
        if not allowed:
            return folder
    return None


def shared_home(root: Path, account: pwd.struct_passwd) -> Path:
    """A folder ``account`` can reach for the cluster of the cache at ``root``."""
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    for parent in SHARED_PARENTS:
        if parent.is_dir() and blocked_folder(parent, account) is None:
            return parent / f"tuneops-postgres-{digest}"
    raise UserError(
        f"PostgreSQL runs as {account.pw_name}, who can reach neither {root} nor any of "
        f"{', '.join(map(str, SHARED_PARENTS))}; keep the cache (TUNEOPS_CACHE_DIR) under "
        "folders others may traverse"
    )


def _lock_pid(path: Path) -> int | None:
    """The pid on the first line of a PostgreSQL lock file, or None without one."""
    try:
        return int(path.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


class PostgresService(Service):
    name = "postgres"
    start_timeout_s = 60.0

    def __init__(self, root: Path | None = None, settings: LocalPlatformSettings | None = None):
        self.settings = settings or load_platform_settings()
        super().__init__(root, host=self.settings.host, port=self.settings.postgres.port)
        self.user = self.settings.postgres.user
        self.database = self.settings.postgres.database
        self.account = _run_as()
        self.link = self.root / "data"  # the cluster, or a link to where it lives
        self.data_dir = self._cluster_folder()
        self.socket_dir = self.data_dir.parent

    def _cluster_folder(self) -> Path:
        """Where the cluster is (or will be): ``<root>/data``, or the folder it links to, or,
        when the server's account cannot reach ``<root>``, a shared folder of its own."""
        if self.link.is_symlink():
            return Path(os.readlink(self.link))
        root = self.root.resolve()
        if self.account is None or blocked_folder(root, self.account) is None:
            return self.link
        return shared_home(root, self.account) / "data"

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

    def _prepare_folders(self) -> None:
        """The cluster's folder, owned by the server's account; linked from ``<root>/data``
        when it lives elsewhere (an earlier cluster in ``<root>/data`` moves there)."""
        if self.data_dir != self.link and not self.link.is_symlink():
            self.socket_dir.mkdir(mode=0o700, exist_ok=True)
            if self.link.is_dir():
                shutil.move(self.link, self.data_dir)
            self.link.symlink_to(self.data_dir, target_is_directory=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for folder in (self.data_dir, self.socket_dir):
            self._chown(folder)
        if self.account is not None:
            blocked = blocked_folder(self.data_dir, self.account)
            if blocked is not None:
                raise UserError(
                    f"PostgreSQL runs as {self.account.pw_name}, who cannot enter {blocked}; "
                    "make it traversable (chmod o+x) or remove the link "
                    f"{self.link} to start a new cluster"
                )

    def initdb(self) -> None:
        """Create the database cluster once (trust auth: it listens on loopback only)."""
        if (self.data_dir / "PG_VERSION").is_file():
            return
        self._prepare_folders()
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
            _as_user(cmd, self.account),
            capture_output=True,
            text=True,
            check=False,
            cwd=self.socket_dir,  # a folder the server's account may be in
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
            str(self.socket_dir),
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

    def diagnose(self) -> str:
        return f"it does not answer SELECT 1 at {self.host}:{self.port}; see {self.log_file}"

    def lock_files(self) -> list[Path]:
        """The files a running server holds: the data folder's and the socket's."""
        return [self.data_dir / "postmaster.pid", self.socket_dir / f".s.PGSQL.{self.port}.lock"]

    def clear_after_crash(self) -> str | None:
        """Make a cluster whose server was killed startable again (see the module docstring);
        what was done, or None when there was nothing to clear."""
        holder = _lock_pid(self.lock_files()[0])
        if holder is not None and self._is_server(holder):
            return None  # a live server holds the cluster: starting another fails and says so
        done = []
        killed = end_processes(processes_in(self.data_dir), LEFTOVER_GRACE_S)
        if killed:
            done.append(f"killed {len(killed)} process(es) the old server left")
        for lock in self.lock_files():
            pid = _lock_pid(lock)
            if pid is not None and not self._is_server(pid):
                lock.unlink(missing_ok=True)
                done.append(f"removed {lock.name} of pid {pid}, which is gone")
        return "; ".join(done) or None

    def _is_server(self, pid: int) -> bool:
        """Whether ``pid`` is a live PostgreSQL process working in this cluster's folder."""
        return command_name(pid) == "postgres" and pid in processes_in(self.data_dir)

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
        cleared = None if self.running() else self.clear_after_crash()
        status = super().start()
        self.ensure_database()
        if cleared:
            status.note = f"recovered after a crash: {cleared}"
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
