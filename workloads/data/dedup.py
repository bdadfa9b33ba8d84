"""Stage 5, deduplicate: exact (normalised hash) and near-duplicate (MinHash LSH).

Records are visited in their stable order (config source order, then file order); the first of
a group is kept, later copies are rejected with the id they duplicate.

- Exact: the content (turns without the system prompt, or the text) lower-cased with
  punctuation and whitespace runs removed, hashed with xxh64.
- Near: word (or character) n-gram shingles, MinHash signatures and datasketch's
  :class:`~datasketch.MinHashLSH` index. A candidate from the index is confirmed only when the
  estimated Jaccard similarity of the two signatures reaches ``threshold``, so the banding's
  false positives never remove a record.

Signatures are computed for a whole batch at once with numpy (hash every shingle, apply the
permutations, take the minimum per record) instead of one :class:`~datasketch.MinHash` object
per record; the values are bit-for-bit those of datasketch's default ``affine32`` scheme with
an identity hash function over the 32-bit shingle hashes, and they go into the index as
:class:`~datasketch.LeanMinHash` objects. ``tests/data/test_dedup.py`` checks the equality.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

from workloads.data.config import DedupConfig
from workloads.data.records import StageResult, content_text, group_of, make_reject

_WORD = re.compile(r"\w+")
_MIX = np.uint32(0x9E3779B1)  # golden-ratio multiplier: order-sensitive n-gram combination
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))


def exact_key(text: str) -> int:
    """Hash of the text with case, punctuation and spacing differences removed."""
    return xxhash.xxh64_intdigest(" ".join(_WORD.findall(text.lower())).encode())


_WORD_HASHES: dict[str, int] = {}
_WORD_CACHE_LIMIT = 2_000_000


def _word_hashes(words: list[str]) -> np.ndarray:
    """xxh32 of each word, through a cache: word frequencies are Zipf-shaped, so most
    lookups hit, and ``map(dict.__getitem__)`` runs in C."""
    cache = _WORD_HASHES
    if len(cache) > _WORD_CACHE_LIMIT:
        cache.clear()
    for word in words:
        if word not in cache:
            cache[word] = xxhash.xxh32_intdigest(word.encode())
    return np.fromiter(map(cache.__getitem__, words), dtype=np.uint32, count=len(words))


def shingle_hashes(text: str, kind: str = "word", size: int = 1) -> np.ndarray:
    """32-bit hashes of the text's shingles: word n-grams (``size`` 1 is the set of words) or
    character n-grams. Values may repeat; a repeat never changes a minimum."""
    text = text.lower()
    if kind == "char":
        flat = " ".join(_WORD.findall(text))
        if len(flat) <= size:
            return np.array([xxhash.xxh32_intdigest(flat.encode())], dtype=np.uint32)
        return np.fromiter(
            (
                xxhash.xxh32_intdigest(flat[i : i + size].encode())
                for i in range(len(flat) - size + 1)
            ),
            dtype=np.uint32,
        )
    words = _WORD.findall(text)
    if size == 1:
        return _word_hashes(list(set(words)))
    hashes = _word_hashes(words)
    if len(hashes) <= size:
        combined = np.uint32(0)
        with np.errstate(over="ignore"):
            for value in hashes:
                combined = combined * _MIX + value
        return np.array([combined], dtype=np.uint32)
    grams = hashes[: len(hashes) - size + 1].copy()
    with np.errstate(over="ignore"):
        for offset in range(1, size):
            grams = grams * _MIX + hashes[offset : len(hashes) - size + 1 + offset]
    return grams


def _fmix32(hv: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2 = _FMIX32
    hv = hv ^ (hv >> s1)
    hv = hv * m1
    hv = hv ^ (hv >> s2)
    hv = hv * m2
    return hv ^ (hv >> s1)


class SignatureBuilder:
    """Batched MinHash signatures with datasketch's ``affine32`` permutations."""

    def __init__(self, num_perm: int = 128, seed: int = 1):
        from datasketch import MinHash

        self.num_perm = num_perm
        self.seed = seed
        a, b = MinHash(num_perm=num_perm, seed=seed).permutations
        self.a = np.asarray(a, dtype=np.uint32)
        self.b = np.asarray(b, dtype=np.uint32)

    def signatures(self, shingles: list[np.ndarray], chunk: int = 8192) -> np.ndarray:
        """``(len(shingles), num_perm)`` uint32 minimum hash values.

        Records are processed in blocks of about ``chunk`` shingles, laid out permutation-major
        so the per-record minimum (``np.minimum.reduceat``) runs over contiguous memory and the
        block stays in cache.
        """
        out = np.empty((len(shingles), self.num_perm), dtype=np.uint32)
        parts = [s if len(s) else np.zeros(1, np.uint32) for s in shingles]
        lengths = np.array([len(s) for s in parts], dtype=np.int64)
        a = self.a[:, None]
        b = self.b[:, None]
        start = 0
        with np.errstate(over="ignore"):
            while start < len(parts):
                end = start + 1
                total = lengths[start]
                while end < len(parts) and total + lengths[end] <= chunk:
                    total += lengths[end]
                    end += 1
                flat = _fmix32(np.concatenate(parts[start:end]))
                offsets = np.concatenate(([0], np.cumsum(lengths[start:end])[:-1]))
                phv = a * flat[None, :] + b
                out[start:end] = np.minimum.reduceat(phv, offsets, axis=1).T
                start = end
        return out

    def lean(self, row: np.ndarray):
        from datasketch import LeanMinHash

        return LeanMinHash(seed=self.seed, hashvalues=row, scheme="affine32")


