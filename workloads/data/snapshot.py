"""Versioned dataset snapshots: write one atomically, find and load one by reference.

Layout (contract 1)::

    <datasets root>/<name>/<snapshot id>/
        train.jsonl  validation.jsonl  test.jsonl  manifest.json  rejects.jsonl  DATACARD.md
    <datasets root>/<name>/LATEST          # the newest snapshot id

The datasets root is ``<cache>/datasets`` unless a config or ``--root`` names another. The
snapshot id is a hash of the three split files' content: the same records give the same id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from tuneops.core.io import atomic_dir, atomic_write_json, atomic_write_jsonl, atomic_write_text
from tuneops.core.paths import cache_dir
from workloads.data.records import public_record
from workloads.data.split import SPLITS

LATEST = "LATEST"
MANIFEST = "manifest.json"


def datasets_root(root: str | Path | None = None) -> Path:
    return Path(root) if root else cache_dir() / "datasets"


def _line(record: dict[str, Any]) -> str:
    return json.dumps(public_record(record), ensure_ascii=False, sort_keys=True)


def snapshot_id(splits: dict[str, list[dict[str, Any]]]) -> str:
    digest = hashlib.sha256()
    for name in SPLITS:
        digest.update(f"{name}\n".encode())
        for record in splits.get(name, []):
            digest.update(_line(record).encode())
            digest.update(b"\n")
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Snapshot:
    """A written snapshot. ``split(name)`` reads one split's records."""

    id: str
    path: Path
    name: str
    manifest: dict[str, Any]

    def split(self, name: str) -> list[dict[str, Any]]:
        if name not in SPLITS:
            raise UserError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        path = self.path / f"{name}.jsonl"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UserError(f"{path}: cannot read the split ({exc.strerror})") from exc
        return [json.loads(line) for line in lines if line.strip()]

    @property
    def splits(self) -> dict[str, list[dict[str, Any]]]:
        return {name: self.split(name) for name in SPLITS}

    def rejects(self) -> list[dict[str, Any]]:
        path = self.path / "rejects.jsonl"
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def write_snapshot(
    name: str,
    splits: dict[str, list[dict[str, Any]]],
    manifest: dict[str, Any],
    rejects: list[dict[str, Any]],
    datacard: str,
    *,
    root: str | Path | None = None,
) -> Snapshot:
    """Write every file into a temporary folder, rename it into place, then move LATEST."""
    sid = snapshot_id(splits)
    manifest = {**manifest, "snapshot_id": sid, "name": name}
    files = {}
    base = datasets_root(root) / name
    target = base / sid
    with atomic_dir(target) as tmp:
        for split_name in SPLITS:
            rows = [public_record(r) for r in splits.get(split_name, [])]
            atomic_write_jsonl(tmp / f"{split_name}.jsonl", rows)
            data = (tmp / f"{split_name}.jsonl").read_bytes()
            files[f"{split_name}.jsonl"] = {
                "records": len(rows),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        atomic_write_jsonl(tmp / "rejects.jsonl", rejects)
        files["rejects.jsonl"] = {"records": len(rejects)}
        manifest["files"] = files
        atomic_write_json(tmp / MANIFEST, manifest)
        atomic_write_text(tmp / "DATACARD.md", datacard.replace("{snapshot_id}", sid))
    atomic_write_text(base / LATEST, sid + "\n")
    return Snapshot(sid, target, name, manifest)


def _available(root: Path) -> str:
    if not root.is_dir():
        return "none yet: run `tuneops data build`"
    found = [
        f"{d.name}/{s.name}"
        for d in sorted(root.iterdir())
        if d.is_dir()
        for s in sorted(d.iterdir())
        if (s / MANIFEST).is_file()
    ]
    return ", ".join(found[:20]) or "none yet: run `tuneops data build`"


def load_snapshot(ref: str | Path, *, root: str | Path | None = None) -> Snapshot:
    """Load a snapshot: a snapshot folder, ``<name>`` (the latest) or ``<name>/<id>``."""
    ref_path = Path(ref).expanduser()
    if (ref_path / MANIFEST).is_file():
        path = ref_path
    else:
        base = datasets_root(root)
        name, _, sid = str(ref).strip("/").partition("/")
        if not name or "/" in sid:
            raise UserError(f"snapshot reference {ref!r}: give a folder, <name> or <name>/<id>")
        if not sid:
            latest = base / name / LATEST
            if not latest.is_file():
                raise UserError(
                    f"no snapshot of dataset {name!r} under {base} (available: {_available(base)})"
                )
            sid = latest.read_text(encoding="utf-8").strip()
        path = base / name / sid
        if not (path / MANIFEST).is_file():
            raise UserError(f"snapshot {name}/{sid} not found (available: {_available(base)})")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path / MANIFEST}: unreadable manifest ({exc})") from exc
    sid = manifest.get("snapshot_id", path.name)
    return Snapshot(sid, path, manifest.get("name", path.parent.name), manifest)
