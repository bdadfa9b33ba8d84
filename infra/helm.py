"""`tuneops platform ...`: the catalog's Helm releases on a live cluster, through pyhelm3.

pyhelm3 drives the ``helm`` binary with a kubeconfig. Where either is missing, the command
validates everything it can (environment, catalog, values) and then stops with one line
saying what is missing and how to get it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from infra.catalog import Release, load_catalog, release_values
from infra.config import Environment
from tuneops.core.errors import MissingToolError, UserError


def _prepare(env: Environment) -> list[Release]:
    """The catalog's releases in order, with the environment's values (overlay and rendered)
    validated."""
    releases = load_catalog().ordered()
    for release in releases:
        release_values(release, env)
    return releases


def kubeconfig_path() -> Path | None:
    for candidate in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    default = Path.home() / ".kube" / "config"
    return default if default.is_file() else None


def client(env: Environment, context: str | None):
    if shutil.which("helm") is None:
        raise MissingToolError(
            "no helm binary on PATH: install Helm 3 (https://helm.sh/docs/intro/install/) "
            f"to inspect the platform releases of {env.name}"
        )
    kubeconfig = kubeconfig_path()
    if kubeconfig is None:
        raise MissingToolError(
            f"no kubeconfig for {env.name}: run `aws eks update-kubeconfig --name "
            f"{env.cluster.name} --region {env.region}` (or set KUBECONFIG)"
        )
    from pyhelm3 import Client

    return Client(kubeconfig=kubeconfig, kubecontext=context)


async def _current(helm, release: Release):
    from pyhelm3.errors import ReleaseNotFoundError

    try:
        return await helm.get_current_revision(release.name, namespace=release.namespace)
    except ReleaseNotFoundError:
        return None


def status(env: Environment, context: str | None = None) -> list[str]:
    releases = _prepare(env)
    helm = client(env, context)

    async def run() -> list[str]:
        lines = []
        for release in releases:
            rev = await _current(helm, release)
            if rev is None:
                lines.append(f"{release.name:<22} not installed (catalog {release.version})")
                continue
            chart = await rev.chart_metadata()
            lines.append(
                f"{release.name:<22} revision {rev.revision} {rev.status.value} chart "
                f"{chart.version} (catalog {release.version}) in {release.namespace}"
            )
        lines.append(f"platform {env.name}: {len(releases)} releases in the catalog")
        return lines

    return asyncio.run(run())


def diff(env: Environment, context: str | None = None) -> tuple[list[str], int]:
    releases = _prepare(env)
    helm = client(env, context)

    async def run() -> tuple[list[str], int]:
        lines, differs = [], 0
        for release in releases:
            rev = await _current(helm, release)
            if rev is None:
                lines.append(f"{release.name:<22} missing: catalog wants {release.version}")
                differs += 1
                continue
            chart = await rev.chart_metadata()
            deployed = await rev.values()
            wanted = release_values(release, env)
            problems = []
            if str(chart.version) != release.version.lstrip("v") and str(chart.version) != (
                release.version
            ):
                problems.append(f"chart {chart.version} != {release.version}")
            changed = sorted(
                k for k in set(wanted) | set(deployed) if wanted.get(k) != deployed.get(k)
            )
            if changed:
                problems.append(f"values differ under {', '.join(changed)}")
            if problems:
                differs += 1
                lines.append(f"{release.name:<22} " + "; ".join(problems))
            else:
                lines.append(f"{release.name:<22} in sync")
        lines.append(f"platform {env.name}: {differs} of {len(releases)} releases differ")
        return lines, differs

    return asyncio.run(run())


def rollback(env: Environment, name: str, revision: int | None, context: str | None = None) -> str:
    releases = _prepare(env)
    release = next((r for r in releases if r.name == name), None)
    if release is None:
        raise UserError(f"no release {name!r} in the catalog; known: {[r.name for r in releases]}")
    helm = client(env, context)

    async def run() -> str:
        rev = await _current(helm, release)
        if rev is None:
            raise UserError(f"{name} is not installed in {env.name}")
        target = revision if revision is not None else rev.revision - 1
        if target < 1:
            raise UserError(f"{name} has no earlier revision than {rev.revision}")
        await rev.release.rollback(target, wait=True)
        return f"platform {env.name}: {name} rolled back from revision {rev.revision} to {target}"

    return asyncio.run(run())
