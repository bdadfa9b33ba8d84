"""What a snapshot says about itself: the manifest (counts per stage and reason, splits,
tokens, provenance) and the human-readable dataset card rendered from it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tuneops.core.gitmeta import git_commit
from workloads.data.config import DataConfig
from workloads.data.records import short_hash
from workloads.data.split import SPLITS


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


def build_manifest(
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
        "git_commit": git_commit(),
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


def _summary_lines(config: DataConfig, manifest: dict[str, Any]) -> list[str]:
    accounting, tokens = manifest["accounting"], manifest["tokens"]
    return [
        f"# Dataset card: {config.name} ({{snapshot_id}})",
        "",
        config.description or "A chat-formatted dataset built by `tuneops data build`.",
        "",
        f"- Built: {manifest['created_at']} from commit {manifest.get('git_commit') or 'unknown'}",
        f"- Config hash: {manifest['config_hash']}",
        f"- Records: {accounting['written']} written, "
        f"{accounting['rejected']} rejected, {accounting['in']} in",
        "- Splits: " + ", ".join(f"{k} {v}" for k, v in manifest["splits"].items()),
        "- Kinds: " + ", ".join(f"{k} {v}" for k, v in manifest["kinds"].items()),
        "- Categories: " + ", ".join(f"{k} {v}" for k, v in manifest["categories"].items()),
        f"- Tokens (tokenizer {tokens['tokenizer']}, chat template applied): "
        f"mean {tokens['tokens_mean']}, max {tokens['tokens_max']} "
        f"of {tokens['max_length']}",
    ]


def _table_lines(manifest: dict[str, Any]) -> list[str]:
    lines = [
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
    return lines


def _processing_lines(config: DataConfig, manifest: dict[str, Any]) -> list[str]:
    replacements = manifest["scrub"].get("replacements") or {}
    return [
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
    ]


def _use_lines(config: DataConfig) -> list[str]:
    return [
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


def render_datacard(config: DataConfig, manifest: dict[str, Any]) -> str:
    """A short human-readable card; ``{snapshot_id}`` is filled in when the id is known."""
    lines = _summary_lines(config, manifest)
    lines += _table_lines(manifest)
    lines += _processing_lines(config, manifest)
    lines += _use_lines(config)
    return "\n".join(lines)
