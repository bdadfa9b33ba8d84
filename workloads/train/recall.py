"""Validation key-fact recall: development questions asked of the model while it trains.

The validation loss is measured on records whose facts the training split does not teach, so
it says how well the model writes about unseen things, not whether it learned what it was
taught; on a small corpus it rises as soon as the model starts to retain the corpus's facts.
The development questions (``workloads/data/benchmark/cloudops_dev.jsonl``) ask about facts the
training split does teach, in wording of their own, and are scored like the benchmark: the
share of each reference's key facts found in the answer. They are asked exactly as evaluation
asks (``configs/eval/default.yaml``: system prompt, greedy decoding, token budget, batch size),
so this recall tracks the promotion gate without touching the benchmark.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from tuneops.core.paths import REPO_ROOT

log = logging.getLogger(__name__)

METRIC = "eval_key_fact_recall"


class RecallProbe:
    """Asks the development questions and returns ``{METRIC: mean key-fact recall}``."""

    def __init__(self, questions: str, limit: int | None, model_dir: Path, precision: str):
        from transformers import AutoTokenizer

        from workloads.data.benchmark import load_benchmark
        from workloads.evaluate.config import load_eval_config
        from workloads.evaluate.items import system_prompt

        path = Path(questions)
        items = load_benchmark(path if path.is_absolute() else REPO_ROOT / path)
        self.items = items[:limit] if limit else items
        eval_cfg = load_eval_config()
        system = system_prompt(eval_cfg)
        head = [{"role": "system", "content": system}] if system else []
        self.prompts = [[*head, {"role": "user", "content": i["question"]}] for i in self.items]
        self.generation = eval_cfg.generation.model_copy(update={"cpu_prepack": False})
        # The model's own template, left padding: a tokenizer of its own, not the trainer's.
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.precision = precision

    def _autocast(self, model):
        import torch

        device = next(model.parameters()).device
        if self.precision == "bf16" and device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self, model: Any) -> dict[str, float]:
        return self._score(self.answers(model))

    def ask_saved(self, model_dir: Path) -> dict[str, float]:
        return self._score(self.saved_answers(model_dir))

    def answers(self, model: Any) -> list:
        """The answers of a model in memory (the one training), in the training's precision."""
        import torch

        from workloads.evaluate.generate import LocalGenerator

        generator = LocalGenerator.from_model(
            "training", self.generation, model, self.tokenizer, self.precision, "as trained"
        )
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self._autocast(model):
                answers = generator.generate(self.prompts)
        finally:
            model.train(was_training)
        return answers

    def saved_answers(self, model_dir: Path) -> list:
        """The same questions asked of a saved model (the run's merged one), loaded as
        evaluation loads it: in the training's precision, its Linear weights prepacked for the
        CPU. The trained model in memory still carries its adapters beside the frozen weights
        and cannot be prepacked; asked this way, 46 answers took 12.8 s instead of 21.6 s
        (fp32, 2 threads)."""
        from workloads.evaluate.generate import LocalGenerator

        dtype = {"bf16": "bfloat16", "fp32": "float32"}.get(self.precision, "auto")
        config = self.generation.model_copy(update={"dtype": dtype, "cpu_prepack": True})
        generator = LocalGenerator(str(model_dir), config)
        try:
            answers = generator.generate(self.prompts)
        finally:
            generator.close()
        return answers

    def _score(self, answers) -> dict[str, float]:
        from workloads.evaluate.metrics import key_fact_recall

        scores = [
            key_fact_recall(a.text, item["key_facts"])
            for a, item in zip(answers, self.items, strict=True)
        ]
        return {METRIC: sum(scores) / len(scores)}
