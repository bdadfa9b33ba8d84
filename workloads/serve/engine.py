"""Continuous-batching generation engine.

One background thread owns the model. Requests wait in a queue; the thread admits them into
the running batch (a left-padded prefill, then its KV cache is joined to the batch's cache),
and every step decodes one token for every running sequence in a single forward pass.
Finished sequences leave the batch at once and waiting ones take their slots, so a long answer
never holds short ones back.

Each sequence streams its text back to the asyncio loop that submitted it; what a sequence
holds, how its text is released and how its next token is drawn is in
``workloads.serve.sequence``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from workloads.serve import batch_cache, metrics
from workloads.serve.sequence import (
    Event,
    SamplingParams,
    Sequence,
    emit_text,
    finish,
    sample_tokens,
)

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """More requests are waiting than the configured limit."""


class EngineStopped(Exception):
    """The engine is shutting down and takes no new work."""


class Engine:
    """The batch scheduler: a queue of sequences, one thread, one running batch."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: Any,
        max_batch: int = 32,
        wait_ms: float = 5.0,
        max_prefill_batch: int = 16,
        max_queue: int = 256,
        model_name: str = "model",
        compact_at: float = 0.0,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self.max_prefill_batch = max_prefill_batch
        self.max_queue = max_queue
        self.model_name = model_name
        # Finished rows stay in the batch (decoded, their tokens ignored) until they are more
        # than this share of it: dropping rows copies the whole KV cache. 0: dropped at once.
        self.compact_at = compact_at
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self._pending: collections.deque[Sequence] = collections.deque()
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._stopping = False
        self._abort: str | None = None  # set by the drain deadline: fail what is left
        self._thread: threading.Thread | None = None
        # Batch state, touched only by the engine thread.
        self._active: list[Sequence] = []
        self._admitted: list[Sequence] = []  # taken from the queue this step, not yet joined
        self._cache = None
        self._mask = None
        self._last = None

    # ---- public API (any thread) -------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="serve-engine", daemon=True)
            self._thread.start()

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> Sequence:
        """Queue a prompt; call from a running asyncio loop."""
        return self.submit_all([prompt_ids], params)[0]

    def submit_all(self, prompts: list[list[int]], params: SamplingParams) -> list[Sequence]:
        """Queue every prompt of one request, or none: admission is checked for all of them
        under one lock, so a refused request leaves nothing behind in the queue."""
        loop = asyncio.get_running_loop()
        seqs = [
            Sequence(next(self._ids), list(ids), params, loop, asyncio.Queue()) for ids in prompts
        ]
        with self._cond:
            if self._stopping:
                raise EngineStopped("the server is shutting down")
            if len(self._pending) + len(seqs) > self.max_queue:
                raise QueueFull(
                    f"{len(self._pending)} requests are already waiting and this one brings "
                    f"{len(seqs)} (the queue holds {self.max_queue})"
                )
            self._pending.extend(seqs)
            metrics.QUEUE_DEPTH.set(len(self._pending))
            self._cond.notify()
        return seqs

    def begin_drain(self, deadline_s: float) -> None:
        """Stop admitting (new requests get 503); what is still queued or decoding after
        ``deadline_s`` fails with a clear error, so shutdown ends inside its grace period."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        timer = threading.Timer(deadline_s, self._deadline_passed)
        timer.daemon = True
        timer.start()

    def _deadline_passed(self) -> None:
        with self._cond:
            if self._pending or self._active:
                self._abort = "the server is shutting down and could not finish this request"
                self._cond.notify()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the work already queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        return sum(1 for seq in list(self._active) if seq.finish_reason is None)

    def run_batch(
        self,
        prompts: list[list[int]],
        params: SamplingParams,
        on_finished: Callable[[int], None] | None = None,
    ) -> list[Sequence]:
        """Generate every prompt in the calling thread, with no server thread or event loop
        (batch jobs: evaluation). The caller's torch settings, such as autocast, apply.
        ``on_finished(n)`` hears how many sequences ended at each step. A failed generation
        raises ``RuntimeError`` with its message."""
        import torch

        if self._thread is not None:
            raise RuntimeError("run_batch needs an engine whose server thread is not started")
        seqs = [Sequence(next(self._ids), list(ids), params) for ids in prompts]
        self._pending.extend(seqs)
        ended = 0
        with torch.inference_mode():
            while self._pending or self._active:
                self._step()
                now = sum(seq.finish_reason is not None for seq in seqs)
                if on_finished and now > ended:
                    on_finished(now - ended)
                ended = now
        failed = next((seq for seq in seqs if seq.finish_reason == "error"), None)
        if failed is not None:
            raise RuntimeError(failed.error or "generation failed")
        return seqs

    # ---- engine thread -----------------------------------------------------------------
    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._pending and not self._active and not self._stopping:
                        self._cond.wait()
                    if self._stopping and not self._pending and not self._active:
                        return
                    abort, self._abort = self._abort, None
                if abort:
                    self._abort_all(abort)
                    metrics.RUNNING.set(0)
                    continue
                try:
                    self._step()
                except Exception as exc:  # a bug or OOM must fail requests, not the server
                    log.exception("generation step failed")
                    self._fail_all(f"generation failed: {type(exc).__name__}: {exc}")
                metrics.RUNNING.set(self.running)

    def _take_pending(self) -> list[Sequence]:
        with self._cond:  # a waiting request whose client went away gives its place back now
            if any(seq.cancelled for seq in self._pending):
                self._pending = collections.deque(s for s in self._pending if not s.cancelled)
                metrics.QUEUE_DEPTH.set(len(self._pending))
        room = min(self.max_batch - len(self._active), self.max_prefill_batch)
        if room <= 0:
            return []
        if not self._active and self.wait_s > 0:
            # An idle engine waits one short window so a burst forms one batch.
            deadline = time.perf_counter() + self.wait_s
            with self._cond:
                while len(self._pending) < room and not self._stopping:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cond.wait(left)
        taken: list[Sequence] = []
        with self._cond:
            while self._pending and len(taken) < room:
                seq = self._pending.popleft()
                if seq.cancelled:
                    continue
                taken.append(seq)
            metrics.QUEUE_DEPTH.set(len(self._pending))
        return taken

    def _step(self) -> None:
        if self._pending and self._active:
            live = self._live_rows()
            if len(live) < len(self._active):
                self._select(live)  # finished rows give their places to waiting ones
        admitted = self._take_pending()
        self._admitted = admitted
        if admitted:
            try:
                joining = self._prefill(admitted)
            except Exception as exc:  # fails these prompts alone; the running batch goes on
                log.exception("prefill failed")
                self._fail(admitted, f"generation failed: {type(exc).__name__}: {exc}")
                joining = None
            if joining is not None:
                self._join(*joining)
        self._admitted = []
        if self._active:
            self._decode()

    def _prefill(self, seqs: list[Sequence]) -> tuple | None:
        """Prefill ``seqs`` together; what joins the running batch (None: all finished)."""
        import torch

        from workloads.serve.kv_cache import new_cache

        width = max(len(s.prompt_ids) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            n = len(seq.prompt_ids)
            ids[row, width - n :] = torch.tensor(seq.prompt_ids, dtype=torch.long)
            mask[row, width - n :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = new_cache(self.model.config)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        tokens = sample_tokens(out.logits[:, -1, :], seqs)
        metrics.PROMPT_TOKENS.inc(int(mask.sum()))
        keep = self._advance(seqs, tokens)
        if not keep:
            return None
        if len(keep) < len(seqs):
            index = torch.tensor(keep, device=self.device)
            cache.batch_select_indices(index)
            mask, tokens = mask[index], tokens[index]
            seqs = [seqs[i] for i in keep]
        return seqs, cache, mask, tokens

    def _join(self, seqs: list[Sequence], cache: Any, mask: Any, tokens: Any) -> None:
        """Append freshly prefilled rows to the running batch, left-padding the shorter side."""
        import torch

        if not self._active:
            self._active, self._cache, self._mask = list(seqs), cache, mask
            self._last = tokens.view(-1, 1)
            return
        self._mask = batch_cache.join(self._cache, self._mask, cache, mask)
        self._last = torch.cat([self._last, tokens.view(-1, 1)], dim=0)
        self._active.extend(seqs)

    def _decode(self) -> None:
        import torch

        metrics.BATCH_SIZE.observe(len(self._active))
        ones = torch.ones((self._mask.shape[0], 1), dtype=self._mask.dtype, device=self.device)
        self._mask = torch.cat([self._mask, ones], dim=1)
        positions = self._mask.sum(-1, keepdim=True) - 1
        # With no padding in any row (a lone sequence, or rows of equal length) the mask says
        # nothing; without it the attention takes its causal fast path at every step.
        out = self.model(
            input_ids=self._last,
            attention_mask=self._mask if not bool(self._mask.all()) else None,
            position_ids=positions,
            cache=self._cache,
            use_cache=True,
        )
        tokens = sample_tokens(out.logits[:, -1, :], self._active)
        live = self._live_rows()
        if len(live) < len(self._active):  # finished rows still in the batch: no new token
            picked = tokens[torch.tensor(live, dtype=torch.long, device=tokens.device)]
            keep = [live[i] for i in self._advance([self._active[r] for r in live], picked)]
        else:
            keep = self._advance(self._active, tokens)
        self._last = tokens.view(-1, 1)
        finished = len(self._active) - len(keep)
        if finished and (not keep or finished > self.compact_at * len(self._active)):
            self._select(keep)

    def _live_rows(self) -> list[int]:
        """Rows of the running batch whose sequence is still generating."""
        return [
            row
            for row, seq in enumerate(self._active)
            if seq.finish_reason is None and not seq.cancelled
        ]

    def _advance(self, seqs: list[Sequence], tokens: Any) -> list[int]:
        """Give each sequence its new token; return the rows that keep going."""
        now = time.perf_counter()
        keep: list[int] = []
        produced = 0
        for row, (seq, token) in enumerate(zip(seqs, tokens.tolist(), strict=True)):
            if seq.cancelled:
                continue
            produced += 1
            if seq.first_token_at is None:
                seq.first_token_at = now
                metrics.TIME_TO_FIRST_TOKEN.observe(now - seq.submitted)
            if token in self.eos_ids:
                finish(seq, self.tokenizer, "stop")
                continue
            seq.generated.append(token)
            if emit_text(seq, self.tokenizer):
                finish(seq, self.tokenizer, "stop", hit_stop=True)
                continue
            if len(seq.generated) >= seq.params.max_tokens:
                finish(seq, self.tokenizer, "length")
                continue
            keep.append(row)
        metrics.TOKENS_GENERATED.inc(produced)
        return keep

    def _select(self, keep: list[int]) -> None:
        """Keep only the rows in ``keep`` and cut padding columns nobody attends to any more."""
        import torch

        if not keep:
            self._active, self._cache, self._mask, self._last = [], None, None, None
            return
        self._mask = batch_cache.keep_rows(self._cache, self._mask, keep)
        self._last = self._last[torch.tensor(keep, device=self.device)]
        self._active = [self._active[i] for i in keep]

    def _abort_all(self, message: str) -> None:
        """Fail every queued and decoding sequence (the drain deadline has passed)."""
        with self._cond:
            left, self._pending = list(self._pending), collections.deque()
            metrics.QUEUE_DEPTH.set(0)
        self._fail(left, message)
        log.warning(
            "drain deadline: %d request(s) failed unfinished", len(left) + len(self._active)
        )
        self._fail_all(message)

    def _fail_all(self, message: str) -> None:
        """Fail the running batch and what was joining it (a decode step failed)."""
        self._fail([*self._active, *self._admitted], message)
        self._active, self._cache, self._mask, self._last = [], None, None, None
        self._admitted = []

    @staticmethod
    def _fail(seqs: list[Sequence], message: str) -> None:
        for seq in seqs:
            if seq.finish_reason is None:
                seq.finish_reason = "error"
                seq.send(Event("error", text=message))
