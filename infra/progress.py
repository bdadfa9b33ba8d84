"""Progress of Terraform runs, read from Terraform's machine-readable UI.

``terraform plan -json`` and ``terraform apply -json`` print one JSON message per line
(Terraform's "Machine-readable UI", schema ``ui`` 1.x): ``version``, ``planned_change``,
``refresh_start``/``refresh_complete``, ``apply_start``, ``apply_progress``, ``apply_complete``,
``apply_errored``, ``change_summary``, ``diagnostic`` and others. ``StackRun`` keeps what one
run of one stack has reported; a view shows it while Terraform runs:

- ``LiveView`` on a terminal: one live line per stack run (rich), with the resources done out
  of the total and the one in flight;
- ``PlainView`` anywhere else (CI, pipes, the demo's log file): one line per resource Terraform
  finished, in Terraform's own words;
- ``NullView`` when the caller asked for quiet.

Errors are Terraform's ``diagnostic`` messages; ``StackRun.error_text`` gathers the distinct
ones into the message of the failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# Resource operations that count as done work in an apply (a replacement is a delete and a
# create, each reported on its own).
_OPERATIONS = {"create": 1, "update": 1, "delete": 1, "replace": 2, "read": 1}
_MAX_ERRORS = 8
_GROUP_RESOURCES = 3
_MAX_DETAIL = 400


def parse_line(line: str) -> dict | None:
    """One message of Terraform's JSON UI, or None for a line that is not one."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        return None
    return message if isinstance(message, dict) and "type" in message else None


def resource_address(message: dict) -> str:
    """The resource a hook or change message is about (``aws_vpc.network_vpc_...``)."""
    body = message.get("hook") or message.get("change") or {}
    return (body.get("resource") or {}).get("addr", "")


@dataclass
class Diagnostic:
    severity: str
    summary: str
    detail: str = ""
    address: str = ""

    @classmethod
    def from_message(cls, message: dict) -> Diagnostic:
        body = message.get("diagnostic") or {}
        # where: the resource instance, else the configuration block the error points at
        context = (body.get("snippet") or {}).get("context") or ""
        return cls(
            severity=body.get("severity", message.get("@level", "error")),
            summary=body.get("summary", message.get("@message", "")),
            detail=body.get("detail", "") or "",
            address=body.get("address") or context.removeprefix("resource."),
        )

    def text(self) -> str:
        """One paragraph: the summary, the resource, and the first paragraph of the detail."""
        where = f" [{self.address}]" if self.address else ""
        first = self.detail.strip().split("\n\n", 1)[0].replace("\n", " ").strip()
        if len(first) > _MAX_DETAIL:
            first = first[: _MAX_DETAIL - 3] + "..."
        return f"{self.summary}{where}" + (f": {first}" if first else "")


