"""Benchmark GeoMeld-FM inference: eager PyTorch vs onnxruntime (the `geomeld export --format onnx` graph) vs
`torch.compile`, on the released encoder (ConvNeXt V2-atto, the `paper-atto` preset: S2 in, MMEarth stem,
patch 16), dense S2 input without a valid mask.

Images/s at 112 and 256 px, batch 1 and 32, each as a ratio to eager timed in the same run; the variants of a
cell are interleaved round-robin so machine noise hits them alike. Also the largest difference of every
output against eager (the Space uses the fastest path that is exact within 1e-4). One ONNX export and one
torch.compile (dynamic shapes) serve every cell.

This machine is a 2-core CPU shared with other jobs: absolute numbers are noisy, ratios less so.
Prints a table and writes JSON (default benchmarks/results/export.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from modeling_geomeld import GeoMeldConfig, GeoMeldModel
from modeling_geomeld.export.core import export_graph
from modeling_geomeld.export.graphs import EncoderGraph


def _time(fn: Callable[[], object], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=3, help="round-robin rounds per cell (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/export.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    torch.manual_seed(0)
    config = GeoMeldConfig.from_preset("paper-atto")
    model = GeoMeldModel(config).eval()
    with torch.no_grad():  # GRN starts at zero: random values make it do work, as trained weights do
        for n, p in model.named_parameters():
            if "grn" in n:
                p.normal_(0, 0.3)
    graph = EncoderGraph(model.encoder, model.visual_projection).eval()

    tmp = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    export_graph(graph, config, tmp / "encoder.onnx", "onnx")
    export_s = time.perf_counter() - t0
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(tmp / "encoder.onnx"), opts, providers=["CPUExecutionProvider"])
    compiled = torch.compile(graph, dynamic=True)

    rows = []
    for size in args.sizes:
        for batch in args.batches:
            x = torch.randn(batch, 12, size, size)
            feed = {"sentinel2": x.numpy()}
            with torch.inference_mode():
                ref = graph(x)
            t0 = time.perf_counter()
            with torch.inference_mode():
                got_c = compiled(x)  # first call of a new shape compiles (dynamic: mostly the first cell)
            compile_s = time.perf_counter() - t0
            got_o = session.run(None, feed)
            diff = {
                "onnxruntime": max(float(np.abs(o - r.numpy()).max()) for o, r in zip(got_o, ref, strict=True)),
                "torch.compile": max(float((c - r).abs().max()) for c, r in zip(got_c, ref, strict=True)),
            }

            def eager(x: torch.Tensor = x) -> object:
                with torch.inference_mode():
                    return graph(x)

            def comp(x: torch.Tensor = x) -> object:
                with torch.inference_mode():
                    return compiled(x)

            def onnx(feed: dict = feed) -> object:
                return session.run(None, feed)

            variants: dict[str, Callable[[], object]] = {"eager": eager, "onnxruntime": onnx, "torch.compile": comp}
            for fn in variants.values():
                fn()  # warm-up
            times: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(args.rounds):
                for name, fn in variants.items():
                    times[name] += _time(fn, 1)
            med = {k: statistics.median(v) for k, v in times.items()}
            row = {
                "size": size,
                "batch": batch,
                "images_per_s": {k: batch / v for k, v in med.items()},
                "speedup_vs_eager": {k: med["eager"] / v for k, v in med.items()},
                "max_abs_diff_vs_eager": diff,
                "first_call_s_torch_compile": compile_s,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    exact = {k: all(r["max_abs_diff_vs_eager"][k] <= 1e-4 for r in rows) for k in ("onnxruntime", "torch.compile")}
    print("\nGeoMeld-FM atto encoder inference (images/s; x = speed-up over eager, same run)")
    print(f"{'size':>5} {'batch':>5} | {'eager':>8} | {'onnxruntime':>17} | {'torch.compile':>17} | max |diff| ort / compile")
    for r in rows:
        ips, sp, d = r["images_per_s"], r["speedup_vs_eager"], r["max_abs_diff_vs_eager"]
        print(
            f"{r['size']:>5} {r['batch']:>5} | {ips['eager']:8.1f} | {ips['onnxruntime']:8.1f} ({sp['onnxruntime']:4.2f}x) "
            f"| {ips['torch.compile']:8.1f} ({sp['torch.compile']:4.2f}x) | {d['onnxruntime']:.1e} / {d['torch.compile']:.1e}"
        )
    print(f"exact within 1e-4: {exact}; ONNX export took {export_s:.1f} s")
    result = {
        "benchmark": "bench_export",
        "model": "GeoMeld-FM paper-atto encoder (S2, MMEarth stem, patch 16), dense input, no valid mask",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared with other jobs (noisy)",
        "threads": args.threads,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "rounds": args.rounds,
        "onnx_export_s": export_s,
        "exact_within_1e-4": exact,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