@dataclass
class Duplicate:
    index: int
    of: int
    kind: str  # "exact" or "near"
    similarity: float


def find_duplicates(
    texts: Iterable[str], cfg: DedupConfig, *, progress: bool = False
) -> list[Duplicate]:
    """Duplicates among ``texts`` in order: each later copy points at the first kept text."""
    from datasketch import MinHashLSH
    from tqdm import tqdm

    texts = list(texts)
    duplicates: list[Duplicate] = []
    first_by_key: dict[int, int] = {}
    survivors: list[int] = []
    for index, text in enumerate(texts):
        if cfg.exact:
            key = exact_key(text)
            if key in first_by_key:
                duplicates.append(Duplicate(index, first_by_key[key], "exact", 1.0))
                continue
            first_by_key[key] = index
        survivors.append(index)
    if not cfg.near or not survivors:
        return duplicates

    builder = SignatureBuilder(cfg.num_perm, cfg.seed)
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    kept: dict[int, np.ndarray] = {}
    batch = 4096
    bar = tqdm(total=len(survivors), desc="dedup", unit="rec", disable=not progress)
    for start in range(0, len(survivors), batch):
        ids = survivors[start : start + batch]
        sigs = builder.signatures(
            [shingle_hashes(texts[i], cfg.shingle, cfg.shingle_size) for i in ids]
        )
        for index, sig in zip(ids, sigs, strict=True):
            lean = builder.lean(sig)
            best: tuple[float, int] | None = None
            for other in lsh.query(lean):
                similarity = float(np.count_nonzero(kept[other] == sig)) / cfg.num_perm
                if similarity >= cfg.threshold and (best is None or other < best[1]):
                    best = (similarity, other)
            if best is not None:
                duplicates.append(Duplicate(index, best[1], "near", best[0]))
            else:
                lsh.insert(index, lean, check_duplication=False)
                kept[index] = sig
        bar.update(len(ids))
    bar.close()
    duplicates.sort(key=lambda d: d.index)
    return duplicates


def dedup(
    records: list[dict[str, Any]], cfg: DedupConfig, *, progress: bool = False
) -> StageResult:
    # Rephrasings share their original's answer, so they are not compared: they go with it.
    primary = [i for i, r in enumerate(records) if group_of(r) == r["id"]]
    found = find_duplicates([content_text(records[i]) for i in primary], cfg, progress=progress)
    duplicates = [Duplicate(primary[d.index], primary[d.of], d.kind, d.similarity) for d in found]
    by_group = {records[d.index]["id"]: d for d in duplicates}
    for index, record in enumerate(records):
        d = by_group.get(group_of(record))
        if d is not None and index != d.index:
            duplicates.append(Duplicate(index, d.of, d.kind, d.similarity))
    duplicates.sort(key=lambda d: d.index)
    dropped = {d.index: d for d in duplicates}
    result = StageResult([r for i, r in enumerate(records) if i not in dropped])
    for d in duplicates:
        kept = records[d.of]
        result.rejects.append(
            make_reject(
                "dedup",
                records[d.index],
                f"{d.kind}_duplicate",
                f"duplicate of {kept['id']} (similarity {d.similarity:.2f})",
                duplicate_of=kept["id"],
                similarity=round(d.similarity, 3),
            )
        )
    result.stats = {
        "exact_duplicates": sum(d.kind == "exact" for d in duplicates),
        "near_duplicates": sum(d.kind == "near" for d in duplicates),
        "threshold": cfg.threshold,
        "num_perm": cfg.num_perm,
        "shingle": f"{cfg.shingle}-{cfg.shingle_size}",
    }
    return result
