"""The dataset build: every stage in order, the accounting, and the snapshot.

``build_dataset(config)`` runs ingest, normalise, validate, scrub, dedup, decontaminate,
format and split, then writes the snapshot. Every stage reports ``in``, ``out`` and
``rejected`` with the reasons; the build checks that what came in equals what was written plus
what was rejected before it writes anything.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workloads.data.config import DataConfig
from workloads.data.records import StageResult, reason_counts, short_hash
from workloads.data.snapshot import Snapshot, write_snapshot
from workloads.data.split import SPLITS, split

STAGES = (
    "ingest",
    "normalise",
    "validate",
    "scrub",
    "dedup",
    "decontaminate",
    "format",
    "split",
)


@dataclass
class StageReport:
    name: str
    inputs: int
    outputs: int
    rejected: int
    reasons: dict[str, int]
    stats: dict[str, Any]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "in": self.inputs,
            "out": self.outputs,
            "rejected": self.rejected,
            "reasons": self.reasons,
            "stats": self.stats,
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        text = (
            f"{self.name:<14} {self.inputs:>6} in  {self.outputs:>6} out  "
            f"{self.rejected:>5} rejected"
        )
        if self.reasons:
            text += "  (" + ", ".join(f"{k} {v}" for k, v in self.reasons.items()) + ")"
        return text


@dataclass
class BuildResult:
    snapshot: Snapshot
    stages: list[StageReport]
    rejects: list[dict[str, Any]] = field(default_factory=list)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.snapshot.manifest

    def summary(self) -> str:
        m = self.manifest
        splits = m["splits"]
        return (
            f"snapshot {m['name']}/{m['snapshot_id']}: {m['accounting']['written']} records "
            f"(train {splits['train']}, validation {splits['validation']}, test {splits['test']}) "
            f"from {m['accounting']['in']} in, {m['accounting']['rejected']} rejected -> "
            f"{self.snapshot.path}"
        )


def _git_commit() -> str | None:
    import subprocess

    from tuneops.core.paths import REPO_ROOT

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def build_dataset(
    config: DataConfig,
    *,
    out: str | Path | None = None,
    on_error: str | None = None,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
    tokenizer=None,
    benchmark: list[dict[str, Any]] | None = None,
) -> BuildResult:
    """Run every stage and write the snapshot. ``echo`` receives one line per finished stage."""
    from workloads.data.decontaminate import decontaminate
    from workloads.data.dedup import dedup
    from workloads.data.formatting import format_records
    from workloads.data.ingest import ingest
    from workloads.data.normalise import normalise
    from workloads.data.scrub import scrub, scrub_value
    from workloads.data.split import split_stage
    from workloads.data.validate import validate

    if on_error:
        config = config.model_copy(update={"on_error": on_error})
    say = echo or (lambda _line: None)
    reports: list[StageReport] = []
    rejects: list[dict[str, Any]] = []

    def run(name: str, func: Callable[[], StageResult], inputs: int | None) -> StageResult:
        started = time.perf_counter()
        result = func()
        for reject in result.rejects:
            reject["stage"] = name
        count_in = inputs if inputs is not None else len(result.records) + len(result.rejects)
        report = StageReport(
            name,
            count_in,
            len(result.records),
            len(result.rejects),
            reason_counts(result.rejects),
            result.stats,
            time.perf_counter() - started,
        )
        if report.inputs != report.outputs + report.rejected:
            raise AssertionError(f"stage {name} lost records: {report.line()}")
        reports.append(report)
        rejects.extend(result.rejects)
        say(report.line())
        return result

    ingested = run("ingest", lambda: ingest(config, progress=progress), None)
    records = ingested.records
    stage_funcs: list[tuple[str, Callable[[list], StageResult]]] = [
        ("normalise", lambda rs: normalise(rs, config.normalise)),
        (
            "validate",
            lambda rs: validate(rs, config.validation, config.formatting, tokenizer=tokenizer),
        ),
        ("scrub", lambda rs: scrub(rs, config.scrub)),
        ("dedup", lambda rs: dedup(rs, config.dedup, progress=progress)),
        ("decontaminate", lambda rs: decontaminate(rs, config.decontaminate, benchmark=benchmark)),
        ("format", lambda rs: format_records(rs, config.formatting)),
        ("split", lambda rs: split_stage(rs, config.split)),
    ]
    for name, func in stage_funcs:
        records = run(name, lambda func=func, records=records: func(records), len(records)).records

    parts = split(records, config.split)
    total_in = reports[0].inputs
    total_rejected = len(rejects)
    if total_in != len(records) + total_rejected:
        raise AssertionError("records lost between stages")
    if config.scrub.enabled:
        rejects = [scrub_value(r, config.scrub.kinds) for r in rejects]

    manifest = _manifest(config, reports, rejects, parts, records, total_in)
    snapshot = write_snapshot(
        config.name,
        parts,
        manifest,
        rejects,
        render_datacard(config, manifest),
        root=out or config.output,
    )
    return BuildResult(snapshot, reports, rejects)


def _manifest(
    config: DataConfig,
    reports: list[StageReport],
    rejects: list[dict[str, Any]],
    parts: dict[str, list[dict[str, Any]]],
    records: list[dict[str, Any]],
    total_in: int,
) -> dict[str, Any]:
    config_dump = config.model_dump(mode="json")
    by_reason = Counter(f"{r['stage']}/{r['reason']}" for r in rejects)
    validate_stats = next(r.stats for r in reports if r.name == "validate")
    return {
        "name": config.name,
        "description": config.description,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "config": config_dump,
        "config_hash": short_hash(config_dump),
        "format": {"splits": "jsonl", "record": "messages (chat) or text; see DATACARD.md"},
        "sources": reports[0].stats.get("sources", {}),
        "stages": {r.name: r.as_dict() for r in reports},
        "rejects": {
            "total": len(rejects),
            "by_stage": {r.name: r.rejected for r in reports},
            "by_reason": dict(sorted(by_reason.items())),
        },
        "accounting": {
            "in": total_in,
            "written": len(records),
            "rejected": len(rejects),
            "balanced": total_in == len(records) + len(rejects),
        },
        "splits": {name: len(parts[name]) for name in SPLITS},
        "kinds": dict(sorted(Counter(r["kind"] for r in records).items())),
        "categories": dict(sorted(Counter(str(r.get("category")) for r in records).items())),
        "tokens": {
            k: validate_stats.get(k)
            for k in ("tokenizer", "max_length", "tokens_total", "tokens_max", "tokens_mean")
        },
        "scrub": next(r.stats for r in reports if r.name == "scrub"),
    }


def render_datacard(config: DataConfig, manifest: dict[str, Any]) -> str:
    """A short human-readable card; ``{snapshot_id}`` is filled in when the id is known."""
    lines = [
        f"# Dataset card: {config.name} ({{snapshot_id}})",
        "",
        config.description or "A chat-formatted dataset built by `tuneops data build`.",
        "",
        f"- Built: {manifest['created_at']} from commit {manifest.get('git_commit') or 'unknown'}",
        f"- Config hash: {manifest['config_hash']}",
        f"- Records: {manifest['accounting']['written']} written, "
        f"{manifest['accounting']['rejected']} rejected, {manifest['accounting']['in']} in",
        "- Splits: " + ", ".join(f"{k} {v}" for k, v in manifest["splits"].items()),
        "- Kinds: " + ", ".join(f"{k} {v}" for k, v in manifest["kinds"].items()),
        "- Categories: " + ", ".join(f"{k} {v}" for k, v in manifest["categories"].items()),
        f"- Tokens (tokenizer {manifest['tokens']['tokenizer']}, chat template applied): "
        f"mean {manifest['tokens']['tokens_mean']}, max {manifest['tokens']['tokens_max']} "
        f"of {manifest['tokens']['max_length']}",
        "",
        "## Sources",
        "",
        "| source | type | records | rejected |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, stats in manifest["sources"].items():
        lines.append(f"| {name} | {stats['type']} | {stats['records']} | {stats['rejected']} |")
    lines += ["", "## Stages", "", "| stage | in | out | rejected | reasons |"]
    lines.append("| --- | ---: | ---: | ---: | --- |")
    for name, stage in manifest["stages"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in stage["reasons"].items()) or "-"
        counts = f"{stage['in']} | {stage['out']} | {stage['rejected']}"
        lines.append(f"| {name} | {counts} | {reasons} |")
    replacements = manifest["scrub"].get("replacements") or {}
    lines += [
        "",
        "## Processing",
        "",
        "- Text normalised to Unicode NFC; HTML and quoted e-mail removed outside code blocks.",
        "- Secrets and personal data replaced by typed placeholders: "
        + (", ".join(f"{k} x{v}" for k, v in replacements.items()) or "none found")
        + ".",
        f"- Near-duplicates removed with MinHash LSH (threshold {config.dedup.threshold}); the "
        "first record of each group is kept.",
        (
            f"- Decontaminated against the evaluation benchmark ({config.decontaminate.ngram}-gram "
            f"overlap >= {config.decontaminate.threshold} rejected; the highest overlap kept is "
            f"{manifest['stages']['decontaminate']['stats'].get('max_kept_overlap', 0):.0%})."
            if config.decontaminate.enabled
            else "- Not decontaminated (disabled in the config)."
        ),
        f"- Split by a hash of the record id (salt {config.split.salt!r}).",
        "- Every dropped record is in `rejects.jsonl` with its stage and reason.",
        "",
        "## Use",
        "",
        "Fine-tuning a chat model for cloud-native operations. Do not evaluate on it: the "
        "benchmark is kept separate.",
        "",
        "```python",
        "from workloads.data.snapshot import load_snapshot",
        f'train = load_snapshot("{config.name}/{{snapshot_id}}").split("train")',
        "```",
        "",
    ]
    return "\n".join(lines)
