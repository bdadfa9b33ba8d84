"""Ingest: every source type, field mapping, the GitHub export, and bad input."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipeline_helpers import FIXTURES, QA_ROWS, write_jsonl

from tuneops.core.errors import UserError
from workloads.data.config import DocsSource, GitHubSource, K8sApiSource, RecordsSource
from workloads.data.ingest.docs import ingest_docs, split_sections
from workloads.data.ingest.github import ingest_github
from workloads.data.ingest.k8s_api import ingest_k8s_api
from workloads.data.ingest.rows import ingest_records
from workloads.data.records import group_of

GITHUB = FIXTURES / "github"


def records_source(path, **kw) -> RecordsSource:
    return RecordsSource(type="records", name="src", path=str(path), **kw)


def test_jsonl_question_answer_rows_become_chat_records(qa_file):
    result = ingest_records(records_source(qa_file), "fail")
    assert [r["id"] for r in result.records] == [f"src:{row['id']}" for row in QA_ROWS]
    first = result.records[0]
    assert first["kind"] == "chat"
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert first["messages"][0]["content"] == QA_ROWS[0]["question"]
    assert first["category"] == "kubernetes"
    assert result.rejects == []


def test_rephrasings_become_records_of_the_same_group_with_the_same_answer(tmp_path):
    rows = [
        {
            "id": "a",
            "question": "How do I roll back?",
            "answer": "Run rollout undo.",
            "more": ["What undoes a bad rollout?", "Revert a Deployment how?"],
        },
        {"id": "b", "question": "What is a taint?", "answer": "A node mark.", "more": []},
    ]
    fields = {"id": "id", "question": "question", "answer": "answer", "rephrasings": "more"}
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    records = ingest_records(records_source(path, fields=fields), "fail").records
    assert [r["id"] for r in records] == ["src:a", "src:a~r1", "src:a~r2", "src:b"]
    assert [group_of(r) for r in records] == ["src:a", "src:a", "src:a", "src:b"]
    assert records[2]["messages"] == [
        {"role": "user", "content": "Revert a Deployment how?"},
        {"role": "assistant", "content": "Run rollout undo."},
    ]
    assert "rephrasings" not in records[0] and "group" not in records[0]

    # max_rephrasings keeps the first N of each row's list.
    for bound, ids in ((1, ["src:a", "src:a~r1", "src:b"]), (0, ["src:a", "src:b"])):
        source = records_source(path, fields=fields, max_rephrasings=bound)
        assert [r["id"] for r in ingest_records(source, "fail").records] == ids


def test_malformed_rephrasings_name_the_line(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"q": "x?", "a": "y.", "r": "not a list"}])
    fields = {"question": "q", "answer": "a", "rephrasings": "r"}
    with pytest.raises(UserError, match=r"rows.jsonl:1: .*'r' must be a list of non-empty"):
        ingest_records(records_source(path, fields=fields), "fail")


def test_csv_json_and_parquet_with_a_field_mapping(tmp_path):
    rows = [
        {"ask": "What is a Service?", "reply": "A stable address for a set of pods.", "n": "1"},
        {"ask": "What is an Ingress?", "reply": "HTTP routing into the cluster.", "n": "2"},
    ]
    fields = {"id": "n", "question": "ask", "answer": "reply"}
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text(
        "n,ask,reply\n" + "".join(f'{r["n"]},"{r["ask"]}","{r["reply"]}"\n' for r in rows)
    )
    json_path = tmp_path / "rows.json"
    json_path.write_text(json.dumps(rows))
    parquet_path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet_path)
    for path in (csv_path, json_path, parquet_path):
        result = ingest_records(records_source(path, fields=fields, category="kubernetes"), "fail")
        assert [r["id"] for r in result.records] == ["src:1", "src:2"], path
        assert result.records[1]["messages"][1]["content"] == "HTTP routing into the cluster."
        assert result.records[0]["category"] == "kubernetes"


def test_messages_rows_keep_the_conversation(tmp_path):
    conversation = [
        {"role": "user", "content": "Scale my deployment."},
        {"role": "assistant", "content": "Run kubectl scale deployment/web --replicas=3."},
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": conversation, "sys": "Be brief."}])
    source = records_source(path, fields={"messages": "messages", "system": "sys"})
    (record,) = ingest_records(source, "fail").records
    assert record["messages"] == [{"role": "system", "content": "Be brief."}, *conversation]
    assert record["id"].startswith("src:")  # no id field: a content hash


def test_malformed_jsonl_line_names_file_line_and_fix(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(
        json.dumps(QA_ROWS[0]) + "\n" + json.dumps(QA_ROWS[1]) + '\n{"id": "x", "question": \n'
    )
    with pytest.raises(UserError) as info:
        ingest_records(records_source(path), "fail")
    message = str(info.value)
    assert f"{path}:3:" in message
    assert "not valid JSON" in message
    assert "--on-error=quarantine" in message
    assert "\n" not in message


def test_quarantine_sends_bad_lines_to_rejects_and_keeps_the_rest(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(
        json.dumps(QA_ROWS[0])
        + "\nnot json at all\n"
        + json.dumps({"id": "y", "prompt": "wrong field"})
        + "\n"
        + json.dumps(QA_ROWS[1])
        + "\n"
    )
    result = ingest_records(records_source(path), "quarantine")
    assert [r["id"] for r in result.records] == ["src:q1", "src:q2"]
    reasons = {r["reason"]: r for r in result.rejects}
    assert set(reasons) == {"malformed_json", "unknown_field"}
    assert reasons["malformed_json"]["where"] == f"{path}:2"
    assert reasons["malformed_json"]["raw"] == "not json at all"
    assert "fields.question" in reasons["unknown_field"]["detail"]
    assert result.stats["items"] == len(result.records) + len(result.rejects)


def test_unknown_field_mapping_in_a_jsonl_record_fails_with_the_line(qa_file):
    source = records_source(qa_file, fields={"question": "prompt", "answer": "answer"})
    with pytest.raises(
        UserError, match=r"qa\.jsonl:1: no field 'prompt' \(mapped by fields.question"
    ):
        ingest_records(source, "fail")


def test_csv_mapping_to_a_missing_column_is_a_config_error_even_in_quarantine(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("q,a\nhello there,general greeting\n")
    source = records_source(path, fields={"question": "question", "answer": "a"})
    with pytest.raises(UserError, match=r"rows\.csv:1: fields\.question maps to column 'question'"):
        ingest_records(source, "quarantine")


def test_unreadable_and_missing_files_are_one_line_errors(tmp_path):
    binary = tmp_path / "latin1.jsonl"
    binary.write_bytes('{"question": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        ingest_records(records_source(binary), "quarantine")
    with pytest.raises(UserError, match="file not found"):
        ingest_records(records_source(tmp_path / "missing.jsonl"), "fail")
    with pytest.raises(UserError, match="set `format"):
        ingest_records(records_source(tmp_path / "rows.xlsx"), "fail")


# --------------------------------------------------------------------------- GitHub export


def github_source(**kw) -> GitHubSource:
    return GitHubSource(
        type="github",
        name="gh",
        issues=str(GITHUB / "issues.json"),
        comments=str(GITHUB / "comments.json"),
        label_categories={"terraform": "terraform", "gitops": "gitops"},
        category="kubernetes",
        **kw,
    )


def test_github_export_solved_issues_become_pairs_with_the_maintainer_answer():
    result = ingest_github(github_source(), "fail")
    by_id = {r["id"]: r for r in result.records}
    assert set(by_id) == {"gh:acme/platform-charts#101", "gh:acme/platform-charts#102"}
    gpu = by_id["gh:acme/platform-charts#101"]
    question, answer = (m["content"] for m in gpu["messages"])
    assert question.startswith("Pods stay Pending after enabling the GPU node pool\n\n")
    assert "untolerated taint" in question
    assert "operator: Exists" in answer  # the MEMBER's comment, not the bot's after it
    assert gpu["source"] == "https://github.com/acme/platform-charts/issues/101"
    assert gpu["category"] == "kubernetes"
    lock = by_id["gh:acme/platform-charts#102"]
    assert "force-unlock LOCK_ID" in lock["messages"][1]["content"]  # the OWNER's answer
    assert lock["category"] == "terraform"  # from the label mapping
    reasons = {r["id"]: r["reason"] for r in result.rejects}
    assert reasons == {
        "gh:acme/platform-charts#103": "not_solved",  # open
        "gh:acme/platform-charts#104": "not_solved",  # closed as not planned
        "gh:acme/platform-charts#105": "pull_request",
        "gh:acme/platform-charts#106": "no_answer",  # no maintainer comment
    }
    assert result.stats["items"] == 6  # two `--paginate` pages read back to back


def test_github_closing_mode_takes_the_comment_posted_with_the_close():
    result = ingest_github(github_source(answer="closing"), "fail")
    by_id = {r["id"]: r["messages"][1]["content"] for r in result.records}
    assert "operator: Exists" in by_id["gh:acme/platform-charts#101"]
    assert by_id["gh:acme/platform-charts#102"].startswith("Solved: a cancelled pipeline")
    assert "removed `replicas`" in by_id["gh:acme/platform-charts#106"]


def test_github_comments_can_be_a_folder_of_per_issue_files(tmp_path):
    comments = json.loads((GITHUB / "comments.json").read_text())
    folder = tmp_path / "comments"
    folder.mkdir()
    for number in {c["issue_url"].rsplit("/", 1)[1] for c in comments}:
        mine = [c for c in comments if c["issue_url"].endswith(f"/{number}")]
        (folder / f"{number}.json").write_text(json.dumps(mine))
    source = github_source().model_copy(update={"comments": str(folder)})
    assert len(ingest_github(source, "fail").records) == 2


# --------------------------------------------------------------------------- documents


def test_markdown_split_at_headings_keeps_code_blocks_whole():
    text = (
        "# Runbook\nIntro text.\n\n## Restart\nDo this:\n\n```bash\n# not a heading\n"
        "kubectl rollout restart deploy/web\n```\n\n## Scale\nUse the HPA.\n"
    )
    sections = split_sections(text, max_chars=2000)
    assert [h for h, _ in sections] == ["Runbook", "Runbook > Restart", "Runbook > Scale"]
    assert "# not a heading" in sections[1][1]


def test_docs_folder_becomes_text_records_and_short_sections_are_rejected(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    long_body = "Drain the node with kubectl drain before maintenance. " * 4
    (docs / "ops.md").write_text(f"# Nodes\n{long_body}\n\n## Tiny\nToo short.\n")
    (docs / "notes.txt").write_text(long_body)
    source = DocsSource(type="docs", name="docs", path=str(docs), min_section_chars=40)
    result = ingest_docs(source, "fail")
    assert sorted(r["id"] for r in result.records) == ["docs:notes.txt#0", "docs:ops.md#0"]
    assert all(r["kind"] == "text" for r in result.records)
    assert [r["reason"] for r in result.rejects] == ["short_section"]


def test_question_generation_reply_parsing():
    from workloads.data.ingest.qgen import parse_pairs

    reply = 'Sure:\n[{"question": "What drains a node?", "answer": "kubectl drain."}]'
    assert parse_pairs(reply) == [{"question": "What drains a node?", "answer": "kubectl drain."}]
    assert parse_pairs("I cannot help with that.") is None
    assert parse_pairs('[{"question": "no answer"}]') is None


# --------------------------------------------------------------------------- Kubernetes API


def test_kubernetes_api_reference_pairs_are_bounded_and_deterministic():
    source = K8sApiSource(type="k8s_api", kinds=["Deployment", "v1/ConfigMap"], fields_per_kind=3)
    first = ingest_k8s_api(source, "fail")
    assert first.records == ingest_k8s_api(source, "fail").records
    ids = [r["id"] for r in first.records]
    assert ids[0] == "k8s-api:apps/v1/Deployment"
    assert "k8s-api:apps/v1/Deployment/spec.selector" in ids  # required fields come first
    assert len(ids) == 2 * (1 + 3)
    deployment = first.records[0]["messages"][1]["content"]
    assert "apiVersion: apps/v1" in deployment and "`template`" in deployment
    selector = next(r for r in first.records if r["id"].endswith("spec.selector"))
    assert "It is required." in selector["messages"][1]["content"]
    capped = ingest_k8s_api(source.model_copy(update={"max_pairs": 5}), "fail")
    assert len(capped.records) == 5


def test_kubernetes_api_unknown_kind_is_a_user_error():
    with pytest.raises(UserError, match="unknown Kubernetes kind 'Deploymnet'"):
        ingest_k8s_api(K8sApiSource(type="k8s_api", kinds=["Deploymnet"]), "fail")
