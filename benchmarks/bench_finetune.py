"""Fine-tuning modes on the real TerraMesh land-cover task: scores, trainable share and memory.

For linear probing, full fine-tuning (layer-wise lr decay) and LoRA, each in its own fresh process (so peak
memory is that mode's alone): mIoU and pixel accuracy on the held-out locations over several seeds (mean,
std, IQM), the trainable-parameter share, the training-state memory (trainable parameters + gradients +
AdamW moments) and the process's peak resident memory, as ratios against full fine-tuning. The
majority-class baseline is scored on the same test split. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "terramind-samples"


def run_mode(mode: str, root: str, seeds: list[int], steps: int, model_size: str) -> dict[str, Any]:
    """Runs inside a child process: one mode, every seed."""
    import torch

    from dataset_scripts.tasks import majority_baseline, terramind_landcover
    from modeling_geomeld import GeoMeldConfig, GeoMeldForSemanticSegmentation, GeoMeldImageProcessor
    from modeling_geomeld.training.finetune_cli import score_fn
    from modeling_geomeld.training.finetuning import prepare_model, run_seeds

    torch.set_num_threads(2)
    cfg = GeoMeldConfig.from_preset(model_size)
    task = terramind_landcover(root, GeoMeldImageProcessor.from_model_config(cfg, crop_size=None))
    score = score_fn(task)
    id2label = dict(enumerate(task.label_names))

    def build() -> Any:
        return GeoMeldForSemanticSegmentation(
            GeoMeldConfig.from_preset(model_size, id2label=id2label, label2id={v: k for k, v in id2label.items()})
        )

    lr = 3e-4 if mode == "full" else 3e-3
    result = run_seeds(build, mode, task.train, task.test, score, seeds=seeds, steps=steps, batch_size=8, lr=lr)  # type: ignore[arg-type]
    model, _ = prepare_model(build(), mode, lr=lr)  # type: ignore[arg-type]
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    result["training_state_bytes"] = 4 * trainable  # weights + gradients + two AdamW moments
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["majority_baseline"] = score(majority_baseline(task), task.test.labels)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="terramind-samples folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    parser.add_argument("--steps", type=int, default=100, help="steps per run (default 100)")
    parser.add_argument("--model", default="tiny", help="model preset (default tiny)")
    parser.add_argument("--out", default="benchmarks/results/finetune.json", help="JSON output path")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_mode(args.child, args.root, args.seeds, args.steps, args.model)))
        return {}
    if not Path(args.root).is_dir():
        raise SystemExit(f"terramind samples not found at {args.root}; pass --root")
    results = {}
    for mode in ("linear", "full", "lora"):
        cmd = [sys.executable, __file__, "--child", mode, "--root", args.root, "--steps", str(args.steps), "--model", args.model, "--seeds", *map(str, args.seeds)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    full = results["full"]
    base = results["linear"]["majority_baseline"]
    print(f"\nTerraMesh land cover (held-out Tanzania + Denmark), {args.model}, {len(args.seeds)} seeds x {args.steps} steps")
    print(f"{'mode':8s} {'mIoU mean':>10s} {'std':>7s} {'IQM':>7s} {'pix acc':>8s} {'trainable':>10s} {'state vs full':>14s} {'peak RSS vs full':>17s}")
    print(f"{'majority':8s} {base['miou']:10.4f} {'':7s} {'':7s} {base['pixel_accuracy']:8.4f}")
    table = {}
    for mode, r in results.items():
        s, acc = r["summary"]["miou"], r["summary"]["pixel_accuracy"]
        state = r["training_state_bytes"] / full["training_state_bytes"]
        rss = r["peak_rss_bytes"] / full["peak_rss_bytes"]
        print(f"{mode:8s} {s['mean']:10.4f} {s['std']:7.4f} {s['iqm']:7.4f} {acc['mean']:8.4f} {r['trainable_share']:9.2%} {state:14.3f} {rss:17.3f}")
        table[mode] = {"miou": s, "pixel_accuracy": acc, "trainable_share": r["trainable_share"], "training_state_vs_full": state, "peak_rss_vs_full": rss}
    out = {"settings": {k: v for k, v in vars(args).items() if k != "child"}, "majority_baseline": base, "table": table, "raw": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=float))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
