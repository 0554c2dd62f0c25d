"""`geomeld demo`: the release end to end on real data that ships with a registry package.

1. Extracts the six real BigEarthNet-MM patches (Sentinel-2 L2A, 12 bands at 10/20/60 m as separate GeoTIFFs,
   with Sentinel-1 VV/VH) from the PyPI package `bigearthnet-common` and writes a builder manifest for them
   (or takes `--manifest PATH`, e.g. one over ../shared/data/terramind-samples).
2. Builds a GeoMeld dataset through the manifest source (alignment onto 10 m UTM grids, signals, Parquet)
   with the grounded captioner as a build stage.
3. Pretrains a tiny GeoMeld-FM (S2 in; MP-MAE of every target present, JEPA, ITC with the real
   all-MiniLM-L6-v2 text tower) with the Trainer, and saves weights, code, processor and model card.
4. Evaluates on the held-out split (all rows when no split is held out): reconstruction error per target
   against a mean predictor, and image <-> caption retrieval; reloads the checkpoint in a fresh process
   with `trust_remote_code`; writes DIR/results.json, DIR/loss.png, DIR/reconstructions.png and DIR/sample.png
   (every layer of a held-out sample with its caption).
5. Embeds every sample and caption into a retrieval index (DIR/index, `geomeld index`) and, in an
   interactive terminal unless `--no-serve`, starts the retrieval Space on it (`geomeld serve`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

DEFAULT_OUT = "outputs/demo"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="build, caption, pretrain and evaluate GeoMeld end to end on real embedded data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", default=None, help="a builder manifest to use instead of the BigEarthNet examples")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--steps", type=int, default=300, help="pretraining steps (default: 300)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--no-serve", action="store_true",
        help="do not start the retrieval Space afterwards (it starts only in an interactive terminal anyway)",
    )
    p.add_argument("--port", type=int, default=7860, help="port of the retrieval Space (default: 7860)")
    p.set_defaults(func=run_demo)


def _rows(dataset: Any) -> tuple[list[dict], list[dict], str]:
    train = list(dataset["train"]) if "train" in dataset else []
    held = [r for name in dataset if name != "train" for r in dataset[name]]
    if held and train:
        return train, held, "held-out splits (spatial blocks never seen in training)"
    return train or held, train or held, "training rows (no split was held out: too few locations)"


def _reconstruction_figure(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dataset_scripts.plotting import render_classes

    batch, out = result["_batch"], result["_outputs"]
    shown = [n for n in ("sentinel1", "dem", "dynamic_world", "esa_worldcover", "canopy_height") if n in (out.reconstructions or {}) and n in batch.get("targets", {})]
    if not shown:
        return
    n = min(3, next(iter(batch["pixel_values"].values())).shape[0])
    fig, axes = plt.subplots(n, 2 * len(shown) + 1, figsize=(2.2 * (2 * len(shown) + 1), 2.3 * n), squeeze=False)
    s2 = batch["pixel_values"]["sentinel2"]
    for i in range(n):
        rgb = s2[i, [3, 2, 1]].numpy()
        rgb = np.clip((rgb - rgb.min()) / max(float(np.ptp(rgb)), 1e-6), 0, 1).transpose(1, 2, 0)
        axes[i, 0].imshow(rgb)
        axes[i, 0].set_title("S2 input" if i == 0 else "", fontsize=8)
        for j, name in enumerate(shown):
            truth, pred = batch["targets"][name][i], out.reconstructions[name][i]
            if truth.ndim == 2:  # class indices -> stored codes for the legend colours
                from modeling_geomeld.modalities import get_modality

                codes = {c.index: c.code for c in get_modality(name).classes}
                to_code = np.vectorize(lambda k, codes=codes: codes.get(int(k), 0))
                a, b = render_classes(to_code(truth.numpy()), name), render_classes(to_code(pred.argmax(0).numpy()), name)
            else:
                a, b = np.nan_to_num(truth[0].numpy()), pred[0].numpy()
            axes[i, 1 + 2 * j].imshow(a, cmap="gray")
            axes[i, 2 + 2 * j].imshow(b, cmap="gray")
            if i == 0:
                axes[i, 1 + 2 * j].set_title(f"{name} truth", fontsize=8)
                axes[i, 2 + 2 * j].set_title(f"{name} from S2", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_demo(args: argparse.Namespace) -> int:
    from dataset_scripts.align import AlignConfig
    from dataset_scripts.bigearthnet import extract_examples, write_manifest
    from dataset_scripts.build import BuildOptions, build
    from dataset_scripts.errors import UsageError
    from dataset_scripts.loading import band_names, decode_row, load_geomeld
    from dataset_scripts.plotting import plot_sample

    from . import GeoMeldForPreTraining, GeoMeldProcessor
    from .pretraining import evaluate_pretraining, pretrain, row_to_sample

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    torch.manual_seed(args.seed)
    size_px, min_coverage = 128, 0.999  # the GeoMeld grid: 1.28 km at 10 m
    if args.manifest:
        manifest = Path(args.manifest).resolve()
        if not manifest.is_file():
            raise UsageError(f"manifest {manifest} does not exist or is not a file; pass a builder manifest (CSV or JSON Lines)")
        source = f"your manifest {manifest}"
    else:
        print(f"[1/6] extracting the real BigEarthNet-MM examples (bigearthnet-common) into {out / 'bigearthnet'}")
        manifest = write_manifest(extract_examples(out / "bigearthnet"), out / "bigearthnet" / "manifest.csv")
        source = "BigEarthNet-MM examples from bigearthnet-common (6 S2 L2A patches + S1)"
        # BigEarthNet patches cover 1.2 km in their file's UTM zone; rotated into the anchor's own zone a 1.2 km
        # footprint, plus the resampling margin of the 60 m bands, pokes out at the edges: those become no data
        size_px, min_coverage = 120, 0.8
    print(f"[2/6] building and captioning a GeoMeld dataset from {manifest}")
    dataset_dir = out / "dataset"
    options = BuildOptions(workers=0, progress=False, caption=True, align=AlignConfig(size_px=size_px, min_coverage=min_coverage))
    build(f"manifest:{manifest}", dataset_dir, options)
    dataset = load_geomeld(dataset_dir)
    train_rows, eval_rows, eval_note = _rows(dataset)
    print(f"      {sum(len(s) for s in dataset.values())} samples; evaluation on {len(eval_rows)} {eval_note}")
    for r in train_rows[:3]:
        print(f"      caption of {r['tile_id']}: {r['caption']}")

    print(f"[3/6] pretraining a tiny GeoMeld-FM for {args.steps} steps (S2 in; MP-MAE + JEPA + ITC)")
    ckpt = out / "checkpoint"
    training = pretrain(
        str(dataset_dir), str(ckpt), preset="tiny", max_steps=args.steps, batch_size=4, learning_rate=2e-3,
        save_steps=max(args.steps, 1), logging_steps=5, seed=args.seed,
        config_overrides={"encoder_config": {"image_size": 112}},
    )  # fmt: skip
    (out / "loss.png").write_bytes((ckpt / "loss.png").read_bytes())

    print("[4/6] evaluating reconstructions against a mean predictor, and image <-> caption retrieval")
    model = GeoMeldForPreTraining.from_pretrained(ckpt)
    processor = GeoMeldProcessor.from_pretrained(ckpt)
    result = evaluate_pretraining(model, processor, [row_to_sample(r) for r in eval_rows], seed=args.seed)
    _reconstruction_figure(result, out / "reconstructions.png")
    first = eval_rows[0]
    plot_sample(decode_row(first), band_names(first), title=f"{first['tile_id']}: {first['caption']}", path=out / "sample.png")

    print("[5/6] reloading the checkpoint in a fresh process with AutoModel(trust_remote_code=True)")
    code = (
        "import sys\nsys.modules['modeling_geomeld'] = None\n"
        "from transformers import AutoModel, AutoProcessor\n"
        f"m = AutoModel.from_pretrained({str(ckpt)!r}, trust_remote_code=True)\n"
        f"p = AutoProcessor.from_pretrained({str(ckpt)!r}, trust_remote_code=True)\n"
        "print(type(m).__name__, type(p).__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        raise RuntimeError("the saved checkpoint did not load in a fresh process; see the error above")

    history = training["history"]
    results = {
        "data": source,
        "evaluation_rows": eval_note,
        "steps": training["global_step"],
        "first_logged_losses": history[0] if history else {},
        "last_logged_losses": history[-1] if history else {},
        "reconstruction_vs_mean_predictor": result["reconstruction"],
        "jepa_loss": result.get("jepa_loss"),
        "retrieval": result.get("retrieval", {}),
        "retrieval_chance_R@1": result.get("retrieval_chance_R@1"),
        "fresh_process_load": proc.stdout.strip(),
        "seconds": round(time.time() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: results[k] for k in ("reconstruction_vs_mean_predictor", "retrieval", "retrieval_chance_R@1")}, indent=2))
    print(
        f"done in {results['seconds']} s. Outputs: {out}/results.json, {out}/loss.png, {out}/reconstructions.png; "
        f"dataset in {dataset_dir}, checkpoint in {ckpt}"
    )
    print("[6/6] indexing samples and captions for retrieval (geomeld index)")
    from space_app.retrieval import build_index

    index_dir = out / "index"
    shutil.rmtree(index_dir, ignore_errors=True)  # the checkpoint was just retrained: old vectors are stale
    report = build_index(ckpt, dataset_dir, index_dir, batch_size=8, progress=False)
    results["index"] = {"folder": str(index_dir), **report.to_dict()}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    serve = f"geomeld serve --checkpoint {ckpt} --index {index_dir} --dataset {dataset_dir}"
    print(f"      {report.images_total} samples and {report.texts_total} captions indexed in {index_dir}")
    if args.no_serve or not sys.stdin.isatty():
        print(f"to browse them in the retrieval Space run:\n  {serve}")
        return 0
    print(f"starting the retrieval Space ({serve}); Ctrl-C stops it")
    from space_app.app import launch

    launch(ckpt, index_dir, dataset_dir, port=args.port)
    return 0
