"""The engine as a batch job runs it (evaluation): in the caller's thread, finished rows left in
the batch until enough of them have ended, and the same tokens as transformers' generate()."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.serve.test_engine import assert_as_generate, collect, reference_ids, run_then_stop
from workloads.models.load import load_model
from workloads.serve.engine import Engine
from workloads.serve.sequence import SamplingParams

TEXTS = [
    "What is a pod?",
    "Explain Terraform state locking with DynamoDB and S3 in detail please.",
    "hi",
    "How does Argo CD decide that an application is out of sync?",
    "kubectl rollout undo",
    "Which node pool runs GPU jobs?",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir), dtype="float32", device="cpu")


def count_compactions(engine: Engine) -> list[int]:
    """Wrap the engine's row drop; the list holds how many rows each call kept."""
    kept: list[int] = []
    select = engine._select

    def spy(keep):
        kept.append(len(keep))
        select(keep)

    engine._select = spy
    return kept


def test_finished_rows_wait_for_compaction_and_change_no_token(tiny):
    tok = tiny.tokenizer
    prompts = [tok(t)["input_ids"] for t in TEXTS]
    lengths = [3, 5, 8, 11, 14, 17]  # one row ends every few steps
    engine = Engine(tiny.model, tok, device=tiny.device, max_batch=8, wait_ms=50, compact_at=0.5)
    kept = count_compactions(engine)
    engine.start()

    async def run():
        seqs = [
            engine.submit(ids, SamplingParams(max_tokens=n))
            for ids, n in zip(prompts, lengths, strict=True)
        ]
        return await asyncio.gather(*(collect(s) for s in seqs)), seqs

    results, seqs = run_then_stop(engine, run)
    assert_as_generate(tiny, prompts, lengths, seqs, results)
    assert {seq.finish_reason for seq in seqs} == {"length"}
    # Six rows ended at six different steps; with half the batch allowed to be finished rows,
    # the cache was cut down fewer times than that (at once: one cut per ending row).
    assert 0 < len(kept) < len(TEXTS)
    assert engine.running == 0


def test_run_batch_decodes_in_the_callers_thread(tiny):
    tok = tiny.tokenizer
    prompts = [tok(t)["input_ids"] for t in TEXTS]
    engine = Engine(
        tiny.model,
        tok,
        device=tiny.device,
        max_batch=8,
        max_prefill_batch=8,
        wait_ms=0,
        compact_at=0.25,
    )
    threads: set[int] = set()
    hook = tiny.model.register_forward_pre_hook(lambda *_: threads.add(threading.get_ident()))
    ended: list[int] = []
    try:
        seqs = engine.run_batch(prompts, SamplingParams(max_tokens=9), on_finished=ended.append)
    finally:
        hook.remove()
    assert threads == {threading.get_ident()}
    assert sum(ended) == len(prompts)
    for ids, seq in zip(prompts, seqs, strict=True):
        assert seq.generated == reference_ids(tiny, ids, 9)
        assert seq.finish_reason == "length" and seq.finished_at is not None
    assert engine.running == 0 and engine.queue_depth == 0

    engine.start()
    try:
        with pytest.raises(RuntimeError, match="thread is not started"):
            engine.run_batch(prompts, SamplingParams(max_tokens=2))
    finally:
        engine.stop()


def test_a_failed_batch_raises_with_its_reason(tiny, monkeypatch):
    engine = Engine(tiny.model, tiny.tokenizer, device=tiny.device, wait_ms=0)

    def broken(_seqs):
        raise ValueError("no room for the cache")

    monkeypatch.setattr(engine, "_prefill", broken)
    prompt = tiny.tokenizer("hi")["input_ids"]
    with pytest.raises(RuntimeError, match="ValueError: no room for the cache"):
        engine.run_batch([prompt, prompt], SamplingParams(max_tokens=4))
    assert engine.queue_depth == 0 and engine.running == 0
