"""Dataset build throughput from local files: anchors per second in-process, with 1 and with 2 local Dask
worker processes, in the same run; the speed-up from 1 to 2 workers (goal >= 1.7x).

Anchors are the five real TerraMesh locations repeated under distinct anchor ids (same files, so every anchor
does the full alignment, signal and writing work). Worker start-up (importing torch via the registry's
package) is part of a real build, so it is timed too, and reported apart.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "terramind-samples"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="terramind-samples folder")
    parser.add_argument("--anchors", type=int, default=80, help="anchors to build (default 80)")
    parser.add_argument("--shard-size", type=int, default=8, help="anchors per shard (default 8)")
    parser.add_argument("--out", default="benchmarks/results/build.json", help="JSON output path")
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    from dataset_scripts.build import BuildOptions, build
    from dataset_scripts.terramind import LOCATIONS, write_terramind_manifest

    tmp = Path(tempfile.mkdtemp())
    copies = max(1, args.anchors // len(LOCATIONS))
    manifest = write_terramind_manifest(args.root, tmp / "manifest.csv", copies=copies)
    args.anchors = copies * len(LOCATIONS)
    results = {}
    for workers in (0, 1, 2):
        t0 = time.perf_counter()
        startup = 0.0
        if workers:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
            client.run(lambda: __import__("dataset_scripts.build"))  # what every worker pays once
            startup = time.perf_counter() - t0
            options = BuildOptions(shard_size=args.shard_size, scheduler=cluster.scheduler_address, progress=False)
        else:
            options = BuildOptions(shard_size=args.shard_size, workers=0, progress=False)
        t1 = time.perf_counter()
        report = build(f"manifest:{manifest}", tmp / f"out{workers}", options)
        seconds = time.perf_counter() - t1
        if workers:
            client.close()
            cluster.close()
        results[str(workers)] = {
            "workers": workers,
            "built": report.built,
            "build_s": seconds,
            "startup_s": startup,
            "anchors_per_s": report.built / seconds,
            "anchors_per_s_per_worker": report.built / seconds / max(workers, 1),
            "anchors_per_s_with_startup": report.built / (seconds + startup),
        }
    speedup = results["2"]["anchors_per_s"] / results["1"]["anchors_per_s"]
    speedup_all = results["2"]["anchors_per_s_with_startup"] / results["1"]["anchors_per_s_with_startup"]
    print(f"\nbuild of {args.anchors} anchors from local files (shard size {args.shard_size})")
    print(f"{'workers':18s} {'build s':>8s} {'start-up s':>10s} {'anchors/s':>10s} {'per worker':>10s}")
    for key, r in results.items():
        name = "in-process" if key == "0" else f"{key} Dask process"
        print(f"{name:18s} {r['build_s']:8.1f} {r['startup_s']:10.1f} {r['anchors_per_s']:10.2f} {r['anchors_per_s_per_worker']:10.2f}")
    print(f"speed-up 1 -> 2 workers: {speedup:.2f}x after start-up, {speedup_all:.2f}x including it (goal >= 1.7x)")
    out = {"settings": vars(args), "results": results, "speedup_1_to_2": speedup, "speedup_1_to_2_with_startup": speedup_all, "goal": 1.7}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
