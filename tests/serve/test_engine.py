"""The continuous-batching engine in-process: batched answers equal one-at-a-time answers."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from workloads.models.load import load_model
from workloads.serve.engine import Engine
from workloads.serve.sequence import SamplingParams, Sequence, emit_text, finish


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir), dtype="float32", device="cpu")


def reference_ids(loaded, prompt_ids, max_new):
    """What transformers' own generate() says, one prompt at a time, greedy."""
    out = loaded.model.generate(
        torch.tensor([prompt_ids]),
        attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        max_new_tokens=max_new,
        do_sample=False,
        pad_token_id=loaded.tokenizer.pad_token_id,
    )
    ids = out[0, len(prompt_ids) :].tolist()
    eos = loaded.tokenizer.eos_token_id
    return ids[: ids.index(eos)] if eos in ids else ids


async def collect(seq):
    text = ""
    async for event in seq.events():
        if event.kind == "delta":
            text += event.text
        else:
            return text, event
    raise AssertionError("no final event")


def run_then_stop(engine, run):
    """``asyncio.run(run())`` against the started ``engine``, which is stopped afterwards."""
    try:
        return asyncio.run(run())
    finally:
        engine.stop()


def assert_as_generate(tiny, prompts, lengths, seqs, results) -> None:
    """Each sequence's tokens are generate()'s, and its streamed text adds up to them."""
    for ids, n, seq, (text, final) in zip(prompts, lengths, seqs, results, strict=True):
        assert seq.generated == reference_ids(tiny, ids, n)
        assert text == tiny.tokenizer.decode(seq.generated, skip_special_tokens=True)
        assert final.finish_reason == ("length" if len(seq.generated) == n else "stop")


def test_staggered_batched_generation_matches_generate(tiny):
    tok = tiny.tokenizer
    texts = [
        "What is a pod?",
        "Explain Terraform state locking with DynamoDB and S3 in detail please.",
        "hi",
        "How does Argo CD decide that an application is out of sync?",
        "kubectl rollout undo",
    ]
    prompts = [tok(t)["input_ids"] for t in texts]
    lengths = [20, 7, 25, 12, 16]
    engine = Engine(tiny.model, tok, device=tiny.device, max_batch=4, wait_ms=0)
    engine.start()

    async def run():
        seqs = []
        for i, (ids, n) in enumerate(zip(prompts, lengths, strict=True)):
            seqs.append(engine.submit(ids, SamplingParams(max_tokens=n)))
            if i % 2 == 0:
                # Let the batch decode a few steps so the next prompt joins a running batch.
                # (Poll the engine's state; taking an event off the queue and putting it back
                # would reorder the stream.)
                while len(seqs[0].generated) < 2 * (i // 2 + 1) and not seqs[0].finish_reason:
                    await asyncio.sleep(0.001)
        return await asyncio.gather(*(collect(s) for s in seqs)), seqs

    results, seqs = run_then_stop(engine, run)
    assert_as_generate(tiny, prompts, lengths, seqs, results)


def test_stop_strings_and_sampling_per_sequence(tiny):
    tok = tiny.tokenizer
    engine = Engine(tiny.model, tok, device=tiny.device, max_batch=8, wait_ms=20)
    engine.start()
    prompt = tok("Describe a Helm chart.")["input_ids"]

    async def run(params_list):
        seqs = [engine.submit(prompt, p) for p in params_list]
        return await asyncio.gather(*(collect(s) for s in seqs))

    try:
        ((full, _),) = asyncio.run(run([SamplingParams(max_tokens=30)]))
        assert len(full) > 8
        stop = full[4:8]
        results = asyncio.run(
            run(
                [
                    SamplingParams(max_tokens=30, stop=(stop,)),
                    SamplingParams(max_tokens=30),
                    SamplingParams(max_tokens=5, temperature=1.5, top_p=0.9),
                ]
            )
        )
    finally:
        engine.stop()
    (cut, cut_end), (again, _), (_sampled, sampled_end) = results
    assert cut == full[: full.index(stop)] and cut_end.finish_reason == "stop"
    assert again == full  # a greedy row is not disturbed by a sampled row in the same batch
    assert sampled_end.finish_reason in {"stop", "length"}


def test_cancelled_sequence_leaves_the_batch(tiny):
    engine = Engine(tiny.model, tiny.tokenizer, device=tiny.device, wait_ms=0)
    engine.start()
    prompt = tiny.tokenizer("kubectl get pods")["input_ids"]

    async def run():
        keep = engine.submit(prompt, SamplingParams(max_tokens=40))
        drop = engine.submit(prompt, SamplingParams(max_tokens=40))
        drop.cancel()
        return await collect(keep), drop

    try:
        (_, final), drop = asyncio.run(run())
    finally:
        engine.stop()
    assert final.kind == "done"
    assert len(drop.generated) < 40
    assert engine.running == 0 and engine.queue_depth == 0


def test_lora_adapter_is_merged_at_load(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, lora)
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)

    loaded = load_model(str(adapter_dir), dtype="float32", device="cpu")
    assert loaded.adapter_merged
    assert not any("lora" in name for name, _ in loaded.model.named_parameters())
    ids = torch.tensor([loaded.tokenizer("What is GitOps?")["input_ids"]])
    with torch.inference_mode():
        expected = peft_model(input_ids=ids).logits
        plain = base.__class__.from_pretrained(tiny_model_dir)(input_ids=ids).logits
        merged = loaded.model(input_ids=ids).logits
    assert torch.allclose(merged, expected, atol=1e-4)
    assert not torch.allclose(merged, plain, atol=1e-4), "the adapter changed nothing"


