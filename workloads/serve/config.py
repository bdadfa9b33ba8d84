"""Typed configuration of the model server (configs/serve/default.yaml), and the two values it
resolves at start from the machine and the environment: torch threads and the bearer token."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tuneops.core import secrets
from tuneops.core.config import StrictModel, load_config
from tuneops.core.errors import UserError
from tuneops.core.paths import CONFIG_DIR
from workloads.models.refs import DEFAULT_MODEL

DEFAULT_CONFIG = CONFIG_DIR / "serve" / "default.yaml"


class ServerSection(StrictModel):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    enable_grpc: bool = False
    grpc_port: int = Field(8081, ge=0, le=65535)
    grace_period_s: int = Field(30, ge=0)
    # On SIGTERM: readiness fails and nothing new is admitted at once; what has not finished
    # after drain_s seconds fails with a clear error, so the process exits inside its grace.
    drain_s: float = Field(20, ge=0)

    @model_validator(mode="after")
    def _drain_inside_grace(self) -> ServerSection:
        if self.drain_s >= self.grace_period_s > 0:
            raise ValueError("drain_s must be shorter than grace_period_s")
        return self

    # KServe's model-repository routes (/v2/repository/models/<name>/load|unload) let a client
    # unload the model. Off: they do not exist (404). On: they need the admin token.
    repository_routes: bool = False


class LimitsSection(StrictModel):
    max_prompt_tokens: int = Field(1536, ge=1)
    max_new_tokens: int = Field(512, ge=1)
    default_max_tokens: int = Field(256, ge=1)
    max_queue: int = Field(256, ge=1)
    # Prompts one /openai/v1/completions request may carry (a list prompt).
    max_prompts: int = Field(32, ge=1)
    # Requests one client address may have in flight (streams included); more is a 429.
    max_in_flight_per_client: int = Field(64, ge=1)
    # Request bodies over this many bytes are a 413, before anything parses them.
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    # A request head (request line and headers) over this many bytes is a 431.
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    # A request head, and then its body, must arrive within this many seconds (else 408).
    read_timeout_s: float = Field(30, gt=0)
    request_timeout_s: float = Field(120, gt=0)


class BatchingSection(StrictModel):
    max_batch: int = Field(32, ge=1)
    wait_ms: float = Field(0, ge=0)
    max_prefill_batch: int = Field(16, ge=1)


class AuthSection(StrictModel):
    token_env: str | None = "TUNEOPS_SERVE_TOKEN"
    token_file: Path | None = None
    # Closed by default: without a token the server refuses to start, unless this is false.
    required: bool = True
    # The admin token for the model-repository routes, when server.repository_routes is on.
    admin_token_env: str = "TUNEOPS_SERVE_ADMIN_TOKEN"
    # Paths a GET or HEAD reaches without the token (model readiness is open too).
    open_paths: list[str] = Field(default_factory=lambda: ["/v2/health/live", "/v2/health/ready"])


class SamplingSection(StrictModel):
    rate: float = Field(0.0, ge=0.0, le=1.0)
    log: str | None = None
    flush_every: int = Field(100, ge=1)
    seed: int | None = None


class ServeConfig(StrictModel):
    model_name: str = Field("cloudops-assistant", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: str = DEFAULT_MODEL
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    cpu_threads: int = Field(0, ge=0)
    cpu_prepack: bool = True
    server: ServerSection = Field(default_factory=ServerSection)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    batching: BatchingSection = Field(default_factory=BatchingSection)
    auth: AuthSection = Field(default_factory=AuthSection)
    sampling: SamplingSection = Field(default_factory=SamplingSection)


def load_serve_config(
    path: str | Path | None = None, *, env: str | None = None, overrides: list[str] | None = None
) -> ServeConfig:
    return load_config(ServeConfig, path or DEFAULT_CONFIG, env=env, overrides=overrides)


def cpu_threads(configured: int) -> int:
    """``cpu_threads`` from the config; 0 means one per usable core minus one, at least one."""
    if configured > 0:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def read_admin_token(config: ServeConfig) -> str | None:
    """The admin token when the model-repository routes are on (refused without one)."""
    if not config.server.repository_routes:
        return None
    name = config.auth.admin_token_env
    token = os.environ.get(name, "").strip()
    if not token:
        raise UserError(
            f"server.repository_routes is on but no admin token is set: export {name} "
            "(the routes can unload the model)"
        )
    return token


def read_token(config: ServeConfig) -> str | None:
    """The bearer token from the environment variable, else the secret file; None only when
    ``auth.required`` is off (an open server)."""
    auth = config.auth
    token = secrets.read_token(auth.token_env, auth.token_file, "auth.token_file")
    if token is not None:
        return token
    if auth.required:
        where = f"export {auth.token_env} or set" if auth.token_env else "set"
        raise UserError(
            f"no bearer token is set and auth.required is on: {where} auth.token_file, "
            "or pass --set auth.required=false to serve every route openly"
        )
    return None
