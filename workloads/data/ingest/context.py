"""What every source reader shares: the error policy, the rejects it collects, file reading.

Bad input (a malformed line, a field mapping that names a missing field) either stops the build
with one message naming file, line and fix (``on_error="fail"``), or sends the raw item to the
rejects with the same explanation (``on_error="quarantine"``). An unreadable file always stops
the build: there is no record to quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from workloads.data.config import OnError
from workloads.data.records import make_reject

QUARANTINE_HINT = "or run with --on-error=quarantine to send such records to rejects.jsonl"


@dataclass
class IngestContext:
    """Carries the error policy and collects quarantined items and counters for one source."""

    on_error: OnError
    rejects: list[dict[str, Any]] = field(default_factory=list)
    seen: int = 0

    def bad(self, where: str, problem: str, fix: str, reason: str, raw: Any = None) -> None:
        if self.on_error == "fail":
            raise UserError(f"{where}: {problem}; {fix}, {QUARANTINE_HINT}")
        reject = make_reject("ingest", None, reason, f"{where}: {problem}", where=where)
        if raw is not None:
            reject["raw"] = raw if not isinstance(raw, str) else raw[:4000]
        self.rejects.append(reject)

    def drop(self, record: dict[str, Any] | None, reason: str, detail: str, **extra: Any) -> None:
        """A well-formed item that is not usable (an open issue, an empty section)."""
        self.rejects.append(make_reject("ingest", record, reason, detail, **extra))


def read_text(path: Path) -> str:
    """A source file's text; any reason it cannot be read is one ``UserError``."""
    try:
        return path.read_text(encoding="utf-8-sig")  # a leading BOM is not content
    except FileNotFoundError as exc:
        raise UserError(f"{path}: file not found; fix the path in the data config") from exc
    except IsADirectoryError as exc:
        raise UserError(f"{path}: is a folder; name a file in the data config") from exc
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte {exc.start}); re-encode the file as UTF-8"
        ) from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); check its permissions") from exc
