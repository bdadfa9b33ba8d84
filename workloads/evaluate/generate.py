"""Answer generation for evaluation: a local model in batches, or an OpenAI-compatible endpoint.

Both give, per prompt, the answer text, how many tokens it has, whether it ended with the
end-of-turn token within the budget, and its latency. Decoding is greedy and fixed by config so
that two runs of the same model give the same answers.

A local model decodes each batch with the model server's engine (``workloads.serve.engine``)
run in this thread: an answer that has ended leaves the batch, where ``generate()`` would go on
computing it until the batch's longest answer ends. A repetition penalty, which the engine does
not apply, goes through ``generate()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from tuneops.core.errors import UserError
from workloads.evaluate.config import GenerationConfig
from workloads.models.refs import parse_ref

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass
class Generation:
    text: str
    answer_tokens: int | None  # None when an endpoint does not report usage
    finished: bool  # ended with end-of-turn within the budget
    latency_s: float  # from its batch's start until it ended (generate(): the batch's end)
    gen_seconds: float  # this answer's share of generation time, for throughput


class Generator(Protocol):
    label: str
    precision: str | None  # the dtype answers are computed in; None when an endpoint serves
    precision_reason: str  # why that dtype

    def generate(
        self, prompts: Sequence[Messages], progress: Callable[[int], None] | None = None
    ) -> list[Generation]: ...

    def close(self) -> None: ...


class LocalGenerator:
    """A transformers causal LM, batched with left padding over the chat template."""

    def __init__(self, ref: str, config: GenerationConfig, tracking_uri: str | None = None):
        import torch

        from workloads.models.load import load_model

        if config.threads:
            torch.set_num_threads(config.threads)
        loaded = load_model(
            ref, dtype=config.dtype, prepack=config.cpu_prepack, tracking_uri=tracking_uri
        )
        precision = str(loaded.dtype).removeprefix("torch.")
        self._setup(ref, config, loaded.model, loaded.tokenizer, precision, loaded.precision_reason)

    @classmethod
    def from_model(
        cls, label: str, config: GenerationConfig, model, tokenizer, precision: str, reason: str
    ) -> LocalGenerator:
        """A generator over a model already in memory (training asks its own model)."""
        generator = cls.__new__(cls)
        generator._setup(label, config, model, tokenizer, precision, reason)
        return generator

    def _setup(self, label, config, model, tokenizer, precision: str, reason: str) -> None:
        self.label = label
        self.config = config
        self.model, self.tokenizer = model, tokenizer
        self.precision = precision
        self.precision_reason = reason
        log.info("%s in %s: %s", label, self.precision, self.precision_reason)
        if self.tokenizer.chat_template is None:
            raise UserError(f"model {label} has no chat template; evaluation needs one")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self._engine = None

    def _encode(self, prompts: Sequence[Messages], **kwargs):
        texts = [
            self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
            for m in prompts
        ]
        self.tokenizer.truncation_side = "left"
        return self.tokenizer(
            texts,
            truncation=True,
            max_length=self.config.max_input_tokens,
            add_special_tokens=False,
            **kwargs,
        )

    def _engine_batch(self, prompts: Sequence[Messages], progress) -> list[Generation]:
        from workloads.serve.engine import Engine
        from workloads.serve.sequence import SamplingParams

        if self._engine is None:
            size = self.config.batch_size
            self._engine = Engine(
                self.model,
                self.tokenizer,
                device=self.model.device,
                max_batch=size,
                max_prefill_batch=size,
                max_queue=size,
                wait_ms=0,
                compact_at=0.25,  # 136 answers: 0.86x the time of dropping each row as it ends
                model_name=self.label,
            )
        ids = self._encode(prompts)["input_ids"]
        started = time.perf_counter()
        params = SamplingParams(max_tokens=self.config.max_new_tokens)
        seqs = self._engine.run_batch(ids, params, on_finished=progress)
        elapsed = time.perf_counter() - started
        return [
            self._answer(
                seq.generated,
                finished=seq.finish_reason == "stop",
                latency_s=(seq.finished_at or started + elapsed) - started,
                gen_seconds=elapsed / len(seqs),
            )
            for seq in seqs
        ]

    def _answer(self, ids: list[int], **timing_and_end) -> Generation:
        """One answer from its generated token ids (the end-of-turn token not among them)."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return Generation(text=text, answer_tokens=len(ids), **timing_and_end)

    def _hf_batch(self, prompts: Sequence[Messages], progress) -> list[Generation]:
        import torch

        enc = self._encode(prompts, return_tensors="pt", padding=True).to(self.model.device)
        started = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=self.config.max_new_tokens,
                do_sample=False,
                num_beams=1,
                repetition_penalty=self.config.repetition_penalty,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=sorted(self.eos_ids),
            )
        elapsed = time.perf_counter() - started
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        results = []
        for ids in new:
            stop = next((i for i, tok in enumerate(ids) if tok in self.eos_ids), None)
            kept = ids if stop is None else ids[:stop]
            results.append(
                self._answer(
                    kept,
                    finished=stop is not None,
                    latency_s=elapsed,
                    gen_seconds=elapsed / len(new),
                )
            )
        if progress:
            progress(len(results))
        return results

    def generate(
        self, prompts: Sequence[Messages], progress: Callable[[int], None] | None = None
    ) -> list[Generation]:
        # Batch prompts of similar length together: less padding, same answers.
        order = sorted(range(len(prompts)), key=lambda i: len(str(prompts[i])))
        results: list[Generation | None] = [None] * len(prompts)
        run = self._engine_batch if self.config.repetition_penalty == 1.0 else self._hf_batch
        for idx in balanced_batches(order, self.config.batch_size):
            batch = run([prompts[i] for i in idx], progress)
            for i, gen in zip(idx, batch, strict=True):
                results[i] = gen
        return [r for r in results if r is not None]

    def close(self) -> None:
        self._engine = None
        del self.model


