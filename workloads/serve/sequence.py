"""One request's generation: its sampling parameters, its state, and its stream of text.

A ``Sequence`` is created by ``Engine.submit`` and advanced by the engine thread, which hands
each new token to ``emit_text`` and ends the sequence with ``finish``. Text is emitted only
once it is stable: incomplete UTF-8 and a tail that might start a stop string are held back
until the next token decides them, so streamed chunks always add up to the final answer.
``sample_tokens`` picks the next token of every row of a batch, greedy and sampled rows alike.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Checked here, at submission: a bad value must fail its own request, never reach the
        engine thread, where it would fail every sequence of the batch."""
        number = (int, float)
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
            raise ValueError(f"max_tokens must be a whole number, got {self.max_tokens!r}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if not isinstance(self.temperature, number) or not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature must be between 0 and 2, got {self.temperature!r}")
        if not isinstance(self.top_p, number) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be above 0 and at most 1, got {self.top_p!r}")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError("stop takes non-empty strings")


@dataclass
class Event:
    kind: str  # "delta" | "done" | "error"
    text: str = ""
    finish_reason: str | None = None


@dataclass
class Sequence:
    """One request's generation; its events arrive on ``queue`` in the submitting loop."""

    id: int
    prompt_ids: list[int]
    params: SamplingParams
    # The loop that submitted it and the queue its events go to; None for a batch job, which
    # reads the sequence when it ends.
    loop: asyncio.AbstractEventLoop | None = None
    queue: asyncio.Queue | None = None
    submitted: float = field(default_factory=time.perf_counter)
    generated: list[int] = field(default_factory=list)
    emitted: str = ""
    finish_reason: str | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    error: str | None = None  # why it failed, when its finish_reason is "error"
    cancelled: bool = False

    @property
    def completion_tokens(self) -> int:
        return len(self.generated)

    def cancel(self) -> None:
        self.cancelled = True

    def send(self, event: Event) -> None:
        """Hand ``event`` to the submitting loop (safe from any thread)."""
        if event.kind == "error":
            self.error = event.text
        if self.loop is None or self.queue is None:
            return
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the submitting loop is gone: nobody is listening
            self.cancelled = True

    async def events(self):
        """Yield events until the sequence finishes (or fails)."""
        if self.queue is None:
            raise RuntimeError("a batch job's sequence has no event queue")
        while True:
            event = await self.queue.get()
            yield event
            if event.kind != "delta":
                return


def stop_prefix_len(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


def emit_text(seq: Sequence, tokenizer: Any) -> bool:
    """Send the stable new text; True when a stop string ended the sequence."""
    text = tokenizer.decode(seq.generated, skip_special_tokens=True)
    stops = seq.params.stop
    stopped = False
    if stops:
        hits = [i for i in (text.find(s) for s in stops) if i >= 0]
        if hits:
            text, stopped = text[: min(hits)], True
    stable = text
    if not stopped:
        stable = stable.rstrip("\ufffd")
        cut = stop_prefix_len(stable, stops) if stops else 0
        if cut:
            stable = stable[:-cut]
    if stable.startswith(seq.emitted) and len(stable) > len(seq.emitted):
        seq.send(Event("delta", stable[len(seq.emitted) :]))
        seq.emitted = stable
    return stopped


def finish(seq: Sequence, tokenizer: Any, reason: str, *, hit_stop: bool = False) -> None:
    """End the sequence with ``reason``, first flushing text held back for a stop string."""
    if not hit_stop:
        # Flush whatever was held back (a partial stop-string prefix that never completed).
        text = tokenizer.decode(seq.generated, skip_special_tokens=True)
        if text.startswith(seq.emitted) and len(text) > len(seq.emitted):
            seq.send(Event("delta", text[len(seq.emitted) :]))
            seq.emitted = text
    seq.finish_reason = reason
    seq.finished_at = time.perf_counter()
    seq.send(Event("done", finish_reason=reason))


# Below this temperature sampling is greedy: dividing logits by a smaller one overflows to inf,
# and the softmax of that is NaN (one request's parameters must never fail the batch).
MIN_TEMPERATURE = 1e-3


def sample_tokens(logits: Any, seqs: list[Sequence]) -> Any:
    """The next token of each row: argmax where temperature is (almost) 0, else top-p
    sampling. A row whose probabilities are not finite falls back to its argmax."""
    import torch

    logits = logits.float()
    greedy = logits.argmax(-1)
    greedy_rows = [s.params.temperature < MIN_TEMPERATURE for s in seqs]
    if all(greedy_rows):
        return greedy
    temps = torch.tensor(
        [1.0 if g else s.params.temperature for s, g in zip(seqs, greedy_rows, strict=True)],
        device=logits.device,
    ).unsqueeze(1)
    top_p = torch.tensor([s.params.top_p for s in seqs], device=logits.device).unsqueeze(1)
    probs = torch.softmax(logits / temps, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    cumulative = sorted_probs.cumsum(-1)
    drop = (cumulative - sorted_probs) > top_p  # always keeps the most likely token
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    broken = ~torch.isfinite(sorted_probs).all(-1) | (sorted_probs.sum(-1) <= 0)
    sorted_probs[broken] = 1.0  # any pick; the row takes its argmax below
    picked = torch.multinomial(sorted_probs, 1)
    sampled = order.gather(-1, picked).squeeze(-1)
    is_greedy = torch.tensor(greedy_rows, device=logits.device) | broken
    return torch.where(is_greedy, greedy, sampled)
