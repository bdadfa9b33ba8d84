"""Shared helpers for the training tests."""

from __future__ import annotations

from pathlib import Path

from workloads.train.config import load_train_config


def config_for(model_dir: Path, snapshot: Path, out: Path, *extra: str):
    return load_train_config(
        overrides=[
            f"base_model={model_dir}",
            f"dataset={snapshot}",
            f"output_dir={out}",
            f"tracking.uri=sqlite:///{out.parent / 'mlflow.db'}",
            "data.max_length=256",
            "eval.recall_questions=null",  # tests that want the development questions say so
            *extra,
        ]
    )