def balanced_batches(items: Sequence[int], size: int) -> list[list[int]]:
    """``items`` in order, in as few batches of at most ``size`` as possible, sizes within one.

    A batch runs until its longest answer ends, so 136 prompts at 64 a batch go as 46, 45 and
    45 rather than 64, 64 and a last batch of 8 that costs as many decoding steps as a full one.
    """
    if not items:
        return []
    count = -(-len(items) // size)
    base, extra = divmod(len(items), count)
    batches, start = [], 0
    for n in range(count):
        end = start + base + (1 if n < extra else 0)
        batches.append(list(items[start:end]))
        start = end
    return batches


def openai_client(base_url: str, *, api_key: str | None, timeout_s: float):
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=2)


def first_model_id(client: Any, base_url: str) -> str:
    import openai

    try:
        models = client.models.list().data
    except openai.APIError as exc:
        raise UserError(f"cannot list models at {base_url}: {exc}") from exc
    if not models:
        raise UserError(f"the endpoint {base_url} serves no models")
    return models[0].id


class EndpointGenerator:
    """Any OpenAI-compatible chat completions endpoint (the project's own server, vLLM, ...)."""

    precision = None
    precision_reason = "chosen by the endpoint"

    def __init__(self, ref: str, config: GenerationConfig, *, api_key: str | None = None):
        self.label = ref
        self.config = config
        base_url, _, model = ref.partition("#")  # http://host:port/openai/v1#model-name
        self.base_url = base_url.rstrip("/")
        self.client = openai_client(
            self.base_url, api_key=api_key, timeout_s=config.endpoint_timeout_s
        )
        self.model = model or first_model_id(self.client, self.base_url)

    def _one(self, messages: Messages) -> Generation:
        import openai

        started = time.perf_counter()
        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                max_tokens=self.config.max_new_tokens,
                temperature=0.0,
            )
        except openai.APIError as exc:
            raise UserError(f"the endpoint {self.base_url} failed: {exc}") from exc
        elapsed = time.perf_counter() - started
        choice = resp.choices[0]
        tokens = resp.usage.completion_tokens if resp.usage else None
        return Generation(
            text=(choice.message.content or "").strip(),
            answer_tokens=tokens,
            finished=choice.finish_reason == "stop",
            latency_s=elapsed,
            gen_seconds=elapsed,  # replaced by the share of the whole pass in generate()
        )

    def generate(
        self, prompts: Sequence[Messages], progress: Callable[[int], None] | None = None
    ) -> list[Generation]:
        def run(messages: Messages) -> Generation:
            gen = self._one(messages)
            if progress:
                progress(1)
            return gen

        started = time.perf_counter()
        with ThreadPoolExecutor(self.config.endpoint_concurrency) as pool:
            results = list(pool.map(run, prompts))
        share = (time.perf_counter() - started) / max(len(results), 1)
        for gen in results:
            gen.gen_seconds = share
        return results

    def close(self) -> None:
        self.client.close()


def open_generator(
    ref: str,
    config: GenerationConfig,
    *,
    api_key: str | None = None,
    tracking_uri: str | None = None,
) -> Generator:
    """An endpoint client for an ``http(s)://`` reference, else the model loaded locally
    (registry and run references from the MLflow store at ``tracking_uri``)."""
    if parse_ref(ref).kind == "endpoint":
        return EndpointGenerator(ref, config, api_key=api_key)
    return LocalGenerator(ref, config, tracking_uri=tracking_uri)
