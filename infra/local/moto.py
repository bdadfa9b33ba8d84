"""moto's server: the AWS of the local environment, on loopback.

moto keeps its state in memory only. To survive restarts, the server records every request it
serves (moto's recorder) to ``<cache>/local/moto/recording.jsonl`` and, when it starts again,
seeds moto's identifier generator with the same seed and replays the recording: resources come
back with the ids they had, so Terraform's state in the moto bucket still matches them.
"""

from __future__ import annotations

from urllib.parse import urlparse

from infra.config import load_environment, load_settings
from infra.local.service import Service, python, register


def local_endpoint(overrides: list[str] | None = None) -> str:
    endpoint = load_environment("local", overrides).local_endpoint
    assert endpoint, "the local environment must set local_endpoint"
    return endpoint.rstrip("/")


@register
class MotoService(Service):
    name = "moto"
    order = 10
    start_timeout_s = 120.0  # replaying a long recording takes a while

    def __init__(self, root=None, endpoint: str | None = None) -> None:
        self.endpoint = (endpoint or local_endpoint()).rstrip("/")
        parsed = urlparse(self.endpoint)
        super().__init__(root, host=parsed.hostname or "127.0.0.1", port=parsed.port or 80)
        self.recording = self.root / "recording.jsonl"

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
            str(load_settings().local.moto_seed),
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
