"""Prompt drift: compare what users ask now with what the model was trained on.

Two distributions are compared with the population stability index (PSI),
``sum((p - q) * ln(p / q))`` over bins, where ``q`` is the reference (training prompts) and
``p`` the recent sampled prompts:

- prompt length in words, binned at the reference's quantiles;
- vocabulary: the share of words falling on each of the reference's ``vocab_top_k`` most
  frequent words, with everything else pooled into ``<other>`` (so unseen words raise it).

The out-of-vocabulary rate (share of prompt words never seen in the reference) is reported as
context. A PSI above ``psi_threshold`` on either signal means drift.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from tuneops.core.config import StrictModel, load_config
from tuneops.core.errors import UserError
from tuneops.core.io import iter_jsonl
from tuneops.core.paths import CONFIG_DIR

DEFAULT_CONFIG = CONFIG_DIR / "monitor" / "default.yaml"
_WORD = re.compile(r"[a-z0-9][a-z0-9_.\-/]*", re.IGNORECASE)


class DriftSection(StrictModel):
    window: int = Field(1000, ge=1)
    min_prompts: int = Field(20, ge=1)
    reference_split: str = "train"
    length_bins: int = Field(5, ge=2)
    vocab_top_k: int = Field(50, ge=1)
    psi_threshold: float = Field(0.2, gt=0)
    smoothing: float = Field(0.5, gt=0)


class MonitorConfig(StrictModel):
    drift: DriftSection = Field(default_factory=DriftSection)


def load_monitor_config(path=None, *, env=None, overrides=None) -> MonitorConfig:
    return load_config(MonitorConfig, path or DEFAULT_CONFIG, env=env, overrides=overrides)


@dataclass
class Signal:
    name: str
    psi: float
    drifted: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class DriftReport:
    prompts: int
    reference: int
    threshold: float
    signals: list[Signal]
    oov_rate: float

    @property
    def drifted(self) -> bool:
        return any(s.drifted for s in self.signals)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drifted"] = self.drifted
        return data


def words(text: str) -> list[str]:
    return [w.lower().rstrip(".-/") for w in _WORD.findall(text)]


def psi(actual: list[float], expected: list[float], smoothing: float) -> float:
    """PSI of two histograms given as counts.

    ``smoothing`` is added to every bin of both sides (additive smoothing) before normalising:
    an empty bin in a small sample then costs little instead of dominating the sum.
    """
    k = len(actual)
    a_total = sum(actual) + smoothing * k
    e_total = sum(expected) + smoothing * k
    value = 0.0
    for a, e in zip(actual, expected, strict=True):
        p = (a + smoothing) / a_total
        q = (e + smoothing) / e_total
        value += (p - q) * math.log(p / q)
    return value


def _quantile_edges(values: list[int], bins: int) -> list[float]:
    ordered = sorted(values)
    edges = []
    for i in range(1, bins):
        cut = ordered[min(len(ordered) - 1, int(len(ordered) * i / bins))]
        if not edges or cut > edges[-1]:
            edges.append(float(cut))
    return edges


def _histogram(values: list[int], edges: list[float]) -> list[int]:
    counts = [0] * (len(edges) + 1)
    for value in values:
        index = sum(1 for edge in edges if value >= edge)
        counts[index] += 1
    return counts


def compare(prompts: list[str], reference: list[str], cfg: DriftSection) -> DriftReport:
    if not reference:
        raise UserError("the reference dataset has no prompts to compare with")
    if len(prompts) < cfg.min_prompts:
        raise UserError(
            f"only {len(prompts)} sampled prompts; drift needs at least {cfg.min_prompts} "
            "(drift.min_prompts): raise sampling.rate in configs/serve or wait for traffic"
        )
    ref_words = [words(t) for t in reference]
    new_words = [words(t) for t in prompts]

    ref_len = [len(w) for w in ref_words]
    new_len = [len(w) for w in new_words]
    edges = _quantile_edges(ref_len, cfg.length_bins)
    length_psi = psi(_histogram(new_len, edges), _histogram(ref_len, edges), cfg.smoothing)

    ref_counts = Counter(w for ws in ref_words for w in ws)
    top = [w for w, _ in ref_counts.most_common(cfg.vocab_top_k)]
    top_set = set(top)

    def vocab_hist(groups: list[list[str]]) -> list[int]:
        counts = Counter(w if w in top_set else "<other>" for ws in groups for w in ws)
        return [counts.get(w, 0) for w in top] + [counts.get("<other>", 0)]

    vocab_psi = psi(vocab_hist(new_words), vocab_hist(ref_words), cfg.smoothing)
    all_new = [w for ws in new_words for w in ws]
    oov = sum(1 for w in all_new if w not in ref_counts) / max(len(all_new), 1)

    def median(values: list[int]) -> float:
        ordered = sorted(values)
        return float(ordered[len(ordered) // 2]) if ordered else 0.0

    signals = [
        Signal(
            "prompt_length",
            length_psi,
            length_psi > cfg.psi_threshold,
            {"median_words": median(new_len), "reference_median_words": median(ref_len)},
        ),
        Signal(
            "vocabulary",
            vocab_psi,
            vocab_psi > cfg.psi_threshold,
            {"top_k": len(top)},
        ),
    ]
    return DriftReport(len(prompts), len(reference), cfg.psi_threshold, signals, oov)


# ---- inputs ----------------------------------------------------------------------------
def _prompt_lines(source: str) -> list[str]:
    if source.startswith("s3://"):
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, prefix = source[len("s3://") :].partition("/")
        s3 = boto3.client("s3")
        lines: list[str] = []
        try:
            keys = [
                obj["Key"]
                for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix
                )
                for obj in page.get("Contents", [])
                if obj["Key"].endswith(".jsonl")
            ]
            for key in sorted(keys):
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
                lines.extend(body.splitlines())
        except (BotoCoreError, ClientError) as exc:
            raise UserError(f"cannot read the prompt log {source}: {exc}") from exc
        return lines
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
    elif path.is_file():
        files = [path]
    else:
        raise UserError(f"prompt log {source} does not exist (see sampling.log in configs/serve)")
    return [line for f in files for line in f.read_text(encoding="utf-8").splitlines()]


def load_prompts(source: str, window: int) -> list[str]:
    """The ``window`` most recent sampled prompts from a local JSONL log, folder or S3 prefix."""
    records = []
    lines = iter_jsonl(
        _prompt_lines(source),
        lambda number, exc: UserError(f"{source}: line {number} is not JSON ({exc.msg})"),
    )
    for number, record in lines:
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise UserError(f"{source}: line {number} has no string field 'prompt'")
        records.append(record)
    records.sort(key=lambda r: r.get("ts") or 0)
    return [r["prompt"] for r in records[-window:]]


def record_prompt(record: dict[str, Any]) -> str | None:
    """The user side of a dataset record: its user messages, or its text."""
    if record.get("kind") == "text" or "messages" not in record:
        text = record.get("text")
        return text if isinstance(text, str) else None
    users = [m.get("content", "") for m in record.get("messages", []) if m.get("role") == "user"]
    return "\n".join(users) if users else None


def load_reference(ref: str, split: str) -> list[str]:
    """Training prompts from a dataset snapshot reference (or a JSONL file of records)."""
    path = Path(ref).expanduser()
    if path.is_file():
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    else:
        from workloads.data.snapshot import load_snapshot

        rows = load_snapshot(ref).split(split)
    return [p for p in (record_prompt(r) for r in rows) if p]
