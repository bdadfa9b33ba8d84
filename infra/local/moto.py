"""moto's server: the AWS of the local environment, on loopback.

moto keeps its state in memory only. To survive restarts, the server records every request it
serves (moto's recorder) to ``<cache>/local/moto/recording.jsonl`` and, when it starts again,
seeds moto's identifier generator with the same seed and replays the recording: resources come
back with the ids they had, so Terraform's state in the moto bucket still matches them.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from infra.config import load_settings
from infra.local.service import Service, python


class MotoService(Service):
    name = "moto"
    start_timeout_s = 120.0  # replaying a long recording takes a while

    def __init__(self, root: Path | None = None, *, endpoint: str, seed: int | None = None) -> None:
        """moto at ``endpoint`` (the local environment's ``local_endpoint``), drawing ids from
        ``seed`` (default: ``local.moto_seed`` of configs/infra/default.yaml)."""
        self.endpoint = endpoint.rstrip("/")
        parsed = urlparse(self.endpoint)
        super().__init__(root, host=parsed.hostname or "127.0.0.1", port=parsed.port or 80)
        self.recording = self.root / "recording.jsonl"
        self.seed = load_settings().local.moto_seed if seed is None else seed

    @property
    def url(self) -> str:
        return self.endpoint

    def environment(self) -> dict[str, str]:
        # AWS managed policies (AmazonEKSClusterPolicy, ...) exist only when moto loads them.
        return {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}

    def command(self) -> list[str]:
        return [
            python(),
            "-m",
            "infra.local._moto_main",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--recording",
            str(self.recording),
            "--seed",
            str(self.seed),
            "--ready-file",
            str(self.root / "ready"),
        ]

    def healthy(self) -> bool:
        # The ready file is written once the recording is replayed; the port answering says
        # the server is still there.
        return (self.root / "ready").is_file() and self.port_taken()

    def start(self):
        (self.root / "ready").unlink(missing_ok=True)
        if self.running():
            # keep a running server's ready marker: it has already replayed
            (self.root / "ready").touch()
        return super().start()

    def reset(self) -> None:
        """Forget everything: stop the server and delete the recording."""
        self.stop()
        self.recording.unlink(missing_ok=True)
