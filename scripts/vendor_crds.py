#!/usr/bin/env python
"""Vendor the OpenAPI v3 schemas of the custom resources the project renders or installs.

    python scripts/vendor_crds.py --mirror-root DIR            # write the schemas
    python scripts/vendor_crds.py --mirror-root DIR --check    # compare, write nothing

For each source in ``workloads/deploy/schemas/upstream.yaml`` (project, repository, tag, CRD
paths, kinds) it reads the CRD files at that tag from a local git mirror of the repository,
``DIR/<owner>+<name>/repo`` or ``DIR/<owner>+<name>`` (a bare or ordinary clone, e.g.
``git clone --mirror https://github.com/<owner>/<name> DIR/<owner>+<name>/repo``), and writes
every served version's ``schema.openAPIV3Schema`` of the listed kinds, unchanged, to
``workloads/deploy/schemas/<group>/<Kind>.<version>.json`` (sorted keys, so a re-run writes
the same bytes). ``SOURCES.yaml`` beside them records, per file, the project, repository, tag,
commit, path of the source YAML with its sha256, the chart version that installs it, and the
sha256 of the JSON written. Schema files no source produces any more are removed. Nothing is
fetched from the network.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import posixpath
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tuneops.core.config import StrictModel, read_yaml, validate
from tuneops.core.errors import UserError
from tuneops.core.io import atomic_write_text
from tuneops.core.paths import REPO_ROOT

SCHEMAS_DIR = REPO_ROOT / "workloads" / "deploy" / "schemas"
GITHUB = "https://github.com/"
# A line that is a Helm template action ({{- if ...}}, {{ end }}): the file is a chart template.
TEMPLATE_LINE = re.compile(rb"^[ \t]*\{\{", re.MULTILINE)
HEADER = (
    "# Written by scripts/vendor_crds.py from upstream.yaml; do not edit by hand.\n"
    "# schemas: vendored file -> where it came from; sha256 is of the file as written.\n"
)


class Source(StrictModel):
    project: str = Field(pattern=r"^[a-z0-9-]+$")
    repository: str = Field(pattern=r"^https://github\.com/[\w.-]+/[\w.-]+$")
    tag: str = Field(min_length=1)
    app_version: str = Field(min_length=1)
    chart: str = Field(min_length=1)
    chart_version: str = Field(min_length=1)
    paths: list[str] = Field(min_length=1)
    kinds: list[str] = Field(min_length=1)
    # CRD name -> path of an RFC 6902 patch the release applies to that CRD's file
    patches: dict[str, str] = Field(default_factory=dict)


class Upstream(StrictModel):
    sources: list[Source] = Field(min_length=1)


@dataclass(frozen=True)
class Vendored:
    rel: str  # <group>/<Kind>.<version>.json
    text: str
    record: dict[str, Any]


def schema_json(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mirror_dir(root: Path, repository: str) -> Path:
    owner, name = repository.removeprefix(GITHUB).split("/")
    for candidate in (root / f"{owner}+{name}" / "repo", root / f"{owner}+{name}"):
        if candidate.is_dir():
            return candidate
    raise UserError(
        f"no git mirror of {repository} under {root}: expected {root}/{owner}+{name}/repo "
        f"(git clone --mirror {repository} {root}/{owner}+{name}/repo)"
    )


def git(repo: Path, *args: str) -> bytes:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"git {' '.join(args)} in {repo}: {message[-1] if message else 'failed'}")
    return done.stdout


def read_at_tag(repo: Path, tag: str, path: str) -> bytes:
    """The file at ``tag``, following a symbolic link inside the repository."""
    entry = git(repo, "ls-tree", tag, "--", path).decode().split()
    if not entry:
        raise UserError(f"{repo}: no file {path} at {tag}")
    data = git(repo, "show", f"{tag}:{path}")
    if entry[0] == "120000":  # a symbolic link: its content is the target path
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), data.decode().strip()))
        return read_at_tag(repo, tag, target)
    return data


def load_documents(data: bytes, where: str) -> list[dict[str, Any]]:
    if TEMPLATE_LINE.search(data):
        raise UserError(f"{where}: a Helm template, not plain YAML; name the plain CRD file")
    try:
        return [d for d in yaml.safe_load_all(data) if d]
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: not valid YAML ({exc})") from exc


def apply_patch(crd: dict[str, Any], operations: Any, where: str) -> dict[str, Any]:
    """An RFC 6902 JSON patch (as the release's kustomization applies it) over one CRD."""
    import jsonpatch

    try:
        return jsonpatch.apply_patch(crd, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
        raise UserError(f"{where}: the patch does not apply ({exc})") from exc


def crd_schemas(docs: list[dict[str, Any]], where: str) -> list[tuple[str, str, str, dict]]:
    """(group, kind, version, openAPIV3Schema) for every served version of every CRD."""
    out = []
    for doc in docs:
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        for version in spec["versions"]:
            if not version.get("served", False):
                continue
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema is None:
                raise UserError(f"{where}: version {version['name']} has no openAPIV3Schema")
            out.append((spec["group"], spec["names"]["kind"], version["name"], schema))
    if not out:
        raise UserError(f"{where}: no CustomResourceDefinition with a served version")
    return out


def patched(source: Source, repo: Path, docs: list[dict], where: str) -> tuple[list, dict]:
    """``docs`` with the source's patches applied to the CRDs they name, and what was applied
    (CRD name -> (patch path, sha256 of the patch))."""
    applied = {}
    out = []
    for doc in docs:
        name = (doc.get("metadata") or {}).get("name")
        is_crd = doc.get("kind") == "CustomResourceDefinition"
        if is_crd and name in source.patches:
            patch_path = source.patches[name]
            data = read_at_tag(repo, source.tag, patch_path)
            doc = apply_patch(doc, load_documents(data, patch_path)[0], f"{where} ({patch_path})")
            applied[name] = (patch_path, sha256(data))
        out.append(doc)
    return out, applied


def _record(source: Source, commit: str, path: str, data: bytes, text: str) -> dict[str, Any]:
    return {
        "project": source.project,
        "repository": source.repository,
        "tag": source.tag,
        "commit": commit,
        "app_version": source.app_version,
        "chart": source.chart,
        "chart_version": source.chart_version,
        "path": path,
        "source_sha256": sha256(data),
        "sha256": sha256(text.encode()),
    }


def vendor_source(source: Source, root: Path) -> list[Vendored]:
    repo = mirror_dir(root, source.repository)
    commit = git(repo, "rev-parse", f"{source.tag}^{{commit}}").decode().strip()
    found: list[Vendored] = []
    patched_names: set[str] = set()
    for path in source.paths:
        data = read_at_tag(repo, source.tag, path)
        where = f"{source.repository}@{source.tag}:{path}"
        docs, applied = patched(source, repo, load_documents(data, where), where)
        patched_names |= set(applied)
        for group, kind, version, schema in crd_schemas(docs, where):
            if kind not in source.kinds:
                continue
            text = schema_json(schema)
            record = _record(source, commit, path, data, text)
            if applied:
                record["patches"] = dict(applied.values())
            found.append(Vendored(f"{group}/{kind}.{version}.json", text, record))
    unused = sorted(set(source.patches) - patched_names)
    if unused:
        raise UserError(f"{source.project}: patches for CRDs not in paths: {', '.join(unused)}")
    missing = sorted(set(source.kinds) - {v.rel.split("/")[1].split(".")[0] for v in found})
    if missing:
        raise UserError(
            f"{source.project} {source.tag}: no served CRD for {', '.join(missing)} "
            f"in {', '.join(source.paths)}"
        )
    return found


def vendor_all(upstream: Upstream, root: Path) -> list[Vendored]:
    everything: dict[str, Vendored] = {}
    for source in upstream.sources:
        for item in vendor_source(source, root):
            if item.rel in everything:
                other = everything[item.rel].record["project"]
                raise UserError(f"{item.rel} comes from both {other} and {source.project}")
            everything[item.rel] = item
    return [everything[rel] for rel in sorted(everything)]


def sources_text(items: list[Vendored]) -> str:
    body = {"schemas": {item.rel: item.record for item in items}}
    return HEADER + yaml.safe_dump(body, sort_keys=True, default_flow_style=False)


def existing_schemas(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.glob("*/*.json")}


def differences(items: list[Vendored], out: Path) -> list[str]:
    wanted = {item.rel: item.text for item in items}
    wanted["SOURCES.yaml"] = sources_text(items)
    diffs = [
        rel
        for rel, text in wanted.items()
        if not (out / rel).is_file() or (out / rel).read_text(encoding="utf-8") != text
    ]
    return sorted(diffs + sorted(existing_schemas(out) - set(wanted)))


def write(items: list[Vendored], out: Path) -> None:
    for stale in sorted(existing_schemas(out) - {item.rel for item in items}):
        (out / stale).unlink()
    for item in items:
        atomic_write_text(out / item.rel, item.text)
    atomic_write_text(out / "SOURCES.yaml", sources_text(items))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror-root", type=Path, required=True, help="folder of git mirrors")
    parser.add_argument("--upstream", type=Path, default=SCHEMAS_DIR / "upstream.yaml")
    parser.add_argument("--out", type=Path, default=SCHEMAS_DIR, help="schemas folder")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on change")
    args = parser.parse_args(argv)
    try:
        upstream = validate(Upstream, read_yaml(args.upstream), str(args.upstream))
        items = vendor_all(upstream, args.mirror_root)
        if args.check:
            diffs = differences(items, args.out)
            for rel in diffs:
                print(f"differs: {rel}")
            return 1 if diffs else 0
        write(items, args.out)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {len(items)} schemas and SOURCES.yaml to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
