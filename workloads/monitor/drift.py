"""Prompt drift: compare what users ask now with what the model was trained on.

Two distributions are compared with the population stability index (PSI),
``sum((p - q) * ln(p / q))`` over bins, where ``q`` is the reference (training prompts) and
``p`` the recent sampled prompts:

- prompt length in words, binned at the reference's quantiles;
- vocabulary: the share of words falling on each of the reference's ``vocab_top_k`` most
  frequent words, with everything else pooled into ``<other>`` (so unseen words raise it).

The out-of-vocabulary rate (share of prompt words never seen in the reference) is reported as
context. A PSI above ``psi_threshold`` on either signal means drift.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from tuneops.core.errors import UserError
from workloads.monitor.config import DriftSection

_WORD = re.compile(r"[a-z0-9][a-z0-9_.\-/]*", re.IGNORECASE)


@dataclass
class Signal:
    name: str
    psi: float
    drifted: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class DriftReport:
    prompts: int
    reference: int
    threshold: float
    signals: list[Signal]
    oov_rate: float

    @property
    def drifted(self) -> bool:
        return any(s.drifted for s in self.signals)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drifted"] = self.drifted
        return data


def words(text: str) -> list[str]:
    return [w.lower().rstrip(".-/") for w in _WORD.findall(text)]


def psi(actual: list[float], expected: list[float], smoothing: float) -> float:
    """PSI of two histograms given as counts.

    ``smoothing`` is added to every bin of both sides (additive smoothing) before normalising:
    an empty bin in a small sample then costs little instead of dominating the sum.
    """
    k = len(actual)
    a_total = sum(actual) + smoothing * k
    e_total = sum(expected) + smoothing * k
    value = 0.0
    for a, e in zip(actual, expected, strict=True):
        p = (a + smoothing) / a_total
        q = (e + smoothing) / e_total
        value += (p - q) * math.log(p / q)
    return value


def _quantile_edges(values: list[int], bins: int) -> list[float]:
    ordered = sorted(values)
    edges = []
    for i in range(1, bins):
        cut = ordered[min(len(ordered) - 1, int(len(ordered) * i / bins))]
        if not edges or cut > edges[-1]:
            edges.append(float(cut))
    return edges


def _histogram(values: list[int], edges: list[float]) -> list[int]:
    counts = [0] * (len(edges) + 1)
    for value in values:
        index = sum(1 for edge in edges if value >= edge)
        counts[index] += 1
    return counts


def compare(prompts: list[str], reference: list[str], cfg: DriftSection) -> DriftReport:
    if not reference:
        raise UserError("the reference dataset has no prompts to compare with")
    if len(prompts) < cfg.min_prompts:
        raise UserError(
            f"only {len(prompts)} sampled prompts; drift needs at least {cfg.min_prompts} "
            "(drift.min_prompts): raise sampling.rate in configs/serve or wait for traffic"
        )
    ref_words = [words(t) for t in reference]
    new_words = [words(t) for t in prompts]

    ref_len = [len(w) for w in ref_words]
    new_len = [len(w) for w in new_words]
    edges = _quantile_edges(ref_len, cfg.length_bins)
    length_psi = psi(_histogram(new_len, edges), _histogram(ref_len, edges), cfg.smoothing)

    ref_counts = Counter(w for ws in ref_words for w in ws)
    top = [w for w, _ in ref_counts.most_common(cfg.vocab_top_k)]
    top_set = set(top)

    def vocab_hist(groups: list[list[str]]) -> list[int]:
        counts = Counter(w if w in top_set else "<other>" for ws in groups for w in ws)
        return [counts.get(w, 0) for w in top] + [counts.get("<other>", 0)]

    vocab_psi = psi(vocab_hist(new_words), vocab_hist(ref_words), cfg.smoothing)
    all_new = [w for ws in new_words for w in ws]
    oov = sum(1 for w in all_new if w not in ref_counts) / max(len(all_new), 1)

    def median(values: list[int]) -> float:
        ordered = sorted(values)
        return float(ordered[len(ordered) // 2]) if ordered else 0.0

    signals = [
        Signal(
            "prompt_length",
            length_psi,
            length_psi > cfg.psi_threshold,
            {"median_words": median(new_len), "reference_median_words": median(ref_len)},
        ),
        Signal(
            "vocabulary",
            vocab_psi,
            vocab_psi > cfg.psi_threshold,
            {"top_k": len(top)},
        ),
    ]
    return DriftReport(len(prompts), len(reference), cfg.psi_threshold, signals, oov)
