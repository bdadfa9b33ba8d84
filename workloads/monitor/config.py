"""Typed monitor config (``configs/monitor/default.yaml``): the drift check and the sink."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from tuneops.core import secrets
from tuneops.core.config import StrictModel, load_config
from tuneops.core.errors import UserError
from tuneops.core.paths import CONFIG_DIR, cache_dir
from tuneops.core.s3 import split_uri

DEFAULT_CONFIG = CONFIG_DIR / "monitor" / "default.yaml"


class DriftSection(StrictModel):
    window: int = Field(1000, ge=1)
    min_prompts: int = Field(20, ge=1)
    reference_split: str = "train"
    length_bins: int = Field(5, ge=2)
    vocab_top_k: int = Field(50, ge=1)
    psi_threshold: float = Field(0.2, gt=0)
    smoothing: float = Field(0.5, gt=0)


class SinkAuthSection(StrictModel):
    token_env: str | None = "TUNEOPS_SINK_TOKEN"
    token_file: Path | None = None
    # The acknowledgement that a NetworkPolicy admits only the predictor pods: KServe's
    # inference logger cannot send a token, so on a cluster the policy is the lock.
    network_policy: bool = False


class SinkTlsSection(StrictModel):
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> SinkTlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both tls.cert_file and tls.key_file, or neither")
        return self


class SinkSection(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)
    path: str = Field("/events", pattern=r"^/[A-Za-z0-9._~/-]*$")
    health_path: str = Field("/healthz", pattern=r"^/[A-Za-z0-9._~/-]*$")
    rate: float = Field(0.1, ge=0.0, le=1.0)
    log: str | None = None
    flush_every: int = Field(100, ge=1)
    seed: int | None = None
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    shutdown_s: float = Field(20, gt=0)
    auth: SinkAuthSection = Field(default_factory=SinkAuthSection)
    tls: SinkTlsSection = Field(default_factory=SinkTlsSection)

    @field_validator("log")
    @classmethod
    def _log_uri(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("s3://"):
            split_uri(value, what="sink.log")
        return value

    @model_validator(mode="after")
    def _distinct_paths(self) -> SinkSection:
        if self.path in {self.health_path, "/metrics"}:
            raise ValueError("path must differ from health_path and /metrics")
        return self

    def destination(self) -> str:
        """Where sampled prompts go: ``log``, else the server's default log under the cache (so
        ``tuneops monitor drift`` with no ``--prompts`` reads both)."""
        return self.log or str(cache_dir() / "serve" / "prompts.jsonl")


class MonitorConfig(StrictModel):
    drift: DriftSection = Field(default_factory=DriftSection)
    sink: SinkSection = Field(default_factory=SinkSection)


def load_monitor_config(
    path: str | Path | None = None, *, env: str | None = None, overrides: list[str] | None = None
) -> MonitorConfig:
    return load_config(MonitorConfig, path or DEFAULT_CONFIG, env=env, overrides=overrides)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_sink_token(auth: SinkAuthSection) -> str | None:
    """The sink's bearer token (environment variable, else secret file), or None."""
    return secrets.read_token(auth.token_env, auth.token_file, "sink.auth.token_file")


def check_exposure(sink: SinkSection, token: str | None) -> None:
    """Refuse to listen beyond loopback with neither a token nor the NetworkPolicy
    acknowledgement: anyone who reaches the port could fill the drift log."""
    if is_loopback(sink.host) or token or sink.auth.network_policy:
        return
    env = sink.auth.token_env or "the token variable"
    raise UserError(
        f"the sink would listen on {sink.host} with no token: export {env} (or set "
        "sink.auth.token_file), or, where a NetworkPolicy admits only the predictor pods, "
        "set sink.auth.network_policy=true"
    )
