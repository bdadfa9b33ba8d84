"""Stage 8, split: deterministic train/validation/test assignment by a hash of the record id.

A record's split depends only on its id (a rephrasing's: the id of the record it rewords, so a
question and its other wordings never straddle splits) and the salt, never on the order or on
the other records, so adding records to a source never moves existing ones between splits.
"""

from __future__ import annotations

import hashlib
from typing import Any

from workloads.data.config import SplitConfig
from workloads.data.records import StageResult, group_of

SPLITS = ("train", "validation", "test")


def bucket(record_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by the id and the salt."""
    digest = hashlib.sha256(f"{salt}\x00{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(record_id: str, cfg: SplitConfig) -> str:
    value = bucket(record_id, cfg.salt)
    if value < cfg.test:
        return "test"
    if value < cfg.test + cfg.validation:
        return "validation"
    return "train"


def split(records: list[dict[str, Any]], cfg: SplitConfig) -> dict[str, list[dict[str, Any]]]:
    """Records per split, each split sorted by id so the files do not depend on input order."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for record in records:
        out[assign(group_of(record), cfg)].append(record)
    for name in SPLITS:
        out[name].sort(key=lambda r: r["id"])
    return out


def split_stage(records: list[dict[str, Any]], cfg: SplitConfig) -> StageResult:
    """The split counts; a rephrasing whose record is held out (validation or test) is dropped:
    those splits keep one wording per record, so each fact counts once in what they measure."""
    result = StageResult([])
    for record in records:
        group = group_of(record)
        where = assign(group, cfg)
        if record["id"] != group and where != "train":
            result.reject(record, "rephrasing_held_out", f"{group} is in {where}")
        else:
            result.records.append(record)
    parts = split(result.records, cfg)
    result.stats = {name: len(rows) for name, rows in parts.items()}
    return result
