"""Benchmark GeoMeld's embedding index: approximate search over millions of vectors against exact search.

The collection is a seeded Gaussian mixture of L2-normalised vectors (a few thousand centres, per-centre
spread drawn from a range), generated in chunks so memory stays bounded; the queries are held-out draws
from the same mixture, never added to the index. Ground truth is exact top-k computed chunk by chunk with
numpy while the index is built, so no full float32 copy of the collection is held for it.

For the kind ``space_app.index.choose_kind`` picks at this size (and any ``--kinds`` alternatives) it
reports build time (training + adding, generation excluded), the FAISS index's serialised bytes, the
process RSS growth while building the whole ``EmbeddingIndex`` (index + id mapping), p50/p99 latency of
single-query ``EmbeddingIndex.search`` calls, and recall@k against exact search, optionally for several
``nprobe`` values. Exact search (``IndexFlatIP``) p50/p99 single-query latency over the same vectors is
measured in the same run and the ratio printed. Goal (issue 6): p50 <= 10 ms, recall@10 >= 0.95, <= 2 GB.

Prints a table and writes JSON (default benchmarks/results/index.json).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from space_app.index import EmbeddingIndex, choose_kind, set_num_threads


@dataclass(frozen=True)
class Mixture:
    """A seeded Gaussian mixture on the unit sphere: the stand-in for a collection of GeoMeld embeddings."""

    centres: np.ndarray  # (num_centres, dim), unit norm
    spreads: np.ndarray  # (num_centres,), noise norm relative to the unit centre
    seed: int

    @classmethod
    def make(cls, dim: int, num_centres: int, spread: tuple[float, float], seed: int) -> Mixture:
        rng = np.random.default_rng([seed, 0])
        centres = rng.standard_normal((num_centres, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        spreads = rng.uniform(spread[0], spread[1], num_centres).astype(np.float32)
        return cls(centres, spreads, seed)

    def sample(self, count: int, stream: int) -> np.ndarray:
        """``count`` unit vectors from random stream ``stream`` (the same stream always gives the same draw)."""
        rng = np.random.default_rng([self.seed, 1, stream])
        dim = self.centres.shape[1]
        labels = rng.integers(0, len(self.centres), count)
        # Noise of expected norm `spread` around the centre: N(0, spread^2 / dim) per coordinate.
        noise = rng.standard_normal((count, dim), dtype=np.float32)
        noise *= (self.spreads[labels] / np.sqrt(dim))[:, None]
        vectors = self.centres[labels] + noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    def chunks(self, n: int, chunk: int) -> Iterator[tuple[int, np.ndarray]]:
        """The collection as (first row, vectors) chunks; streams 1.. (stream 0 is the held-out queries)."""
        for k, start in enumerate(range(0, n, chunk)):
            yield start, self.sample(min(chunk, n - start), stream=k + 1)


def rss_bytes() -> int:
    """Resident set size of this process from /proc (Linux), the memory other engineers' jobs compete for."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def merge_topk(
    best_s: np.ndarray, best_i: np.ndarray, scores: np.ndarray, offset: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge a chunk's (queries, chunk) score matrix into the running exact top-k."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    cand_s = np.concatenate([best_s, np.take_along_axis(scores, part, axis=1)], axis=1)
    cand_i = np.concatenate([best_i, part + offset], axis=1)
    order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(cand_s, order, axis=1), np.take_along_axis(cand_i, order, axis=1)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k that the approximate top-k contains."""
    k = truth.shape[1]
    hits = [len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits) / k)


def single_query_latencies(
    search: Callable[[np.ndarray], object], queries: np.ndarray, warmup: int = 5
) -> np.ndarray:
    """Seconds per one-query call, as the Space issues them; a few warm-up calls are not counted."""
    for q in queries[:warmup]:
        search(q[None, :])
    times = np.empty(len(queries))
    for j, q in enumerate(queries):
        t0 = time.perf_counter()
        search(q[None, :])
        times[j] = time.perf_counter() - t0
    return times


def index_bytes(index: faiss.Index) -> int:
    """Serialised size: the codes, ids and centroids, without allocator slack (RSS growth shows that)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index.faiss")
        faiss.write_index(index, path)
        return os.path.getsize(path)


def build(
    kind: str, args: argparse.Namespace, mixture: Mixture, queries: np.ndarray | None
) -> tuple[EmbeddingIndex, dict, tuple[np.ndarray, np.ndarray] | None]:
    """Build one index chunk by chunk; with ``queries``, accumulate exact top-k over the same chunks."""
    gc.collect()
    rss0 = rss_bytes()
    index = EmbeddingIndex(
        args.dim, args.n, kind=kind, memory_budget_bytes=int(args.memory_budget_gb * 1024**3), seed=args.seed
    )
    build_s = 0.0
    truth = None
    if queries is not None:
        truth = (
            np.full((len(queries), args.k), -np.inf, np.float32),
            np.zeros((len(queries), args.k), np.int64),
        )
    for start, vectors in mixture.chunks(args.n, args.chunk):
        ids = [f"tile{row:08d}" for row in range(start, start + len(vectors))]
        t0 = time.perf_counter()
        index.add(vectors, ids)
        build_s += time.perf_counter() - t0
        if truth is not None:
            truth = merge_topk(*truth, queries @ vectors.T, start, args.k)
        done = start + len(vectors)
        del vectors, ids
        print(f"  [{index.kind}] {done:>9,} / {args.n:,} added, {build_s:.1f} s", flush=True)
    gc.collect()
    stats = {
        "kind": index.kind,
        "params": index.params,
        "build_s": build_s,
        "index_bytes": index_bytes(index.index),
        "rss_growth_bytes": rss_bytes() - rss0,
    }
    return index, stats, truth


