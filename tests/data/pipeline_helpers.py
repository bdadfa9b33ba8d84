"""Data shared by the dataset pipeline tests (a module, so test files can import it)."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"

BENCHMARK = [
    {
        "id": "b-1",
        "question": "How do you roll back a Helm release to its previous revision?",
        "reference": "Run helm rollback with the release name and the revision number; helm "
        "history lists the revisions of a release.",
        "key_facts": ["helm rollback", "helm history"],
        "category": "helm",
        "difficulty": "easy",
    },
    {
        "id": "b-2",
        "question": "What does terraform plan -detailed-exitcode return when there is drift?",
        "reference": "It exits with code 2 when the plan has changes, 0 when there are none, "
        "and 1 on error, which lets CI detect drift.",
        "key_facts": ["exit code 2", "drift"],
        "category": "terraform",
        "difficulty": "medium",
    },
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


QA_ROWS = [
    {
        "id": "q1",
        "question": "Why is my pod stuck in CrashLoopBackOff?",
        "answer": "The container keeps exiting. Read `kubectl logs POD --previous` for the last "
        "crash and check the liveness probe and the command.",
        "category": "kubernetes",
    },
    {
        "id": "q2",
        "question": "How do I give a CI job AWS access without static keys?",
        "answer": "Use OIDC federation: the job exchanges its identity token for a role with "
        "sts:AssumeRoleWithWebIdentity. Never store AKIAIOSFODNN7EXAMPLE style keys in CI.",
        "category": "mlops",
    },
    {
        "id": "q3",
        "question": "How can a Deployment be rolled out without downtime?",
        "answer": "Use the RollingUpdate strategy with maxUnavailable 0 and a readiness probe, so "
        "old pods stay until new ones are ready.",
        "category": "kubernetes",
    },
    {
        "id": "q4",
        "question": "How can I roll out a Deployment with zero downtime?",
        "answer": "Use the RollingUpdate strategy with maxUnavailable set to 0 and a readiness "
        "probe, so the old pods stay until the new ones are ready.",
        "category": "kubernetes",
    },
    {
        "id": "q5",
        "question": "How do you roll back a Helm release to its previous revision?",
        "answer": "Run helm rollback with the release name and the revision number; helm history "
        "lists the revisions of a release.",
        "category": "helm",
    },
    {
        "id": "q6",
        "question": "Who do I contact about the shared cluster?",
        "answer": "Write to platform-team@corp.example.com or page the on-call with the bearer "
        "token Bearer abcdefghijklmnop1234 from the vault.",
        "category": "kubernetes",
    },
]
