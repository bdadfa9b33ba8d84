"""Benchmark of the dataset dedup stage: throughput, recall and precision on planted duplicates.

Generates N records (default 100,000): mutually unrelated originals drawn from a Zipf-shaped
vocabulary, plus planted near-duplicates, each a copy of an original with paraphrase-like edits
(word substitutions by a fixed synonym table, deletions, insertions, adjacent swaps, case and
punctuation changes; 2-10% of the words edited) or an exact copy with different spacing and case.
The project's dedup stage (`workloads.data.dedup.find_duplicates`, with the settings of
configs/data/default.yaml unless overridden) runs over them in one pass; it is compared, in
the same run, with two named baselines:

- ``exact-only``: the same stage with near-duplicate detection off (normalised hash only);
- ``pairwise-minhash``: datasketch MinHash objects compared pair by pair without an LSH index,
  on a subsample (its cost grows with the square of N), at the same threshold.

Prints records/s, recall and precision for each, the ratios, and whether the goals
(>= 5,000 records/s, recall >= 0.95) were met. Usage:

    python scripts/bench_data.py [--records 100000] [--dup-share 0.2] [--set dedup.threshold=0.6]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_RATE = 5000.0
GOAL_RECALL = 0.95


def make_vocabulary(rng: random.Random, size: int) -> list[str]:
    words = set()
    while len(words) < size:
        length = max(2, min(12, int(rng.gauss(6, 2))))
        words.add("".join(rng.choices(string.ascii_lowercase, k=length)))
    return sorted(words)


def generate(n: int, dup_share: float, seed: int) -> tuple[list[str], list[int]]:
    """Texts and, per text, the id of the original it copies (its own index for originals)."""
    rng = random.Random(seed)
    vocab = make_vocabulary(rng, 30000)
    weights = [1.0 / (rank + 1) ** 1.05 for rank in range(len(vocab))]
    cum_weights = list(itertools.accumulate(weights))
    synonyms = {w: rng.choice(vocab) for w in vocab[:3000]}  # common words get "synonyms"
    n_dups = int(n * dup_share)
    n_orig = n - n_dups
    originals = []
    for _ in range(n_orig):
        words = rng.choices(vocab, cum_weights=cum_weights, k=rng.randint(30, 90))
        sentence = []
        for i, word in enumerate(words):
            sentence.append(word.capitalize() if i == 0 or sentence[-1].endswith(".") else word)
            if rng.random() < 0.08:
                sentence[-1] += rng.choice([".", ",", ";"])
        originals.append(sentence)

    def paraphrase(words: list[str]) -> str:
        words = list(words)
        edits = max(1, round(len(words) * rng.uniform(0.02, 0.10)))
        for _ in range(edits):
            op = rng.random()
            i = rng.randrange(len(words))
            if op < 0.45:
                base = words[i].strip(".,;").lower()
                words[i] = synonyms.get(base, rng.choice(vocab))
            elif op < 0.65 and len(words) > 5:
                del words[i]
            elif op < 0.85:
                words.insert(i, rng.choices(vocab[:200], k=1)[0])
            elif i + 1 < len(words):
                words[i], words[i + 1] = words[i + 1], words[i]
        text = " ".join(words)
        if rng.random() < 0.3:
            text = text.lower()
        return text

    texts = [" ".join(w) for w in originals]
    cluster = list(range(n_orig))
    for _ in range(n_dups):
        source = rng.randrange(n_orig)
        if rng.random() < 0.15:
            text = "  ".join(originals[source]).upper()  # exact up to spacing and case
        else:
            text = paraphrase(originals[source])
        texts.append(text)
        cluster.append(source)
    order = list(range(n))
    rng.shuffle(order)
    return [texts[i] for i in order], [cluster[i] for i in order]


def timed(func, *args, **kwargs):
    """``(result, wall seconds, CPU seconds of this process)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def score(duplicates, clusters: list[int]) -> tuple[float, float, int]:
    """Recall over planted copies and precision over flagged records."""
    sizes: dict[int, int] = {}
    for c in clusters:
        sizes[c] = sizes.get(c, 0) + 1
    expected = sum(size - 1 for size in sizes.values())
    flagged = len(duplicates)
    correct = sum(clusters[d.index] == clusters[d.of] for d in duplicates)
    recall = correct / expected if expected else 1.0
    precision = correct / flagged if flagged else 1.0
    return recall, precision, flagged


