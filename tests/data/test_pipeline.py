"""The whole build: accounting, determinism, the snapshot contract, the CLI, publishing."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import QA_ROWS
from typer.testing import CliRunner

from tuneops.core.errors import UserError
from workloads.data.config import load_data_config
from workloads.data.pipeline import STAGES, build_dataset
from workloads.data.snapshot import load_snapshot

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def built(small_config, tmp_path):
    config = load_data_config(small_config())
    return build_dataset(config, out=tmp_path / "datasets")


def test_manifest_accounts_for_every_record(built):
    manifest = built.manifest
    acc = manifest["accounting"]
    assert acc["in"] == len(QA_ROWS)
    assert acc["in"] == acc["written"] + acc["rejected"] and acc["balanced"]
    assert list(manifest["stages"]) == list(STAGES)
    for name, stage in manifest["stages"].items():
        assert stage["in"] == stage["out"] + stage["rejected"], name
        assert sum(stage["reasons"].values()) == stage["rejected"], name
    for before, after in itertools.pairwise(STAGES):
        assert manifest["stages"][before]["out"] == manifest["stages"][after]["in"]
    assert manifest["rejects"]["by_reason"] == {
        "dedup/near_duplicate": 1,  # q4 rewords q3
        "decontaminate/benchmark_overlap": 1,  # q5 copies benchmark item b-1
    }
    assert sum(manifest["splits"].values()) == acc["written"]
    rejects = built.snapshot.rejects()
    assert len(rejects) == acc["rejected"]
    assert {r["id"] for r in rejects} == {"qa:q4", "qa:q5"}
    assert all(r["stage"] and r["reason"] and r["record"] for r in rejects)


def test_snapshot_files_follow_the_contract(built):
    snap = built.snapshot
    assert snap.path.name == snap.id and snap.path.parent.name == "tiny"
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "manifest.json",
                 "rejects.jsonl", "DATACARD.md"):  # fmt: skip
        assert (snap.path / name).is_file(), name
    assert (snap.path.parent / "LATEST").read_text().strip() == snap.id
    rows = [r for split in ("train", "validation", "test") for r in snap.split(split)]
    assert len(rows) == built.manifest["accounting"]["written"]
    for row in rows:
        assert set(row) == {"id", "messages", "source", "category", "kind"}
        assert row["kind"] == "chat"
        assert row["messages"][0] == {
            "role": "system",
            "content": "You are a helpful operations assistant.",
        }
    scrubbed = next(r for r in rows if r["id"] == "qa:q6")["messages"][-1]["content"]
    assert "<EMAIL>" in scrubbed and "Bearer <TOKEN>" in scrubbed
    assert "corp.example.com" not in scrubbed
    assert built.manifest["scrub"]["replacements"] == {
        "<EMAIL>": 1,
        "<AWS_ACCESS_KEY>": 1,
        "<TOKEN>": 1,
    }
    card = (snap.path / "DATACARD.md").read_text()
    assert snap.id in card and "{snapshot_id}" not in card


def test_load_snapshot_by_folder_name_and_name_with_id(built, tmp_path):
    root = tmp_path / "datasets"
    snap = built.snapshot
    for ref in (snap.path, "tiny", f"tiny/{snap.id}"):
        loaded = load_snapshot(ref, root=root)
        assert (loaded.id, loaded.name, loaded.path) == (snap.id, "tiny", snap.path)
        assert loaded.manifest["accounting"] == built.manifest["accounting"]
    with pytest.raises(UserError, match="snapshot tiny/nope not found"):
        load_snapshot("tiny/nope", root=root)
    with pytest.raises(UserError, match="no snapshot of dataset 'other'"):
        load_snapshot("other", root=root)


def test_same_input_gives_the_same_snapshot_id_and_files(small_config, tmp_path):
    config = load_data_config(small_config())
    first = build_dataset(config, out=tmp_path / "a")
    second = build_dataset(config, out=tmp_path / "b")
    assert first.snapshot.id == second.snapshot.id
    for name in ("train", "validation", "test"):
        a = (first.snapshot.path / f"{name}.jsonl").read_bytes()
        assert a == (second.snapshot.path / f"{name}.jsonl").read_bytes()
    changed = load_data_config(small_config({"formatting": {"system_prompt": "Other."}}))
    assert build_dataset(changed, out=tmp_path / "c").snapshot.id != first.snapshot.id


def test_quarantine_build_keeps_going_and_accounts_for_bad_lines(small_config, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in QA_ROWS[:2]) + '{"id": "q9", "question"\n')
    sources = [{"type": "records", "name": "qa", "path": str(bad)}]
    config = load_data_config(small_config(sources=sources))
    with pytest.raises(UserError, match=rf"{bad}:3: not valid JSON"):
        build_dataset(config, out=tmp_path / "out")
    result = build_dataset(config, out=tmp_path / "out", on_error="quarantine")
    acc = result.manifest["accounting"]
    assert (acc["in"], acc["written"], acc["rejected"]) == (3, 2, 1)
    (reject,) = result.snapshot.rejects()
    assert (reject["stage"], reject["reason"]) == ("ingest", "malformed_json")
    assert reject["where"] == f"{bad}:3"


def test_rejects_file_is_scrubbed_too(small_config, tmp_path):
    leaky = [
        {"id": "a", "question": "Key?", "answer": "AKIAIOSFODNN7EXAMPLE is the key we use."},
        {"id": "b", "question": "Key?", "answer": "AKIAIOSFODNN7EXAMPLE is the key we use!"},
    ]
    path = tmp_path / "leaky.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in leaky))
    config = load_data_config(
        small_config(sources=[{"type": "records", "name": "qa", "path": str(path)}])
    )
    snap = build_dataset(config, out=tmp_path / "out").snapshot
    text = (snap.path / "rejects.jsonl").read_text()
    assert "exact_duplicate" in text
    assert "AKIAIOSFODNN7EXAMPLE" not in text and "<AWS_ACCESS_KEY>" in text


def test_github_export_through_the_whole_pipeline(small_config, tmp_path):
    fixtures = Path(__file__).parent / "fixtures" / "github"
    sources = [
        {
            "type": "github",
            "name": "gh",
            "issues": str(fixtures / "issues.json"),
            "comments": str(fixtures / "comments.json"),
        }
    ]
    result = build_dataset(load_data_config(small_config(sources=sources)), out=tmp_path / "o")
    rows = {r["id"]: r for s in result.snapshot.splits.values() for r in s}
    assert set(rows) == {"gh:acme/platform-charts#101", "gh:acme/platform-charts#102"}
    question = rows["gh:acme/platform-charts#101"]["messages"][1]["content"]
    assert "<!--" not in question  # the issue template comment is gone
    assert "dana.ops@example.org" not in question and "<EMAIL>" in question
    assert "```\n0/3 nodes are available" in question  # code kept, line endings normalised
    assert result.manifest["rejects"]["by_reason"] == {
        "ingest/no_answer": 1,
        "ingest/not_solved": 2,
        "ingest/pull_request": 1,
    }


# --------------------------------------------------------------------------- CLI


def test_cli_build_and_show(small_config, tmp_path):
    from tuneops.cli import app

    runner = CliRunner()
    out = tmp_path / "cli-out"
    result = runner.invoke(
        app,
        [
            "data",
            "build",
            "--config",
            str(small_config()),
            "--root",
            str(out),
            "--set",
            "split.salt=cli",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = result.stdout.strip().splitlines()[-1]
    snapshot_id = (out / "tiny" / "LATEST").read_text().strip()
    assert summary.startswith(f"snapshot tiny/{snapshot_id}: 4 records")
    assert "2 rejected" in summary
    shown = runner.invoke(app, ["data", "show", "tiny", "--root", str(out)])
    assert shown.exit_code == 0, shown.output
    assert f"snapshot  tiny/{snapshot_id}" in shown.stdout
    assert "dedup" in shown.stdout and "near_duplicate 1" in shown.stdout


def test_cli_bad_input_is_one_error_line_with_file_and_line(small_config, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(QA_ROWS[0]) + "\n{oops\n")
    config = small_config(sources=[{"type": "records", "name": "qa", "path": str(bad)}])
    env = {**os.environ, "TUNEOPS_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuneops.cli",
            "data",
            "build",
            "--config",
            str(config),
            "--root",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {bad}:2: not valid JSON (Expecting property name enclosed in double quotes "
        "at column 2); fix or delete that line, or run with --on-error=quarantine to send "
        "such records to rejects.jsonl"
    ]


# --------------------------------------------------------------------------- publishing


def test_upload_to_s3(built, monkeypatch):
    import boto3
    from moto import mock_aws

    from workloads.data.publish import upload_snapshot

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="datasets")
        uri = upload_snapshot(built.snapshot, "s3://datasets/snapshots")
        snap = built.snapshot
        assert uri == f"s3://datasets/snapshots/tiny/{snap.id}"
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="datasets")["Contents"]}
        assert f"snapshots/tiny/{snap.id}/manifest.json" in keys
        body = s3.get_object(Bucket="datasets", Key=f"snapshots/tiny/{snap.id}/train.jsonl")
        assert body["Body"].read() == (snap.path / "train.jsonl").read_bytes()
        with pytest.raises(UserError, match="upload to s3://missing"):
            upload_snapshot(snap, "s3://missing/x")


def test_log_snapshot_to_mlflow_as_dataset_inputs(built, mlflow_uri):
    import mlflow

    from workloads.data.publish import log_snapshot_to_mlflow

    run_id = log_snapshot_to_mlflow(built.snapshot)
    run = mlflow.MlflowClient(mlflow_uri).get_run(run_id)
    assert run.data.tags["tuneops.dataset_snapshot"] == built.snapshot.id
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"tiny-train", "tiny-validation", "tiny-test"}
    train = inputs["tiny-train"]
    assert train.dataset.digest == built.snapshot.id
    assert train.tags[0].value == "train"
    assert json.loads(train.dataset.profile)["num_rows"] == built.manifest["splits"]["train"]


# --------------------------------------------------------------------------- default dataset


@pytest.mark.e2e
def test_default_config_builds_the_cloudops_dataset(tmp_path, embedded_tokenizer_dir):
    """The shipped config on the shipped corpus and benchmark: the demo's first step."""
    from workloads.data.benchmark import load_benchmark

    config = load_data_config(overrides=[f"validation.tokenizer={embedded_tokenizer_dir}"])
    result = build_dataset(config, out=tmp_path / "datasets")
    manifest = result.manifest
    sources = manifest["sources"]
    k8s = next(src for src in config.sources if src.name == "k8s-api")
    assert sources["k8s-api"]["records"] == k8s.max_pairs  # the cap binds: the API has more
    assert sources["troubleshooting"]["records"] >= 150
    assert manifest["accounting"]["balanced"]
    assert manifest["tokens"]["tokens_max"] <= 512
    assert set(manifest["categories"]) <= {"kubernetes", "terraform", "helm", "gitops", "mlops"}
    decon = manifest["stages"]["decontaminate"]["stats"]
    assert decon["benchmark_items"] == len(load_benchmark()) >= 120
    assert decon["max_kept_overlap"] < config.decontaminate.threshold
    # No benchmark question appears verbatim in any written record.
    written = " ".join(
        m["content"].lower()
        for split in result.snapshot.splits.values()
        for r in split
        for m in r["messages"]
    )
    assert not [b["id"] for b in load_benchmark() if b["question"].lower() in written]
    again = load_snapshot("cloudops", root=tmp_path / "datasets")
    assert again.id == result.snapshot.id and len(again.split("train")) > 200
