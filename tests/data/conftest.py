"""Fixtures for the dataset pipeline tests: a private cache, a small benchmark, small configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pipeline_helpers import BENCHMARK, QA_ROWS, write_jsonl


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    """Every test writes its snapshots into its own cache, never the repository's."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def benchmark_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "bench.jsonl", BENCHMARK)


@pytest.fixture
def qa_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)


@pytest.fixture
def small_config(tmp_path, qa_file, benchmark_file, embedded_tokenizer_dir):
    """Write a small dataset config and return its path; ``extra`` dicts deep-update it."""

    def make(extra: dict | None = None, sources: list | None = None) -> Path:
        data = {
            "name": "tiny",
            "sources": sources
            or [
                {
                    "type": "records",
                    "name": "qa",
                    "path": str(qa_file),
                    "fields": {"id": "id", "question": "question", "answer": "answer"},
                }
            ],
            "validation": {"tokenizer": str(embedded_tokenizer_dir), "max_length": 256},
            "decontaminate": {"benchmark": str(benchmark_file)},
            "formatting": {"system_prompt": "You are a helpful operations assistant."},
            "split": {"validation": 0.2, "test": 0.2, "salt": "t"},
        }
        for key, value in (extra or {}).items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key].update(value)
            else:
                data[key] = value
        path = tmp_path / "data.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path

    return make
