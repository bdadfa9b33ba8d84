"""Shared fixtures. Models: ``tiny_model_dir`` for tests that need only shapes, the real
embedded model (``embedded_model_dir``) for tests about what the model says."""

from __future__ import annotations

from pathlib import Path

import pytest


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
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    out = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


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
