"""`geomeld demo`: the release end to end on real data that ships with a registry package.

It extracts the six real BigEarthNet-MM patches (Sentinel-2 L2A + Sentinel-1) from `bigearthnet-common`,
pretrains a small GeoMeld-FM on them (MP-MAE of S2 and S1 from S2, JEPA, and ITC against captions made from
the CORINE labels, with the real all-MiniLM-L6-v2 text tower), saves the checkpoint with its code and
processor, reloads it in a fresh process with `trust_remote_code`, and reports losses, reconstruction
error against a mean predictor and image-to-caption retrieval. Outputs: DIR/results.json, DIR/loss.png,
DIR/checkpoint/.
"""

from __future__ import annotations

import argparse
import json
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
        help="run GeoMeld-FM end to end on the real BigEarthNet examples shipped by bigearthnet-common",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--steps", type=int, default=120, help="pretraining steps (default: 120, about a minute on 2 cores)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-serve", action="store_true", help="do not start the retrieval Space afterwards")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from dataset_scripts.bigearthnet import caption_from_labels, extract_examples, read_patch
    from modeling_geomeld import GeoMeldConfig, GeoMeldForPreTraining, GeoMeldImageProcessor, GeoMeldProcessor
    from modeling_geomeld.text import init_text_tower_from_minilm, load_text_tokenizer

    from .training import fit_in_memory, plot_losses

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    torch.manual_seed(args.seed)
    print(f"[1/5] extracting the BigEarthNet-MM examples into {out / 'bigearthnet'}")
    patches = extract_examples(out / "bigearthnet")
    arrays = [read_patch(p) for p in patches]
    captions = [caption_from_labels(p.labels) for p in patches]

    cfg = GeoMeldConfig.from_preset(
        "tiny",
        encoder_config={"image_size": 112, "patch_size": 16},
        decoder_config={"target_modalities": {"sentinel2": [], "sentinel1": ["VV", "VH"]}},
    )
    processor = GeoMeldProcessor(
        GeoMeldImageProcessor.from_model_config(cfg, crop_mode="random"), load_text_tokenizer()
    )
    model = init_text_tower_from_minilm(GeoMeldForPreTraining(cfg))
    images = {"sentinel2_l2a": np.stack([a["sentinel2_l2a"] for a in arrays])}
    targets = {"sentinel1": np.stack([a["sentinel1"] for a in arrays])}

    print(f"[2/5] pretraining a tiny GeoMeld-FM for {args.steps} steps on {len(patches)} real patches (S2 in; S2+S1 out)")
    history = fit_in_memory(model, processor, images, targets, captions, steps=args.steps, seed=args.seed)
    plot_losses(history, out / "loss.png")

    print(f"[3/5] saving the checkpoint (safetensors + code + processor) to {out / 'checkpoint'}")
    ckpt = out / "checkpoint"
    model.save_pretrained(ckpt)
    processor.image_processor.crop_mode = "center"
    processor.save_pretrained(ckpt)

    print("[4/5] evaluating: reconstruction error vs a mean predictor, and image -> caption retrieval")
    model.eval()
    centre = GeoMeldProcessor(GeoMeldImageProcessor.from_model_config(cfg), processor.tokenizer)
    batch = centre(images=images, targets=targets, text=captions)
    with torch.no_grad():
        res = model(**batch, generator=torch.Generator().manual_seed(123))
    recon = {}
    for name, pred in (res.reconstructions or {}).items():
        target = batch["targets"].get(name, batch["pixel_values"].get(name))
        if name == "sentinel2" or target is None:  # S2 uses per-patch normalised targets; report S1
            continue
        m = res.mask.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, None].expand_as(pred)
        err = float(((pred - target) ** 2)[m].mean())
        base = float(((target.mean(dim=(0, 2, 3), keepdim=True) - target) ** 2)[m].mean())
        recon[name] = {"mse": err, "mean_predictor_mse": base, "ratio": err / base}

    print("[5/5] reloading the checkpoint in a fresh process with AutoModel(trust_remote_code=True)")
    np.save(out / "demo_s2.npy", images["sentinel2_l2a"])
    code = (
        "import sys, json, numpy as np, torch\n"
        "sys.modules['modeling_geomeld'] = None\n"
        "from transformers import AutoModel, AutoProcessor\n"
        f"m = AutoModel.from_pretrained({str(ckpt)!r}, trust_remote_code=True).eval()\n"
        f"p = AutoProcessor.from_pretrained({str(ckpt)!r}, trust_remote_code=True)\n"
        f"caps = json.loads({json.dumps(json.dumps(captions))})\n"
        f"b = p(images={{'sentinel2_l2a': np.load({str(out / 'demo_s2.npy')!r})}}, text=caps)\n"
        "with torch.no_grad(): logits = m(**b).logits_per_image\n"
        "print(json.dumps(logits.tolist()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        raise RuntimeError("the saved checkpoint did not load in a fresh process; see the error above")
    logits = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    ranks = (-logits).argsort(axis=1).argsort(axis=1)[np.arange(len(captions)), np.arange(len(captions))]
    retrieval = {f"image_to_text_R@{k}": float((ranks < k).mean()) for k in (1, 5)}
    retrieval["chance_R@1"] = 1.0 / len(captions)

    results = {
        "data": "BigEarthNet-MM examples (bigearthnet-common), 6 patches, S2 L2A + S1",
        "steps": args.steps,
        "final_losses": history[-1],
        "first_losses": history[0],
        "reconstruction_vs_mean_predictor": recon,
        "retrieval_training_patches": retrieval,
        "seconds": round(time.time() - started, 1),
        "note": "six patches only: recalls are on the training patches (a smoke test of the pipeline, "
        "not a held-out evaluation)",
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: results[k] for k in ("final_losses", "reconstruction_vs_mean_predictor", "retrieval_training_patches")}, indent=2))
    print(f"done in {results['seconds']} s. Outputs: {out}/results.json, {out}/loss.png, checkpoint in {ckpt}")
    if not args.no_serve:
        print("the retrieval Space is not part of this release yet; nothing to serve")
    return 0
