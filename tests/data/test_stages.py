"""Each stage after ingest, on small hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest
from pipeline_helpers import BENCHMARK

from tuneops.core.errors import UserError
from workloads.data.config import (
    DecontaminateConfig,
    DedupConfig,
    FormattingConfig,
    NormaliseConfig,
    ScrubConfig,
    SplitConfig,
    ValidationConfig,
)
from workloads.data.decontaminate import decontaminate
from workloads.data.dedup import SignatureBuilder, dedup, shingle_hashes
from workloads.data.formatting import format_records, with_system_prompt
from workloads.data.normalise import normalise, normalise_text
from workloads.data.records import chat_record, qa_messages, rephrased_records, text_record
from workloads.data.scrub import scrub, scrub_text, scrub_value
from workloads.data.split import assign, split, split_stage
from workloads.data.validate import load_tokenizer, validate


def qa(id: str, question: str, answer: str) -> dict:
    return chat_record(id, qa_messages(question, answer), "test")


# --------------------------------------------------------------------------- normalise


def test_normalise_nfc_whitespace_html_and_mail_quotes_but_not_code():
    text = (
        "Cafe\u0301 <b>bold</b> &amp; <!-- template -->  spaced\u00a0out\r\n\r\n\r\n\r\n"
        "```yaml\nkey:   value\n  <b>kept</b>\n```\n"
        "Thanks!\nOn Tue, 4 Mar 2025, Dana <dana@x.org> wrote:\n> old text\n> more\n"
        "After quote.\nList<String> stays."
    )
    out = normalise_text(text)
    assert out.startswith("Café bold & spaced out\n\n```yaml")
    assert "key:   value\n  <b>kept</b>\n```" in out  # code untouched
    assert "old text" not in out and "wrote:" not in out
    assert "After quote." in out
    assert "List<String> stays." in out


def test_normalise_rejects_records_left_empty():
    records = [qa("a", "<p></p>", "<br/>"), qa("b", "What is a Pod?", "The smallest unit.")]
    result = normalise(records, NormaliseConfig())
    assert [r["id"] for r in result.records] == ["b"]
    assert [r["reason"] for r in result.rejects] == ["empty_after_normalise"]


# --------------------------------------------------------------------------- validate


@pytest.fixture(scope="module")
def tokenizer(embedded_tokenizer_dir):
    return load_tokenizer(str(embedded_tokenizer_dir))


def test_validate_structure_and_token_length(tokenizer):
    good = qa("good", "What is a Pod?", "The smallest deployable unit in Kubernetes.")
    no_answer = chat_record("no-answer", [{"role": "user", "content": "Hello there?"}], "t")
    wrong_order = chat_record(
        "order",
        [{"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Hello."}],
        "t",
    )
    bad_role = chat_record("role", [{"role": "tool", "content": "x"}], "t")
    long = qa("long", "Explain everything.", "word " * 400)
    short_text = text_record("text", "tiny", "t")
    cfg = ValidationConfig(tokenizer="unused", max_length=128)
    result = validate(
        [good, no_answer, wrong_order, bad_role, long, short_text],
        cfg,
        FormattingConfig(system_prompt="Be brief."),
        tokenizer=tokenizer,
    )
    assert [r["id"] for r in result.records] == ["good"]
    reasons = {r["id"]: r["reason"] for r in result.rejects}
    assert reasons == {
        "no-answer": "bad_role_order",
        "order": "bad_role_order",
        "role": "bad_role",
        "long": "too_many_tokens",
        "text": "too_short",
    }
    assert result.stats["tokens_max"] <= 128


def test_token_length_counts_the_system_prompt_and_template(tokenizer):
    record = qa("r", "What is a Pod?", "The smallest deployable unit.")
    plain = validate([record], ValidationConfig(), FormattingConfig(), tokenizer=tokenizer)
    prompt = FormattingConfig(system_prompt="You answer questions. " * 20)
    longer = validate([record], ValidationConfig(), prompt, tokenizer=tokenizer)
    assert longer.stats["tokens_max"] > plain.stats["tokens_max"] + 60
    tight = ValidationConfig(max_length=plain.stats["tokens_max"] + 5)
    assert validate([record], tight, prompt, tokenizer=tokenizer).rejects[0]["reason"] == (
        "too_many_tokens"
    )


def test_language_check_is_optional(tokenizer):
    german = qa("de", "Wie starte ich einen Pod neu?", "Lösche ihn, er wird neu erzeugt.")
    english = qa("en", "How do I restart a pod?", "Delete it and the controller recreates it.")
    on = ValidationConfig(language="en", min_language_ratio=0.1)
    result = validate([german, english], on, FormattingConfig(), tokenizer=tokenizer)
    assert [r["id"] for r in result.records] == ["en"]
    assert result.rejects[0]["reason"] == "wrong_language"
    off = validate([german, english], ValidationConfig(), FormattingConfig(), tokenizer=tokenizer)
    assert len(off.records) == 2
    with pytest.raises(UserError, match="not supported"):
        validate([english], ValidationConfig(language="fr"), FormattingConfig(), tokenizer=None)


# --------------------------------------------------------------------------- scrub


SECRETS = """Mail ops.lead@corp.example.com or git@github.com:acme/infra.git for access.
aws_access_key_id = AKIAIOSFODNN7EXAMPLE
aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
curl -H "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jV"
export GITHUB_TOKEN=ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789
password: hunter2hunter2
secretName: db-credentials
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ
-----END OPENSSH PRIVATE KEY-----
"""


def test_scrub_replaces_secrets_with_typed_placeholders_and_counts_them():
    out, counts = scrub_text(SECRETS)
    for secret in (
        "ops.lead@corp.example.com",
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "eyJhbGciOiJIUzI1NiJ9",
        "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        "hunter2hunter2",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
    ):
        assert secret not in out, secret
    assert "<EMAIL>" in out and "<AWS_ACCESS_KEY>" in out and "<AWS_SECRET_KEY>" in out
    assert "Bearer <TOKEN>" in out and "<PRIVATE_KEY>" in out
    assert "git@github.com:acme/infra.git" in out  # a git remote is not an e-mail address
    assert "secretName: db-credentials" in out  # Kubernetes field names stay
    assert counts == {
        "email": 1,
        "aws_access_key": 1,
        "aws_secret_key": 1,
        "token": 3,
        "private_key": 1,
    }


def test_scrub_stage_counts_per_placeholder_and_can_be_limited():
    records = [qa("a", "Who owns it?", "Ask admin@example.com with AKIAIOSFODNN7EXAMPLE.")]
    result = scrub(records, ScrubConfig())
    assert result.records[0]["messages"][1]["content"] == "Ask <EMAIL> with <AWS_ACCESS_KEY>."
    assert result.stats["replacements"] == {"<EMAIL>": 1, "<AWS_ACCESS_KEY>": 1}
    assert result.stats["records_changed"] == 1
    only_email = scrub(records, ScrubConfig(kinds=["email"]))
    assert "AKIAIOSFODNN7EXAMPLE" in only_email.records[0]["messages"][1]["content"]
    assert scrub_value({"raw": ["key AKIAIOSFODNN7EXAMPLE"]}) == {"raw": ["key <AWS_ACCESS_KEY>"]}


# --------------------------------------------------------------------------- dedup


def test_signatures_match_datasketch_minhash():
    from datasketch import MinHash

    texts = ["the quick brown fox jumps over the lazy dog", "one", ""]
    shingles = [shingle_hashes(t) for t in texts]
    builder = SignatureBuilder(num_perm=64, seed=7)
    signatures = builder.signatures(shingles)
    for values, row in zip(shingles, signatures, strict=True):
        reference = MinHash(num_perm=64, seed=7, hashfunc=lambda x: x)
        reference.update_batch([int(v) for v in values] or [0])
        assert np.array_equal(reference.hashvalues, row)


def test_dedup_removes_exact_and_paraphrased_copies_and_keeps_distinct_records():
    base = (
        "The pod is stuck in Pending because no node has enough free memory for its request; "
        "lower the memory request or add a node pool with larger machines, then watch the "
        "scheduler events with kubectl describe pod to confirm it was placed."
    )
    paraphrase = (
        "The pod is stuck in Pending since no node has enough free memory for its request; "
        "reduce the memory request or add a node pool with bigger machines, then watch the "
        "scheduler events using kubectl describe pod to confirm it was placed."
    )
    distinct = (
        "Terraform keeps the state lock in the backend; when a CI job dies mid-apply, run "
        "terraform force-unlock with the lock id once you are sure no apply is running."
    )
    related = (
        "The pod is stuck in ContainerCreating because the volume cannot be attached; check "
        "the CSI driver logs and the PersistentVolumeClaim events for the attach error."
    )
    records = [
        qa("first", "Why Pending?", base),
        qa("distinct", "Lock?", distinct),
        qa("copy", "why pending", base.upper()),  # same text up to case and punctuation
        qa("para", "Why Pending?", paraphrase),
        qa("related", "Why ContainerCreating?", related),
    ]
    result = dedup(records, DedupConfig(threshold=0.7))
    assert [r["id"] for r in result.records] == ["first", "distinct", "related"]
    rejects = {r["id"]: r for r in result.rejects}
    assert rejects["copy"]["reason"] == "exact_duplicate"
    assert rejects["para"]["reason"] == "near_duplicate"
    assert rejects["para"]["duplicate_of"] == "first"
    assert rejects["para"]["similarity"] >= 0.7


def test_rephrasings_are_not_duplicates_of_their_record_but_go_with_it():
    answer = "kubectl rollout undo deployment/web returns to the previous ReplicaSet revision."
    first = qa("first", "Roll back a deployment?", answer)
    copy = qa("copy", "How to roll back a deployment?", answer + "!")
    records = [first, *rephrased_records(first, ["Undo a rollout?"]), copy]
    records += rephrased_records(copy, ["Revert the web app?", "Go back a revision?"])
    result = dedup(records, DedupConfig(threshold=0.7))
    assert [r["id"] for r in result.records] == ["first", "first~r1"]
    rejects = {r["id"]: r for r in result.rejects}
    assert set(rejects) == {"copy", "copy~r1", "copy~r2"}
    assert {r["duplicate_of"] for r in rejects.values()} == {"first"}


def test_dedup_keeps_the_first_by_stable_order():
    a = qa("a", "Restart a deployment?", "kubectl rollout restart deployment/web restarts pods.")
    b = qa("b", "Restart a deployment?", "kubectl rollout restart deployment/web restarts pods!")
    assert [r["id"] for r in dedup([a, b], DedupConfig()).records] == ["a"]
    assert [r["id"] for r in dedup([b, a], DedupConfig()).records] == ["b"]


# --------------------------------------------------------------------------- decontaminate


def test_decontaminate_drops_benchmark_copies_and_keeps_unrelated_records():
    copied = qa("copied", BENCHMARK[0]["question"], "Use helm rollback.")
    near_copy = qa(
        "near",
        "How do I find drift?",
        "terraform plan -detailed-exitcode exits with code 2 when the plan has changes, 0 when "
        "there are none, and 1 on error, which lets CI detect drift.",
    )
    same_topic = qa(
        "topic",
        "How do I undo a bad Helm upgrade?",
        "List the revisions, then roll the release back to the last good one.",
    )
    result = decontaminate(
        [copied, near_copy, same_topic], DecontaminateConfig(ngram=6), benchmark=BENCHMARK
    )
    assert [r["id"] for r in result.records] == ["topic"]
    by_id = {r["id"]: r for r in result.rejects}
    assert by_id["copied"]["benchmark_id"] == "b-1"
    assert by_id["near"]["benchmark_id"] == "b-2"
    assert all(r["reason"] == "benchmark_overlap" for r in result.rejects)


# --------------------------------------------------------------------------- format and split


def test_format_adds_or_replaces_the_system_prompt():
    plain = qa_messages("Q?", "A.")
    with_own = qa_messages("Q?", "A.", system="Own prompt.")
    add = FormattingConfig(system_prompt="Cfg prompt.")
    assert with_system_prompt(plain, add)[0] == {"role": "system", "content": "Cfg prompt."}
    assert with_system_prompt(with_own, add)[0]["content"] == "Own prompt."
    replace = FormattingConfig(system_prompt="Cfg prompt.", mode="replace")
    assert with_system_prompt(with_own, replace)[0]["content"] == "Cfg prompt."
    assert len(with_system_prompt(with_own, replace)) == 3
    result = format_records([chat_record("x", plain, "t"), text_record("t", "text", "t")], add)
    assert result.records[0]["messages"][0]["role"] == "system"
    assert result.records[1]["text"] == "text"


def test_split_is_deterministic_by_id_and_independent_of_order_and_neighbours():
    cfg = SplitConfig(validation=0.1, test=0.1, salt="s")
    records = [qa(f"id-{i}", "Q?", "A.") for i in range(500)]
    first = split(records, cfg)
    again = split(list(reversed(records)), cfg)
    assert first == again
    sizes = {name: len(rows) for name, rows in first.items()}
    assert 30 <= sizes["validation"] <= 70 and 30 <= sizes["test"] <= 70
    subset = split(records[:50], cfg)
    assert all(assign(r["id"], cfg) == "train" for r in subset["train"])
    assert {r["id"] for r in subset["test"]} <= {r["id"] for r in first["test"]}
    other_salt = split(records, SplitConfig(validation=0.1, test=0.1, salt="other"))
    assert other_salt["test"] != first["test"]


def test_a_record_and_its_rephrasings_share_one_split():
    cfg = SplitConfig(validation=0.2, test=0.2, salt="s")
    records = []
    for i in range(60):
        record = qa(f"id-{i}", "Q?", "A.")
        records += [record, *rephrased_records(record, ["Q again?", "Q once more?"])]
    parts = split(records, cfg)
    where = {r["id"]: name for name, rows in parts.items() for r in rows}
    for i in range(60):
        assert where[f"id-{i}~r1"] == where[f"id-{i}~r2"] == where[f"id-{i}"]
    assert {name for name, rows in parts.items() if rows} == {"train", "validation", "test"}
    result = split_stage(records, cfg)
    kept = {r["id"] for r in result.records}
    for i in range(60):
        wordings = {f"id-{i}", f"id-{i}~r1", f"id-{i}~r2"} & kept
        assert wordings == ({f"id-{i}"} if where[f"id-{i}"] != "train" else wordings)
        assert len(wordings) == (3 if where[f"id-{i}"] == "train" else 1)
    assert {r["reason"] for r in result.rejects} == {"rephrasing_held_out"}
    assert len(result.rejects) == 2 * sum(where[f"id-{i}"] != "train" for i in range(60))
