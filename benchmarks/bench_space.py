"""Benchmark the retrieval Space under load: latency of mixed requests as a browser sees them.

Starts `geomeld serve` in its own process on loopback over a checkpoint, index and dataset (default: the
outputs of `geomeld demo`), then runs the same mixed workload (text -> image searches with their thumbnails,
sample panels, image -> text, and a mistake whose answer is the status message; space_app/loadtest.py)
from 1 client (the baseline, measured in the same run) and from N concurrent clients (default 30), each
making Q requests (default 10). Reports p50 / p95 / max latency, throughput and unexpected errors, and the
p50 ratio of N clients to 1 client.

Prints a table and writes JSON (default benchmarks/results/space.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from space_app.loadtest import run_load, start_server, stop_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="outputs/demo/checkpoint", help="checkpoint folder (default: the demo's)")
    parser.add_argument("--index", default="outputs/demo/index", help="index folder (default: the demo's)")
    parser.add_argument("--dataset", default="outputs/demo/dataset", help="dataset folder (default: the demo's)")
    parser.add_argument("--clients", type=int, default=30, help="concurrent clients (default: 30)")
    parser.add_argument("--queries", type=int, default=10, help="mixed requests per client (default: 10)")
    parser.add_argument("--k", type=int, default=None, help="results per search (default: min(8, collection size))")
    parser.add_argument("--out", default="benchmarks/results/space.json", help="JSON output")
    args = parser.parse_args()
    for name in ("checkpoint", "index", "dataset"):
        if not Path(getattr(args, name)).exists():
            raise SystemExit(f"error: {name} {getattr(args, name)} does not exist; run `make demo` first or pass --{name}")
    from space_app.retrieval import load_retrieval_index

    images, _, info = load_retrieval_index(args.index)
    k = args.k or min(8, len(images))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    log = Path(tempfile.mkdtemp(prefix="geomeld-bench-space-")) / "serve.log"
    server, url = start_server(args.checkpoint, args.index, args.dataset, log=log)
    try:
        run_load(url, clients=2, queries_per_client=2, k=k)  # warm-up: model, thumbnails, connections
        single = run_load(url, clients=1, queries_per_client=args.clients * args.queries // 4, k=k).to_dict()
        loaded = run_load(url, clients=args.clients, queries_per_client=args.queries, k=k).to_dict()
    finally:
        stop_server(server)
    rows = [("1 client (baseline)", single), (f"{args.clients} concurrent clients", loaded)]
    print(f"\nSpace load over {len(images)} indexed samples ({images.kind}, {info['dim']}-d), k={k}, {os.cpu_count()} CPUs")
    print(f"{'workload':<26}{'requests':>9}{'errors':>8}{'p50 s':>9}{'p95 s':>9}{'max s':>9}{'req/s':>8}")
    for name, r in rows:
        print(f"{name:<26}{r['requests']:>9}{r['errors']:>8}{r['p50_s']:>9.3f}{r['p95_s']:>9.3f}{r['max_s']:>9.3f}{r['requests_per_s']:>8.1f}")
    ratio = loaded["p50_s"] / single["p50_s"]
    print(f"p50 under {args.clients} clients / p50 of 1 client: {ratio:.1f}x")
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "collection": {"samples": len(images), "kind": images.kind, "dim": info["dim"], "k": k},
        "single_client": single,
        "concurrent": loaded,
        "p50_ratio_concurrent_to_single": ratio,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