@dataclass
class StackRun:
    """What one ``plan`` or ``apply`` of one stack has reported so far."""

    stack: str  # the stack's full name, e.g. local-network
    action: str  # plan | apply
    total: int = 0  # resource operations the plan holds
    done: int = 0
    failed: int = 0
    refreshed: int = 0
    planned: list[str] = field(default_factory=list)
    running: dict[str, str] = field(default_factory=dict)  # address -> Terraform's message
    diagnostics: list[Diagnostic] = field(default_factory=list)
    summary: str = ""  # Terraform's change_summary, e.g. "Apply complete! Resources: ..."
    other: list[str] = field(default_factory=list)  # output lines that were not messages
    exit_code: int | None = None

    def handle(self, message: dict) -> str | None:
        """Take one message; returns what it was for the views: ``planned``, ``started``,
        ``done``, ``failed``, ``refreshed``, ``diagnostic``, or None (nothing to show)."""
        kind = message.get("type")
        address = resource_address(message)
        if kind == "planned_change":
            action = (message.get("change") or {}).get("action", "")
            self.planned.append(f"{address} ({action})")
            self.total += _OPERATIONS.get(action, 0)
            return "planned"
        if kind in ("apply_start", "apply_progress"):
            self.running[address] = message.get("@message", address)
            return "started"
        if kind in ("apply_complete", "apply_errored"):
            self.running.pop(address, None)
            if kind == "apply_complete":
                self.done += 1
                return "done"
            self.failed += 1
            return "failed"
        if kind == "refresh_complete":
            self.refreshed += 1
            return "refreshed"
        if kind == "change_summary":
            self.summary = message.get("@message", "")
            return None
        if kind == "diagnostic":
            self.diagnostics.append(Diagnostic.from_message(message))
            return "diagnostic"
        return None

    def feed(self, line: str) -> tuple[dict | None, str | None]:
        """Take one output line: the message it holds (if any) and what it was."""
        message = parse_line(line)
        if message is None:
            if line.strip():
                self.other.append(line.rstrip())
            return None, None
        return message, self.handle(message)

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def counts(self) -> str:
        if self.action == "plan":
            return f"{self.refreshed} read, {len(self.planned)} to change"
        return f"{self.finished}/{self.total}" if self.total else f"{self.finished}"

    def current(self) -> str:
        """The resource in flight that started last, and how many more are in flight."""
        if not self.running:
            return ""
        last = next(reversed(self.running.values()))
        more = len(self.running) - 1
        return last + (f" (+{more} more)" if more else "")

    def errors(self) -> list[Diagnostic]:
        """The distinct error diagnostics, in the order Terraform reported them."""
        seen: set[tuple[str, str]] = set()
        found: list[Diagnostic] = []
        for diag in self.diagnostics:
            key = (diag.summary, diag.address)
            if diag.severity == "error" and key not in seen:
                seen.add(key)
                found.append(diag)
        return found

    def error_text(self) -> str:
        """Terraform's errors in one message: each distinct error on a line, except that
        many failed resources (a lost connection fails them all) are one line naming them
        and the first error; without diagnostics, the output lines that were not messages."""
        errors = self.errors()
        if not errors:
            return "\n".join(self.other[-25:])
        resources = [d for d in errors if d.address]
        general = [d for d in errors if not d.address]
        lines: list[str] = []
        if len(resources) > _GROUP_RESOURCES:
            names = ", ".join(d.address for d in resources[:_GROUP_RESOURCES])
            more = len(resources) - _GROUP_RESOURCES
            lines.append(
                f"Error: {len(resources)} resources failed ({names}, and {more} more); "
                f"the first: {resources[0].text()}"
            )
        else:
            lines += [f"Error: {d.text()}" for d in resources]
        lines += [f"Error: {d.text()}" for d in general[:_MAX_ERRORS]]
        if len(general) > _MAX_ERRORS:
            lines.append(f"... and {len(general) - _MAX_ERRORS} more errors")
        return "\n".join(lines)


class NullView:
    """Shows nothing (``quiet``)."""

    def begin(self, run: StackRun) -> None:
        pass

    def update(self, run: StackRun, message: dict, what: str | None) -> None:
        pass

    def end(self, run: StackRun, ok: bool) -> None:
        pass


class PlainView(NullView):
    """One line per resource Terraform finished (applied, or planned in a plan)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def update(self, run: StackRun, message: dict, what: str | None) -> None:
        text = message.get("@message", "")
        if what in ("done", "failed"):
            count = f"{run.finished}/{run.total}" if run.total else str(run.finished)
            self.say(f"  {run.stack} [{count}] {text}")
        elif what == "planned" and run.action == "plan":
            self.say(f"  {run.stack} {text}")

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)


class LiveView(PlainView):
    """A live line per stack run on a terminal: spinner, stack and action, a bar of the
    resources done out of the total, the elapsed time and the resource in flight. Failed
    resources are printed above it as they happen."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.progress: Progress | None = None
        self.task = None

    def begin(self, run: StackRun) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}", markup=False),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            f"{run.stack} {run.action}", total=None, counts="", current=""
        )

    def update(self, run: StackRun, message: dict, what: str | None) -> None:
        if self.progress is None:
            return
        if what == "failed":
            self.say(f"  {run.stack} {message.get('@message', '')}")
        self.refresh(run)

    def refresh(self, run: StackRun) -> None:
        assert self.progress is not None
        total = run.total if run.action == "apply" and run.total else None
        self.progress.update(
            self.task,
            total=total,
            completed=run.finished if total else 0,
            counts=run.counts(),
            current=run.current(),
        )

    def end(self, run: StackRun, ok: bool) -> None:
        if self.progress is None:
            return
        run.running.clear()
        self.refresh(run)
        if ok and run.action == "apply" and run.total:
            self.progress.update(self.task, completed=run.total)
        self.progress.stop()
        self.progress = None


def make_view(console: Console, *, quiet: bool = False) -> NullView:
    """The view for ``console``: live on a terminal, plain lines elsewhere, none if quiet."""
    if quiet:
        return NullView()
    return LiveView(console) if console.is_terminal else PlainView(console)
