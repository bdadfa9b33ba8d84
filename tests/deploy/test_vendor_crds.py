"""scripts/vendor_crds.py against a tiny upstream repository made here: what it writes, that
a re-run writes the same bytes, ``--check``, and its one-line refusals. No network."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneops.core.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "vendor_crds.py"

CRD = """\
# a comment before the first document
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.acme.example}
spec:
  group: acme.example
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              description: "args may use {{.Name}}"
              properties: {size: {type: integer, maximum: 10}}
    - name: v0
      served: false
      storage: false
      schema:
        openAPIV3Schema: {type: object}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.acme.example}
spec:
  group: acme.example
  names: {kind: Gadget, plural: gadgets}
  scope: Cluster
  versions:
    - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}
"""
PATCH = """\
- op: add
  path: /spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/size/minimum
  value: 1
"""


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        env=env,
    )


def _mirror(root: Path) -> Path:
    """A tiny upstream repository: one CRD file (reached through a symbolic link too), tagged."""
    repo = root / "acme+widgets" / "repo"
    (repo / "config" / "crds").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "config" / "crds" / "acme.yaml").write_text(CRD)
    (repo / "chart").mkdir()
    (repo / "chart" / "crds.yaml").symlink_to("../config/crds/acme.yaml")
    (repo / "templated.yaml").write_text("{{- if .Values.crds }}\n" + CRD)
    (repo / "config" / "crds" / "widget_patch.yaml").write_text(PATCH)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "crds")
    _git(repo, "tag", "v1.0.0")
    return repo


def _vendor(tmp_path: Path, paths: list[str], kinds: list[str], *extra: str, patches=None):
    source = {
        "project": "acme",
        "repository": "https://github.com/acme/widgets",
        "tag": "v1.0.0",
        "app_version": "v1.0.0",
        "chart": "acme",
        "chart_version": "1.0.0",
        "paths": paths,
        "kinds": kinds,
        "patches": patches or {},
    }
    upstream = tmp_path / "upstream.yaml"
    upstream.write_text(yaml.safe_dump({"sources": [source]}))
    args = ["--mirror-root", str(tmp_path / "mirrors"), "--upstream", str(upstream)]
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--out", str(tmp_path / "out"), *extra],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_script_vendors_the_served_schemas_from_a_local_mirror(tmp_path):
    _mirror(tmp_path / "mirrors")
    out = tmp_path / "out"
    (out / "acme.example").mkdir(parents=True)
    (out / "acme.example" / "Stale.v1.json").write_text("{}")
    done = _vendor(tmp_path, ["chart/crds.yaml"], ["Widget"])
    assert done.returncode == 0, done.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == [
        "acme.example/Widget.v1.json"
    ]
    written = (out / "acme.example" / "Widget.v1.json").read_bytes()
    first = next(yaml.safe_load_all(CRD))
    assert json.loads(written) == first["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    record = yaml.safe_load((out / "SOURCES.yaml").read_text())["schemas"]
    assert record["acme.example/Widget.v1.json"]["sha256"] == hashlib.sha256(written).hexdigest()
    assert record["acme.example/Widget.v1.json"]["source_sha256"] == (
        hashlib.sha256(CRD.encode()).hexdigest()
    )
    assert record["acme.example/Widget.v1.json"]["path"] == "chart/crds.yaml"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert _vendor(tmp_path, ["chart/crds.yaml"], ["Widget"]).returncode == 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert _vendor(tmp_path, ["chart/crds.yaml"], ["Widget"], "--check").returncode == 0
    (out / "acme.example" / "Widget.v1.json").write_text("{}\n")
    checked = _vendor(tmp_path, ["chart/crds.yaml"], ["Widget"], "--check")
    assert (checked.returncode, checked.stdout) == (1, "differs: acme.example/Widget.v1.json\n")


def test_the_script_applies_the_release_patches_and_records_them(tmp_path):
    _mirror(tmp_path / "mirrors")
    patches = {"widgets.acme.example": "config/crds/widget_patch.yaml"}
    assert _vendor(tmp_path, ["config/crds/acme.yaml"], ["Widget"], patches=patches).returncode == 0
    out = tmp_path / "out"
    schema = json.loads((out / "acme.example" / "Widget.v1.json").read_text())
    assert schema["properties"]["spec"]["properties"]["size"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
    }
    record = yaml.safe_load((out / "SOURCES.yaml").read_text())["schemas"]
    assert record["acme.example/Widget.v1.json"]["patches"] == {
        "config/crds/widget_patch.yaml": hashlib.sha256(PATCH.encode()).hexdigest()
    }


@pytest.mark.parametrize(
    ("paths", "kinds", "message"),
    [
        (["config/crds/acme.yaml"], ["Widget", "Gizmo"], "no served CRD for Gizmo"),
        (["templated.yaml"], ["Widget"], "a Helm template, not plain YAML"),
        (["missing.yaml"], ["Widget"], "no file missing.yaml at v1.0.0"),
        (["config/crds/acme.yaml"], ["Widget"], "patches for CRDs not in paths: gizmos.acme"),
    ],
)
def test_the_script_refuses_in_one_line(tmp_path, paths, kinds, message):
    _mirror(tmp_path / "mirrors")
    patches = {"gizmos.acme.example": "config/crds/widget_patch.yaml"} if "patch" in message else {}
    done = _vendor(tmp_path, paths, kinds, patches=patches)
    assert done.returncode != 0
    assert message in done.stderr
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_the_script_names_the_mirror_it_could_not_find(tmp_path):
    (tmp_path / "mirrors").mkdir()
    done = _vendor(tmp_path, ["a.yaml"], ["Widget"])
    assert done.returncode != 0
    assert "acme+widgets/repo" in done.stderr and "git clone --mirror" in done.stderr