def measure(
    index: EmbeddingIndex, queries: np.ndarray, truth: np.ndarray, k: int, nprobe: int | None
) -> dict:
    found = index.search(queries, k, nprobe=nprobe).rows
    times = single_query_latencies(lambda q: index.search(q, k, nprobe=nprobe), queries)
    return {
        "nprobe": nprobe if nprobe is not None else index.params.get("nprobe"),
        "recall_at_k": recall_at_k(found, truth),
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
    }


def exact_latency(args: argparse.Namespace, mixture: Mixture, queries: np.ndarray, truth: np.ndarray) -> dict:
    """Exact IndexFlatIP over the same collection: latency, and a check that it agrees with the ground truth."""
    gc.collect()
    rss0 = rss_bytes()
    flat = faiss.IndexFlatIP(args.dim)
    t0 = time.perf_counter()
    for _, vectors in mixture.chunks(args.n, args.chunk):
        flat.add(vectors)
    build_s = time.perf_counter() - t0
    rss_growth = rss_bytes() - rss0
    sample = queries[: args.exact_queries]
    _, rows = flat.search(sample, args.k)
    times = single_query_latencies(lambda q: flat.search(q, args.k), sample)
    return {
        "kind": "exact (IndexFlatIP)",
        "build_s": build_s,
        "index_bytes": flat.ntotal * args.dim * 4,
        "rss_growth_bytes": rss_growth,
        "queries_timed": len(sample),
        "recall_at_k": recall_at_k(rows, truth[: len(sample)]),
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
    }


def print_table(rows: list[dict], k: int) -> None:
    header = f"{'index':<22}{'nprobe':>7}{'build s':>9}{'index MB':>10}{'RSS+ MB':>9}{'p50 ms':>8}{'p99 ms':>8}{f'R@{k}':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        nprobe = "" if r.get("nprobe") is None else str(r["nprobe"])
        print(
            f"{r['kind']:<22}{nprobe:>7}{r['build_s']:>9.1f}{r['index_bytes'] / 1e6:>10.0f}"
            f"{r['rss_growth_bytes'] / 1e6:>9.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['recall_at_k']:>7.3f}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2_500_000, help="collection size (default 2.5M)")
    p.add_argument("--dim", type=int, default=256, help="embedding width (GeoMeld's projection width)")
    p.add_argument("--centres", type=int, default=4096, help="mixture components")
    p.add_argument("--spread", type=float, nargs=2, default=(0.5, 1.0), help="per-centre noise norm range")
    p.add_argument("--queries", type=int, default=500, help="held-out queries for recall and latency")
    p.add_argument(
        "--exact-queries", type=int, default=100, help="queries timed on exact search (it is slow)"
    )
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="FAISS OpenMP threads")
    p.add_argument("--chunk", type=int, default=250_000, help="vectors generated and added per step")
    p.add_argument("--memory-budget-gb", type=float, default=2.0)
    p.add_argument(
        "--kinds", default="auto", help="comma list: auto and/or ivf_fp16, ivf_sq8, ivf_pq, hnsw_sq8, flat"
    )
    p.add_argument("--nprobe", default="", help="comma list of extra nprobe values to sweep on IVF indexes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/index.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_num_threads(args.threads)
    mixture = Mixture.make(args.dim, args.centres, tuple(args.spread), args.seed)
    queries = mixture.sample(args.queries, stream=0)
    auto = choose_kind(args.n, args.dim, int(args.memory_budget_gb * 1024**3))
    kinds = [auto["kind"] if kind == "auto" else kind for kind in args.kinds.split(",")]
    rows: list[dict] = []
    truth = None
    for kind in dict.fromkeys(kinds):
        index, stats, new_truth = build(kind, args, mixture, queries if truth is None else None)
        truth = new_truth[1] if new_truth is not None else truth
        sweep = [None] + ([int(v) for v in args.nprobe.split(",") if v] if kind.startswith("ivf") else [])
        for nprobe in sweep:
            rows.append(
                {**stats, **measure(index, queries, truth, args.k, nprobe), "auto": kind == auto["kind"]}
            )
        del index
    exact = exact_latency(args, mixture, queries, truth)
    rows.append(exact)
    print_table(rows, args.k)
    chosen = next(r for r in rows if r.get("auto"))
    ratio = exact["p50_ms"] / chosen["p50_ms"]
    print(
        f"\nexact / {chosen['kind']} p50 latency: {ratio:.1f}x (n={args.n:,}, dim={args.dim}, threads={args.threads})"
    )
    goal = (
        chosen["p50_ms"] <= 10 and chosen["recall_at_k"] >= 0.95 and chosen["rss_growth_bytes"] <= 2 * 1024**3
    )
    print(f"goal (p50 <= 10 ms, R@{args.k} >= 0.95, RSS growth <= 2 GiB): {'met' if goal else 'NOT met'}")
    result = {
        "benchmark": "index",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "auto_choice": auto,
        "results": rows,
        "exact_over_auto_p50": ratio,
        "goal_met": goal,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "faiss": faiss.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
