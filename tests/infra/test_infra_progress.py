"""Terraform's progress as `tuneops infra plan/apply` show it.

The recorded streams under fixtures/terraform_ui/ are real `terraform plan -json` and
`terraform apply -json` output of the local network stack against moto's server (Terraform
1.11.4, hashicorp/aws 5.100.0): a plan, its apply, a second plan with nothing to change, an
apply during which moto's server was killed, and a plan refused by a held state lock. The last
test runs the real terraform binary on a small configuration of built-in resources.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from infra.locks import LockInfo, StateLockedError
from infra.progress import LiveView, NullView, PlainView, StackRun, make_view, parse_line

FIXTURES = Path(__file__).parent / "fixtures" / "terraform_ui"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def replay(name: str, action: str, view: NullView) -> StackRun:
    """Feed a recorded stream to ``view`` as `Terraform.stream` does."""
    run = StackRun("local-network", action)
    view.begin(run)
    for line in (FIXTURES / name).read_text().splitlines():
        message, what = run.feed(line)
        if message is not None:
            view.update(run, message, what)
    view.end(run, not run.errors())
    return run


def plain(name: str, action: str) -> tuple[StackRun, list[str]]:
    out = io.StringIO()
    run = replay(name, action, PlainView(Console(file=out, width=300)))
    return run, out.getvalue().splitlines()


def addresses(name: str, kind: str) -> list[str]:
    found = []
    for line in (FIXTURES / name).read_text().splitlines():
        message = json.loads(line)
        if message["type"] == kind:
            body = message.get("hook") or message.get("change")
            found.append(body["resource"]["addr"])
    return found


def test_apply_prints_one_line_per_created_resource_with_the_count():
    run, lines = plain("apply_network.jsonl", "apply")
    created = addresses("apply_network.jsonl", "apply_complete")
    assert len(created) == 25
    assert len(lines) == 25
    for number, (line, address) in enumerate(zip(lines, created, strict=True), start=1):
        assert line.startswith(f"  local-network [{number}/25] {address}: Creation complete after")
    # Terraform's id in brackets survives (rich markup is off)
    assert "[id=vpc-" in next(line for line in lines if "aws_vpc." in line)
    assert (run.total, run.done, run.failed) == (25, 25, 0)
    assert run.summary == "Apply complete! Resources: 25 added, 0 changed, 0 destroyed."
    assert run.error_text() == ""


def test_plan_prints_each_planned_change_and_a_plan_without_changes_prints_none():
    run, lines = plain("plan_network.jsonl", "plan")
    planned = addresses("plan_network.jsonl", "planned_change")
    assert [line.strip() for line in lines] == [
        f"local-network {address}: Plan to create" for address in planned
    ]
    assert run.summary == "Plan: 25 to add, 0 to change, 0 to destroy."
    run, lines = plain("plan_network_unchanged.jsonl", "plan")
    assert lines == []
    assert run.refreshed == 25 and run.planned == []
    assert run.counts() == "25 read, 0 to change"


def test_live_view_draws_one_line_per_stack_with_done_of_total_and_the_resource_in_flight():
    out = io.StringIO()
    console = Console(file=out, width=220, force_terminal=True, color_system=None)
    view = LiveView(console)
    run = StackRun("local-network", "apply")
    view.begin(run)
    lines = (FIXTURES / "apply_network.jsonl").read_text().splitlines()
    vpc_started = next(
        i for i, line in enumerate(lines) if '"apply_start"' in line and "aws_vpc." in line
    )
    for line in lines[: vpc_started + 1]:
        message, what = run.feed(line)
        view.update(run, message, what)
    assert view.progress is not None
    view.progress.refresh()
    during = ANSI.sub("", out.getvalue()).split("\r")[-1]
    assert during.startswith(f"{view.progress.columns[0].spinner.frames[0]} local-network apply")
    assert f"{run.done}/25" in during
    assert "aws_vpc.network_vpc_4E8F0223: Creating..." in during
    for line in lines[vpc_started + 1 :]:
        message, what = run.feed(line)
        view.update(run, message, what)
    view.end(run, True)
    final = ANSI.sub("", out.getvalue()).split("\r")[-1]
    assert "local-network apply" in final and "25/25" in final
    assert "Creating..." not in final  # nothing in flight any more


def test_a_terminal_gets_the_live_view_a_pipe_plain_lines_and_quiet_nothing():
    assert isinstance(make_view(Console(file=io.StringIO(), force_terminal=True)), LiveView)
    piped = make_view(Console(file=io.StringIO(), force_terminal=False))
    assert isinstance(piped, PlainView) and not isinstance(piped, LiveView)
    assert type(make_view(Console(file=io.StringIO()), quiet=True)) is NullView


def test_errors_of_an_apply_that_lost_aws_are_one_message_naming_the_failed_state_save():
    run, lines = plain("apply_network_aws_killed.jsonl", "apply")
    assert (run.done, run.failed) == (3, 10)
    assert sum("Creation complete" in line for line in lines) == 3
    assert sum("Creation errored" in line for line in lines) == 10
    text = run.error_text().splitlines()
    # ten failed resources are one line; each distinct backend error one more
    assert text[0].startswith("Error: 10 resources failed (aws_subnet.")
    assert "connection refused" in text[0]
    assert any(line.startswith("Error: Failed to persist state to backend") for line in text)
    assert any(line.startswith("Error: Error releasing the state lock") for line in text)
    assert len(text) == 5  # repeated "failed checking for existing remote state" shown once


def test_a_plan_refused_by_a_held_lock_gives_one_line_with_owner_and_the_way_out():
    run, _ = plain("plan_network_locked.jsonl", "plan")
    (diag,) = run.errors()
    assert diag.summary == "Error acquiring the state lock"
    lock = LockInfo.from_text(diag.detail)
    assert lock == LockInfo(
        id="a3f79c3f-0a6f-ae7d-cd2c-c10343c71792",
        who="root@vm",
        operation="OperationTypeApply",
        created="2026-11-30 22:13:44.125147246 +0000 UTC",
        path="tuneops-local-tfstate/tuneops/local/network.tfstate",
        version="1.11.4",
    )
    message = str(StateLockedError("local", "local-network", lock))
    assert "\n" not in message
    assert message.startswith(
        "Error acquiring the state lock of local-network: held by root@vm since "
        "2026-11-30 22:13:44 UTC ("
    )
    assert "(terraform apply, lock ID a3f79c3f-0a6f-ae7d-cd2c-c10343c71792)" in message
    assert message.endswith("release it with `tuneops infra unlock --env local`")


def test_lock_info_reads_the_lock_object_terraform_writes():
    body = (
        '{"ID":"a3f79c3f-0a6f-ae7d-cd2c-c10343c71792","Operation":"OperationTypeApply",'
        '"Info":"","Who":"root@vm","Version":"1.11.4","Created":"2026-11-30T22:13:44.125147246Z",'
        '"Path":"tuneops-local-tfstate/tuneops/local/network.tfstate"}'
    )
    lock = LockInfo.from_json(json.loads(body))
    assert lock.since().startswith("2026-11-30 22:13:44 UTC (")
    assert lock.operation_name == "apply"
    assert LockInfo.from_text("Error: something else entirely") is None


def test_lines_that_are_not_messages_are_kept_for_the_error():
    run = StackRun("local-network", "apply")
    assert run.feed("Terraform crashed! This is always indicative of a bug\n") == (None, None)
    assert parse_line("{not json") is None and parse_line('{"no": "type"}') is None
    assert run.error_text() == "Terraform crashed! This is always indicative of a bug"


BUILTIN_CONFIG = {
    "resource": {
        "terraform_data": {
            "first": {"input": "one"},
            "second": {"input": "two", "depends_on": ["terraform_data.first"]},
            "third": {"input": "three"},
        }
    }
}


@pytest.fixture
def builtin_stack(tmp_path, monkeypatch):
    """The Terraform driver of the local environment on a folder of built-in resources."""
    from infra.config import load_environment, load_settings
    from infra.terraform import Terraform

    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path / "cache"))
    workdir = tmp_path / "stack"
    workdir.mkdir()

    def make(config: dict, view: NullView) -> Terraform:
        (workdir / "main.tf.json").write_text(json.dumps(config))
        return Terraform(load_settings(), load_environment("local"), "network", workdir, view)

    return make


def test_a_real_apply_prints_a_line_per_resource(builtin_stack):
    out = io.StringIO()
    tf = builtin_stack(BUILTIN_CONFIG, PlainView(Console(file=out, width=300)))
    tf.init()
    changes = tf.plan()
    assert changes.add == 3
    planned = out.getvalue().splitlines()
    assert len(planned) == 3 and all(line.endswith(": Plan to create") for line in planned)
    out.truncate(0)
    out.seek(0)
    tf.apply_saved()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert {re.sub(r"\[\d/3\] ", "", line).split(":")[0].strip() for line in lines} == {
        "local-network terraform_data.first",
        "local-network terraform_data.second",
        "local-network terraform_data.third",
    }
    assert all("Creation complete after" in line for line in lines)
    assert sorted(tf.state_resources()) == [
        "terraform_data.first",
        "terraform_data.second",
        "terraform_data.third",
    ]


def test_a_real_terraform_error_is_one_message_with_its_diagnostic(builtin_stack):
    from infra.terraform import TerraformError

    config = json.loads(json.dumps(BUILTIN_CONFIG))
    config["resource"]["terraform_data"]["third"]["lifecycle"] = {
        "precondition": [
            {
                "condition": '${terraform_data.first.input == "two"}',
                "error_message": "the first is not two.",
            }
        ]
    }
    tf = builtin_stack(config, NullView())
    tf.init()
    with pytest.raises(TerraformError) as caught:
        tf.plan()
    message = str(caught.value)
    assert message.startswith("terraform plan failed in local-network (exit 1):\n")
    # the error names the block it points at and carries its message
    assert message.endswith(
        "Error: Resource precondition failed [terraform_data.third.lifecycle.precondition[0]]: "
        "the first is not two."
    )
