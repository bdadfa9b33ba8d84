"""Dockerfiles: multi-stage, non-root, pinned bases, hadolint clean; build needs an engine."""

from __future__ import annotations

import pytest
from dockerfile_parse import DockerfileParser

from tuneops.core.errors import MissingToolError, UserError
from workloads.deploy import images
from workloads.deploy.config import load_deploy_config


def _parse(path):
    parser = DockerfileParser(path=str(path))
    return parser


def test_every_image_has_a_dockerfile_in_every_env_config():
    names = {p.name for p in images.dockerfiles()}
    assert names == {
        "train.Dockerfile",
        "eval.Dockerfile",
        "serve.Dockerfile",
        "serve-gpu.Dockerfile",
    }
    for env in ("dev", "staging", "prod"):
        for spec in load_deploy_config(env).images.images.values():
            assert (images.REPO_ROOT / spec.dockerfile).is_file()


@pytest.mark.parametrize("name", ["train", "eval", "serve", "serve-gpu"])
def test_dockerfile_structure(name):
    parser = _parse(images.IMAGES_DIR / f"{name}.Dockerfile")
    instructions = parser.structure
    froms = [i["value"] for i in instructions if i["instruction"] == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    args = {
        i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1]
        for i in instructions
        if i["instruction"] == "ARG" and "=" in i["value"]
    }
    bases = [args.get(f.split()[0].strip("${}"), f.split()[0]) for f in froms]
    for base in bases:
        assert ":" in base and not base.endswith(":latest"), f"unpinned base {base}"
    if name in ("train", "serve-gpu"):
        assert bases[-1].startswith("nvidia/cuda:"), "GPU images run on a CUDA base"
    users = [i["value"] for i in instructions if i["instruction"] == "USER"]
    assert users and not users[-1].startswith(("root", "0")), "runs as a non-root user"
    # The package resolves configs/ beside its source: an editable install whose tree the
    # runtime stage copies whole.
    runs = " ".join(i["value"] for i in instructions if i["instruction"] == "RUN")
    assert "pip install --no-deps --no-build-isolation -e ." in runs
    copies = [i["value"] for i in instructions if i["instruction"] == "COPY"]
    assert "--from=build /app /app" in copies and "--from=build /opt/venv /opt/venv" in copies
    has_healthcheck = any(i["instruction"] == "HEALTHCHECK" for i in instructions)
    assert has_healthcheck == name.startswith("serve")


def test_hadolint_is_clean_on_the_project_dockerfiles():
    results = images.lint()
    assert results and all(r.ok for r in results), [r.output for r in results if not r.ok]


def test_hadolint_catches_problems(tmp_path):
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    (result,) = images.lint([bad])
    assert not result.ok and "DL3007" in result.output and "DL3013" in result.output


def test_build_without_a_docker_engine_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(MissingToolError, match="no Docker engine answers"):
        images.build(load_deploy_config("dev"), ["serve"], push=False)


def test_build_refuses_unknown_image_names(tmp_path, monkeypatch):
    cfg = load_deploy_config("dev")
    with pytest.raises(UserError, match="unknown image"):
        images.build(cfg, ["nope"], push=False, client=object())
