"""Question generation from documents through a real OpenAI-compatible server on 127.0.0.1.

The project's own model server with the tiny random model stands in for the endpoint: its
replies are not the asked-for JSON, so this checks the whole path (client, request, reply
handling, accounting) and that an unusable reply is rejected with its text, never guessed at.
"""

from __future__ import annotations

import pytest

from workloads.data.config import DocsSource
from workloads.data.ingest.context import IngestContext
from workloads.data.ingest.docs import ingest_docs
from workloads.data.ingest.qgen import generate_pairs


@pytest.mark.e2e
def test_generation_against_the_project_model_server(tmp_path, tiny_model_dir, monkeypatch):
    from workloads.data.config import QuestionGeneration
    from workloads.serve.process import ServerProcess

    docs = tmp_path / "docs"
    docs.mkdir()
    body = "Cordon the node, then drain it with kubectl drain --ignore-daemonsets. " * 3
    (docs / "runbook.md").write_text(f"# Node maintenance\n{body}\n\n# Upgrades\n{body}\n")
    with ServerProcess(str(tiny_model_dir), startup_timeout=240) as server:
        # The server takes its token; the client reads it from generate.api_key_env.
        monkeypatch.setenv(QuestionGeneration().api_key_env, server.token)
        source = DocsSource(
            type="docs",
            name="docs",
            path=str(docs),
            emit_text=False,
            generate={
                "enabled": True,
                "base_url": server.openai_url,
                "max_tokens": 24,
            },
        )
        result = ingest_docs(source, "fail")
    assert result.stats["sections"] == 2
    # Every section is accounted for: pairs generated, or a reject that keeps the reply.
    rejected = [r for r in result.rejects if r["reason"] == "generation_unparseable"]
    generated_from = {r["id"].rsplit("/", 1)[0] for r in result.records}
    assert len(rejected) + len(generated_from) == 2
    for reject in rejected:
        assert isinstance(reject["reply"], str)


def test_generation_needs_an_endpoint():
    from workloads.data.config import QuestionGeneration

    with pytest.raises(Exception, match="base_url is not set"):
        generate_pairs([], QuestionGeneration(enabled=True), IngestContext("fail"))


def test_unreachable_endpoint_is_a_user_error(tmp_path):
    from tuneops.core.errors import UserError
    from tuneops.core.process import free_port
    from workloads.data.config import QuestionGeneration

    cfg = QuestionGeneration(
        enabled=True, base_url=f"http://127.0.0.1:{free_port()}/v1", timeout_s=2
    )
    section = {"id": "d:a#0", "text": "Some text.", "source": "a.md", "category": None}
    with pytest.raises(UserError, match="cannot reach the question-generation endpoint"):
        generate_pairs([section], cfg, IngestContext("fail"))
