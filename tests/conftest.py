"""Shared fixtures. Models: ``tiny_model_dir`` for tests that need only shapes, the real
embedded model (``embedded_model_dir``) for tests about what the model says."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_helpers import random_llama_dir


@pytest.fixture(scope="session")
def embedded_tokenizer_dir(tmp_path_factory) -> Path:
    """The SmolLM2 tokenizer and chat template, read straight from the GGUF file (no weights)."""
    from transformers import AutoTokenizer

    from workloads.models.embedded import embedded_gguf_path

    gguf = embedded_gguf_path("smollm2-135m-instruct")
    out = tmp_path_factory.mktemp("tokenizer")
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_tokenizer_dir) -> Path:
    """A randomly initialised two-layer Llama with the real tokenizer: fast, shape-true."""
    return random_llama_dir(tmp_path_factory.mktemp("tiny-model"), embedded_tokenizer_dir)


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The real SmolLM2-135M-Instruct, converted once into the repo's .cache."""
    from workloads.models import resolve_model

    return resolve_model("embedded:smollm2-135m-instruct")


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch) -> str:
    """A private SQLite MLflow store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
