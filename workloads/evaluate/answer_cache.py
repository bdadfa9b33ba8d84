"""Answers of a model that cannot change, kept for the next evaluation that asks the same.

Greedy decoding gives the same answers for the same weights, prompts, decoding settings,
precision and library versions, so those answers need computing once. The thread count is left
out of the key on purpose: it changes the order of floating-point sums in the last bits only,
and the demo computes the base's answers on one thread beside the fine-tune, then evaluates on
every core; keying on it made the demo answer the base twice. Only
``embedded:`` references qualify: their weights come from an installed package and are
recognised by the files' names, sizes and modification times. (A registry or run reference is
pinned to one version, but the same name in another tracking store is another model.) The key
covers everything above; anything different is a miss and computes afresh. Entries live under
``<cache>/eval/answers/<key>.json``, written atomically.

The base model is in every evaluation as a baseline, so this halves a repeated evaluation, and
the demo computes the base's answers while the local infrastructure is applied.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tuneops.core.io import atomic_write_json
from tuneops.core.paths import cache_dir
from workloads.evaluate.config import GenerationConfig
from workloads.evaluate.generate import Generation
from workloads.models.refs import parse_ref

log = logging.getLogger(__name__)

# Settings of ``generation`` that change answers (the others only say how to reach endpoints).
ANSWER_SETTINGS = (
    "max_new_tokens",
    "max_input_tokens",
    "batch_size",
    "repetition_penalty",
    "cpu_prepack",
)


def _weights_fingerprint(model_dir: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model_dir.iterdir() if p.is_file()
    )


class AnswerCache:
    """The stored answers of one model to one list of prompts, under one set of settings."""

    def __init__(self, path: Path, key_parts: dict[str, Any]) -> None:
        self.path = path
        self.key_parts = json.loads(json.dumps(key_parts))  # as it reads back from the file

    @classmethod
    def for_model(
        cls, ref: str, config: GenerationConfig, prompts: list[Any]
    ) -> AnswerCache | None:
        """The cache entry for ``ref`` answering ``prompts``; None where answers may change."""
        if not config.answer_cache or parse_ref(ref).kind != "embedded":
            return None
        import torch
        import transformers

        from workloads.models import resolve_model
        from workloads.models.precision import choose_precision, pick_device

        precision = choose_precision(config.dtype, pick_device("auto"))
        parts = {
            "ref": ref,
            "weights": _weights_fingerprint(resolve_model(ref)),
            "prompts": hashlib.sha256(json.dumps(prompts, sort_keys=True).encode()).hexdigest(),
            "settings": {name: getattr(config, name) for name in ANSWER_SETTINGS},
            "dtype": precision.dtype_name,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
        return cls(cache_dir() / "eval" / "answers" / f"{digest}.json", parts)

    def load(self) -> tuple[list[Generation], str, str] | None:
        """``(answers, dtype, why that dtype)`` when stored, else None."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if data.get("key") != self.key_parts:
            return None
        answers = [Generation(**g) for g in data["answers"]]
        return answers, data["dtype"], data["precision_reason"]

    def save(self, answers: list[Generation], dtype: str | None, reason: str) -> None:
        payload = {
            "key": self.key_parts,
            "dtype": dtype,
            "precision_reason": reason,
            "answers": [asdict(g) for g in answers],
        }
        atomic_write_json(self.path, payload)
        log.info("answers of %s stored in %s", self.key_parts["ref"], self.path)