def test_request_past_its_timeout_is_504_and_leaves_the_queue(tiny):
    from workloads.serve.config import ServeConfig
    from workloads.serve.state import ApiError, ServingState

    config = ServeConfig.model_validate(
        {"limits": {"request_timeout_s": 0.2, "max_new_tokens": 8, "max_queue": 1}}
    )
    engine = Engine(tiny.model, tiny.tokenizer, device=tiny.device, max_queue=1)
    state = ServingState(config, engine, tiny.tokenizer)  # engine not started: nothing runs

    async def run():
        sub = state.submit([1, 2, 3], 4, 0.0, 1.0, None)
        with pytest.raises(ApiError) as full:
            state.submit([1, 2, 3], 4, 0.0, 1.0, None)
        assert full.value.status == 429
        with pytest.raises(ApiError) as late:
            await state.collect(sub)
        return sub, late.value

    sub, error = asyncio.run(run())
    assert error.status == 504 and "request_timeout_s" in error.message
    assert sub.seq.cancelled
    with pytest.raises(ApiError, match="at most 8"):
        state.submit([1], 9, 0.0, 1.0, None)


def test_a_refused_request_leaves_nothing_in_the_queue(tiny):
    """Admission is all or nothing: a request whose prompts do not all fit enqueues none."""
    from workloads.serve.config import ServeConfig
    from workloads.serve.state import ApiError, ServingState

    config = ServeConfig.model_validate({"limits": {"max_queue": 4}})
    engine = Engine(tiny.model, tiny.tokenizer, device=tiny.device, max_queue=4)
    state = ServingState(config, engine, tiny.tokenizer)  # engine not started: nothing runs

    async def run():
        first = state.submit_all([[1, 2]] * 3, 4, 0.0, 1.0, None)
        with pytest.raises(ApiError) as full:
            state.submit_all([[1, 2]] * 2, 4, 0.0, 1.0, None)
        return first, full.value

    first, error = asyncio.run(run())
    assert error.status == 429 and "brings 2" in error.message
    assert list(engine._pending) == [sub.seq for sub in first]


def test_a_client_that_goes_away_cancels_its_sequences(tiny):
    """collect_all answers None as soon as the connection closes, and every sequence of the
    request is cancelled so the engine drops it at its next step."""
    from workloads.serve.config import ServeConfig
    from workloads.serve.state import ServingState

    engine = Engine(tiny.model, tiny.tokenizer, device=tiny.device)
    state = ServingState(ServeConfig(), engine, tiny.tokenizer)  # not started: never answers

    async def run():
        gone = asyncio.Event()

        async def receive():
            await gone.wait()
            return {"type": "http.disconnect"}

        subs = state.submit_all([[1, 2], [3, 4]], 8, 0.0, 1.0, None)
        waiting = asyncio.ensure_future(state.collect_all(subs, receive))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # still waiting for answers while the client is there
        gone.set()
        return subs, await asyncio.wait_for(waiting, 1.0)

    subs, answers = asyncio.run(run())
    assert answers is None
    assert all(sub.seq.cancelled for sub in subs)


@pytest.mark.parametrize(
    ("answer", "stop"),
    [
        ("Räder, naïve café — 日本語 🚀 done", ()),
        ("kubectl get pods 🚀 -n demo END and more", ("END",)),
    ],
)
def test_token_by_token_stream_adds_up_to_the_whole_decode(tiny, answer, stop):
    """Multi-byte characters split across tokens and a stop string are held back, never garbled."""
    tok = tiny.tokenizer
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    # At least one character must span several byte-level tokens for this to test anything.
    assert any("\ufffd" in tok.decode(ids[:i]) for i in range(1, len(ids)))

    async def run():
        seq = Sequence(
            0,
            [],
            SamplingParams(max_tokens=99, stop=stop),
            asyncio.get_running_loop(),
            asyncio.Queue(),
        )
        stopped = False
        for token in ids:
            seq.generated.append(token)
            if emit_text(seq, tok):
                stopped = True
                break
        finish(seq, tok, "stop", hit_stop=stopped)
        return await collect(seq)

    text, final = asyncio.run(run())
    expected = tok.decode(ids)
    assert "\ufffd" not in text
    assert text == (expected[: expected.index(stop[0])] if stop else expected)
    assert final.finish_reason == "stop"
