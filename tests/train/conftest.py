"""Fixtures for training tests: small dataset snapshots in the contract's on-disk format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TOPICS = [
    ("kubernetes", "Which object keeps a fixed number of pod replicas running?", "A Deployment"),
    ("kubernetes", "Which command shows why a pod is pending?", "kubectl describe pod"),
    ("terraform", "Which command previews infrastructure changes?", "terraform plan"),
    ("terraform", "Where does Terraform keep the state of a team?", "A remote backend"),
    ("helm", "Which command upgrades a Helm release?", "helm upgrade"),
    ("helm", "Which file holds a chart's default values?", "values.yaml"),
    ("gitops", "What does Argo CD compare the cluster against?", "The Git repository"),
    ("gitops", "What does a sync do in Argo CD?", "It applies Git's manifests"),
    ("mlops", "Where are model versions promoted?", "The MLflow model registry"),
    ("mlops", "Which alias marks the serving model?", "The champion alias"),
]


def chat_records(n: int, prefix: str = "r") -> list[dict]:
    records = []
    for i in range(n):
        category, question, answer = TOPICS[i % len(TOPICS)]
        variant = i // len(TOPICS)
        records.append(
            {
                "id": f"{prefix}{i}",
                "messages": [
                    {"role": "system", "content": "You are a concise cloud operations assistant."},
                    {"role": "user", "content": f"{question} (case {variant})"},
                    {"role": "assistant", "content": f"{answer}. Case {variant} noted."},
                ],
                "source": "test",
                "category": category,
                "kind": "chat",
            }
        )
    return records


def write_snapshot(root: Path, *, train: int = 24, validation: int = 6, name: str = "testset"):
    path = root / name / "snap1"
    path.mkdir(parents=True)
    splits = {
        "train": chat_records(train, "t"),
        "validation": chat_records(validation, "v"),
        "test": chat_records(2, "x"),
    }
    for split, records in splits.items():
        with open(path / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record) + "\n")
    manifest = {
        "snapshot_id": "snap1",
        "name": name,
        "counts": {k: len(v) for k, v in splits.items()},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    (root / name / "LATEST").write_text("snap1\n")
    return path


@pytest.fixture
def snapshot_dir(tmp_path) -> Path:
    return write_snapshot(tmp_path / "datasets")
