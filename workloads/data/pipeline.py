"""The dataset build: every stage in order, the accounting, and the snapshot.

``build_dataset(config)`` runs ingest, normalise, validate, scrub, dedup, decontaminate,
format and split, then writes the snapshot. Every stage reports ``in``, ``out`` and
``rejected`` with the reasons; the build checks that what came in equals what was written plus
what was rejected before it writes anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workloads.data.config import DataConfig
from workloads.data.manifest import StageReport, build_manifest, render_datacard
from workloads.data.records import StageResult, reason_counts
from workloads.data.snapshot import Snapshot, write_snapshot
from workloads.data.split import split

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

Stage = Callable[[list[dict[str, Any]]], StageResult]


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


@dataclass
class StageRunner:
    """Runs the stages one by one, checks that each one's in = out + rejected, and keeps the
    reports and the rejects. ``say`` receives one line per finished stage."""

    say: Callable[[str], None]
    reports: list[StageReport] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)

    def run(self, name: str, func: Callable[[], StageResult], inputs: int | None) -> StageResult:
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
        self.reports.append(report)
        self.rejects.extend(result.rejects)
        self.say(report.line())
        return result


def _stages_after_ingest(
    config: DataConfig,
    *,
    progress: bool,
    tokenizer,
    benchmark: list[dict[str, Any]] | None,
) -> list[tuple[str, Stage]]:
    from workloads.data.decontaminate import decontaminate
    from workloads.data.dedup import dedup
    from workloads.data.formatting import format_records
    from workloads.data.normalise import normalise
    from workloads.data.scrub import scrub
    from workloads.data.split import split_stage
    from workloads.data.validate import validate

    return [
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
    from workloads.data.ingest.stage import ingest
    from workloads.data.scrub import scrub_value

    if on_error:
        config = config.model_copy(update={"on_error": on_error})
    runner = StageRunner(echo or (lambda _line: None))
    records = runner.run("ingest", lambda: ingest(config, progress=progress), None).records
    later = _stages_after_ingest(
        config, progress=progress, tokenizer=tokenizer, benchmark=benchmark
    )
    for name, func in later:
        records = runner.run(name, lambda f=func, rs=records: f(rs), len(records)).records

    parts = split(records, config.split)
    total_in = runner.reports[0].inputs
    rejects = runner.rejects
    if total_in != len(records) + len(rejects):
        raise AssertionError("records lost between stages")
    if config.scrub.enabled:
        rejects = [scrub_value(r, config.scrub.kinds) for r in rejects]

    manifest = build_manifest(config, runner.reports, rejects, parts, records, total_in)
    snapshot = write_snapshot(
        config.name,
        parts,
        manifest,
        rejects,
        render_datacard(config, manifest),
        root=out or config.output,
    )
    return BuildResult(snapshot, runner.reports, rejects)
