"""Benchmark `geomeld demo` end to end against its budget: at most 3 minutes on 2 cores.

Runs `geomeld demo --no-serve` in a fresh process pinned to 2 CPUs (``taskset``/``sched_setaffinity`` where
available; torch uses 2 threads), and reports its wall time, the ratio to the 180 s budget, and the
held-out comparison table from its results.json (value, baseline, ratio, beats). The machine may be shared:
the load average at start is recorded next to the time.

Prints a table and writes JSON (default benchmarks/results/demo.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 180.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="pretraining steps (default: the demo's)")
    parser.add_argument("--out", default="benchmarks/results/demo.json", help="JSON output")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="geomeld-bench-demo-"))
    command = [sys.executable, "-m", "modeling_geomeld.cli", "demo", "--out", str(work / "demo"), "--no-serve"]
    if args.steps:
        command += ["--steps", str(args.steps)]
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    cpus = sorted(os.sched_getaffinity(0))[:2] if hasattr(os, "sched_getaffinity") else []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"geomeld demo failed ({done.returncode}):\n{done.stderr[-3000:]}")
    results = json.loads((work / "demo" / "results.json").read_text())
    print(f"\n`geomeld demo` on CPUs {cpus} (load average {load:.1f} at start)")
    print(f"{'run':<28}{'wall s':>9}{'budget s':>10}{'ratio':>8}")
    print(f"{'geomeld demo --no-serve':<28}{wall:>9.1f}{BUDGET_S:>10.0f}{wall / BUDGET_S:>8.2f}")
    print(f"\n{'held-out metric':<40}{'value':>9}{'baseline':>10}{'ratio':>8}  beats")
    for name, c in results["comparisons"].items():
        ratio = f"{c['ratio']:.3f}" if "ratio" in c else ""
        print(f"{name:<40}{c['value']:>9.4f}{c['baseline']:>10.4f}{ratio:>8}  {'yes' if c['beats_baseline'] else 'no'}")
    record = {
        "machine": {"platform": platform.platform(), "cpus_used": cpus, "load_average_at_start": load, "python": platform.python_version()},
        "wall_s": wall, "budget_s": BUDGET_S, "ratio_to_budget": wall / BUDGET_S, "steps": results["steps"],
        "demo_seconds_reported": results["seconds"], "comparisons": results["comparisons"],
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
