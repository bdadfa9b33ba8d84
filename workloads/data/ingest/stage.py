"""Stage 1, ingest: turn every source named in the config into records.

Sources, one module each: chat/Q&A rows (:mod:`.rows`; JSONL, JSON, CSV, Parquet, fields
mapped by config), a GitHub issues export (:mod:`.github`), a folder of Markdown/text documents
(:mod:`.docs`) and the Kubernetes API reference (:mod:`.k8s_api`). How bad input is handled is
in :mod:`.context`.
"""

from __future__ import annotations

from tqdm import tqdm

from workloads.data.config import DataConfig, DocsSource, GitHubSource, K8sApiSource, RecordsSource
from workloads.data.ingest.docs import ingest_docs
from workloads.data.ingest.github import ingest_github
from workloads.data.ingest.k8s_api import ingest_k8s_api
from workloads.data.ingest.rows import ingest_records
from workloads.data.records import StageResult, make_reject

READERS = {
    RecordsSource: ingest_records,
    GitHubSource: ingest_github,
    DocsSource: ingest_docs,
    K8sApiSource: ingest_k8s_api,
}


def ingest(config: DataConfig, *, progress: bool = False) -> StageResult:
    """Read every source in config order; ids are unique (a repeated id is rejected)."""
    result = StageResult([], [], {"sources": {}})
    seen_ids: set[str] = set()
    for src in tqdm(config.sources, desc="ingest", unit="source", disable=not progress):
        part = READERS[type(src)](src, config.on_error)
        kept = []
        for record in part.records:
            if record["id"] in seen_ids:
                part.rejects.append(
                    make_reject("ingest", record, "duplicate_id", f"id {record['id']} seen before")
                )
                continue
            seen_ids.add(record["id"])
            kept.append(record)
        for reject in part.rejects:
            reject["stage"] = "ingest"
            reject.setdefault("source_name", src.name)
        result.records.extend(kept)
        result.rejects.extend(part.rejects)
        result.stats["sources"][src.name] = {
            "type": src.type,
            **part.stats,
            "records": len(kept),
            "rejected": len(part.rejects),
        }
    return result
