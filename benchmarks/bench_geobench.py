"""GEO-Bench protocol harness, smoke preset, on tasks written by GEO-Bench's own writer from real pixels
(tests/fixtures/make_geobench_official.py: m-bigearthnet, m-so2sat, m-cashew-plant, m-forestnet (Landsat-8),
m-pv4ger (aerial RGB)), under every protocol (mmearth FT/LP, frozen LP, k-NN k=5/20), seeds 0 1 2, bootstrap
95 % intervals. Rows: the demo's briefly pretrained tiny checkpoint (`--checkpoint`, default
/work/main/outputs/demo/checkpoint: MP-MAE + JEPA + ITC for 60 steps on the demo dataset, Sentinel-2 only, so
"not applicable" on the Landsat-8 and aerial tasks; copied to a temporary folder, never written), a random-init
encoder of the same architecture (tiny: depths 1 1 2 1, dims 16..64), each with its shuffled-train-label
control, the majority class and the sampled label prior. The generated tasks are small (5-11 test samples,
labels derived from the pixels by thresholds): the numbers check the harness and its controls; they are no
measure of pretraining.

Full-recipe cost: steps = epochs x ceil(train samples / effective batch) from the recipe and GEO-Bench's
default-partition train sizes; FLOPs per step are counted by torch.utils.flop_counter (forward at batch 2,
x 3 for forward + backward, x batch / 2), at each task's native size cropped to the patch multiple and its
modalities' band counts. GPU hours are those FLOPs at an assumed sustained rate (`--tflops`, default 20 TFLOP/s:
a fraction of a current GPU's dense TF32/bf16 peak, as small ConvNeXt models reach); no GPU was measured here.
Prints the tables and writes benchmarks/results/geobench.json. The machine is shared with other jobs: times
are wall-clock under that load.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = "/work/main/outputs/demo/checkpoint"
#: train samples of the default partition, GEO-Bench paper (Lacoste et al. 2023, Table 1); the benchmark CLI
#: reads the real counts from the partitions, these only feed the cost estimate
TRAIN_SIZES = {
    "m-bigearthnet": 20000, "m-so2sat": 19992, "m-eurosat": 2000, "m-brick-kiln": 15063, "m-forestnet": 6464,
    "m-pv4ger": 11814, "m-cashew-plant": 1350, "m-SA-crop-type": 3000, "m-chesapeake": 3000, "m-pv4ger-seg": 3000,
    "m-nz-cattle": 524, "m-NeonTree": 270,
}  # fmt: skip
OFFICIAL_TASKS = ["m-bigearthnet", "m-so2sat", "m-cashew-plant", "m-forestnet", "m-pv4ger"]


def copy_checkpoint(src: Path, dst: Path) -> Path:
    """The model, config, processor and tokenizer files of a checkpoint folder (not its Trainer states)."""
    dst.mkdir(parents=True)
    for path in src.iterdir():
        if path.is_file():
            shutil.copy2(path, dst / path.name)
    return dst


def smoke(seeds: list[int], checkpoint: str | None) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures.make_geobench_official import generate, missing_sdist_reason

    from modeling_geomeld.evaluation.geobench_protocols import PROTOCOLS, parse_checkpoint, run_benchmark

    reason = missing_sdist_reason()
    if reason:
        raise SystemExit(f"cannot write the official tasks: {reason}")
    out: dict[str, Any] = {"tasks": OFFICIAL_TASKS, "seeds": seeds}
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "geobench")
        sources = []
        if checkpoint and Path(checkpoint, "model.safetensors").is_file():
            sources.append(parse_checkpoint(f"pretrained 60 steps (demo)={copy_checkpoint(Path(checkpoint), Path(tmp) / 'ckpt')}"))
        else:
            print(f"no checkpoint at {checkpoint}: random init only")
        sources.append(parse_checkpoint("random:tiny"))
        out["checkpoints"] = [s.name for s in sources]
        for protocol in PROTOCOLS:
            t0 = time.time()
            report = run_benchmark(protocol, OFFICIAL_TASKS, sources, Path(tmp) / protocol, seeds=seeds, preset="smoke",
                                   root=str(root), controls=True, log=lambda _: None)  # fmt: skip
            seconds = time.time() - t0
            passed = sum(v["passes"] for v in report.controls)
            print(f"\nprotocol {protocol} (smoke, seeds {seeds}, {seconds:.0f} s)\n{report.table}")
            print(f"shuffled-label controls: {passed}/{len(report.controls)} cells within the knows-nothing bounds")
            for v in report.controls:
                if not v["passes"]:
                    print(f"  above: {v['checkpoint']} / {v['task']} / {v['column']}: {100 * v['shuffled_mean']:.1f} > "
                          f"{100 * max(v['majority_interval'][1], v['prior_sampled_interval'][1]):.1f}")  # fmt: skip
            out[protocol] = {"seconds": round(seconds, 1), "table": report.table, "controls": report.controls,
                             "cells": [c.__dict__ for c in report.cells]}  # fmt: skip
    return out


def full_cost(tflops: float) -> list[dict[str, Any]]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dataset_scripts.geobench import PRESETS
    from modeling_geomeld import GeoMeldConfig, GeoMeldForImageClassification, GeoMeldForSemanticSegmentation
    from modeling_geomeld.evaluation.geobench_protocols import COLUMNS, recipe

    rows = []
    for name, preset in PRESETS.items():
        kind = preset.label_kind
        # the modalities the harness serves (m-so2sat: its S2 bands; the SAR channels are in no registry modality)
        inputs = {m: [b for b in bands if b != "B10"] for m, bands in preset.modalities.items() if m != "sentinel1"}
        size = preset.patch_size - preset.patch_size % 16
        cfg = GeoMeldConfig.from_preset("paper-atto", encoder_config={"input_modalities": inputs},
                                        num_labels=preset.num_classes)  # fmt: skip
        model = (GeoMeldForSemanticSegmentation if kind == "segmentation" else GeoMeldForImageClassification)(cfg)
        pixels = {m: torch.randn(2, len(b), size, size) for m, b in inputs.items()}
        with FlopCounterMode(display=False) as counter:
            model(pixel_values=pixels)
        forward_per_sample = counter.get_total_flops() / 2
        for column in COLUMNS["mmearth"]:
            rec = recipe("mmearth", column, kind)
            steps = rec.steps_for(TRAIN_SIZES[name])
            factor = 3.0 if column == "FT" else 1.2  # LP: backward through the head only
            flops = forward_per_sample * factor * rec.batch_size * steps
            rows.append({"task": name, "column": column, "size": size, "batch": rec.batch_size, "steps": steps,
                         "gflops_per_sample_forward": round(forward_per_sample / 1e9, 3),
                         "gpu_hours": round(flops / (tflops * 1e12) / 3600, 3)})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    parser.add_argument("--tflops", type=float, default=20.0, help="assumed sustained GPU TFLOP/s (default 20)")
    parser.add_argument("--checkpoint", default=DEMO_CHECKPOINT, help=f"pretrained checkpoint row (default {DEMO_CHECKPOINT})")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/geobench.json"), help="JSON output path")
    args = parser.parse_args(argv)
    t0 = time.time()
    results: dict[str, Any] = {"smoke": smoke(args.seeds, args.checkpoint)}
    results["smoke_seconds"] = round(time.time() - t0, 1)
    cost = full_cost(args.tflops)
    print(f"\nfull mmearth recipe, paper-atto, GPU hours at {args.tflops:g} TFLOP/s sustained (assumed, not measured)")
    print("| task | column | input px | batch | steps | forward GFLOP/sample | GPU h |\n|---|---|---|---|---|---|---|")
    for r in cost:
        print(f"| {r['task']} | {r['column']} | {r['size']} | {r['batch']} | {r['steps']} | {r['gflops_per_sample_forward']} | {r['gpu_hours']} |")
    total = sum(r["gpu_hours"] for r in cost)
    print(f"total for one checkpoint, one seed, FT + LP on all 12 tasks: {total:.1f} GPU h; x3 seeds: {3 * total:.1f} GPU h")
    results["full_recipe_cost"] = {"assumed_tflops": args.tflops, "rows": cost, "total_gpu_hours_one_seed": round(total, 2),
                                   "steps_formula": "epochs x ceil(train / batch)"}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o)))
    print(f"wrote {args.out} ({results['smoke_seconds']:.0f} s of smoke runs on a shared 2-core machine)")
    return results


if __name__ == "__main__":
    main()