def pairwise_baseline(texts: list[str], cfg) -> list:
    """Every text against every kept text with datasketch MinHash objects, no LSH index."""
    from datasketch import MinHash

    from workloads.data.dedup import Duplicate, exact_key, shingle_hashes

    kept: list[tuple[int, MinHash]] = []
    seen: dict[int, int] = {}
    found = []
    for index, text in enumerate(texts):
        key = exact_key(text)
        if key in seen:
            found.append(Duplicate(index, seen[key], "exact", 1.0))
            continue
        seen[key] = index
        mh = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=lambda x: x)
        mh.update_batch([int(v) for v in shingle_hashes(text, cfg.shingle, cfg.shingle_size)])
        match = next((i for i, other in kept if mh.jaccard(other) >= cfg.threshold), None)
        if match is None:
            kept.append((index, mh))
        else:
            found.append(Duplicate(index, match, "near", 0.0))
    return found


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--dup-share", type=float, default=0.2)
    parser.add_argument("--pairwise-sample", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    return parser.parse_args()


def run_methods(texts: list[str], clusters: list[int], cfg, args: argparse.Namespace) -> list:
    """One row per method: ``(name, records, wall s, CPU s, recall, precision, flagged)``."""
    from workloads.data.dedup import find_duplicates

    rows = []
    dups, wall, cpu = timed(find_duplicates, texts, cfg, progress=True)
    rows.append(("minhash-lsh (project)", len(texts), wall, cpu, *score(dups, clusters)))
    exact_cfg = cfg.model_copy(update={"near": False})
    dups, wall, cpu = timed(find_duplicates, texts, exact_cfg)
    rows.append(("exact-only (baseline)", len(texts), wall, cpu, *score(dups, clusters)))
    sample, sample_clusters = generate(args.pairwise_sample, args.dup_share, args.seed + 1)
    dups, wall, cpu = timed(pairwise_baseline, sample, cfg)
    rows.append(
        ("pairwise-minhash (baseline)", len(sample), wall, cpu, *score(dups, sample_clusters))
    )
    dups, wall, cpu = timed(find_duplicates, sample, cfg)
    rows.append(("minhash-lsh, same sample", len(sample), wall, cpu, *score(dups, sample_clusters)))
    return rows


def print_table(rows: list) -> None:
    print()
    print(
        f"{'method':<29}{'records':>9}{'wall s':>8}{'rec/s':>9}{'cpu s':>8}{'rec/cpu-s':>10}"
        f"{'recall':>8}{'precision':>10}{'flagged':>9}"
    )
    for name, n, wall, cpu, recall, precision, flagged in rows:
        print(
            f"{name:<29}{n:>9,}{wall:>8.2f}{n / wall:>9,.0f}{cpu:>8.2f}{n / cpu:>10,.0f}"
            f"{recall:>8.3f}{precision:>10.3f}{flagged:>9,}"
        )


def print_ratios(rows: list) -> None:
    """The project's stage against each baseline, the machine's load, and the goals."""
    project, exact, pairwise, lsh_sample = rows
    rate = project[1] / project[2]
    cpu_rate = project[1] / project[3]
    load = os.getloadavg()[0]
    print()
    print(
        f"recall vs exact-only:   {project[4]:.3f} vs {exact[4]:.3f} "
        f"({project[4] / max(exact[4], 1e-9):.2f}x)"
    )
    print(
        f"speed vs pairwise:      {pairwise[3] / max(lsh_sample[3], 1e-9):.1f}x less CPU on "
        f"{pairwise[1]:,} records (recall {lsh_sample[4]:.3f} vs {pairwise[4]:.3f})"
    )
    print(f"cost vs exact-only:     {project[3] / max(exact[3], 1e-9):.1f}x the CPU time")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load:.1f} during the run"
        + (
            " (shared: wall-clock rates are lower than the CPU-time rates)"
            if load > (os.cpu_count() or 1)
            else ""
        )
    )
    met_rate = rate >= GOAL_RATE
    met_recall = project[4] >= GOAL_RECALL
    print(
        f"goal >= {GOAL_RATE:,.0f} records/s: {'met' if met_rate else 'MISSED'} "
        f"(wall {rate:,.0f}/s, CPU {cpu_rate:,.0f}/s)"
    )
    print(f"goal recall >= {GOAL_RECALL}: {'met' if met_recall else 'MISSED'} ({project[4]:.3f})")


def main() -> int:
    from workloads.data.config import load_data_config

    args = parse_args()
    cfg = load_data_config(overrides=args.overrides).dedup
    print(
        f"dedup settings: threshold {cfg.threshold}, num_perm {cfg.num_perm}, "
        f"{cfg.shingle} {cfg.shingle_size}-gram shingles"
    )
    (texts, clusters), wall, _ = timed(generate, args.records, args.dup_share, args.seed)
    print(f"generated {len(texts):,} records in {wall:.1f} s")
    rows = run_methods(texts, clusters, cfg, args)
    print_table(rows)
    print_ratios(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
