"""`geomeld pretrain`: pretrain GeoMeld-FM on a built dataset (folder or hub id) with a named preset.

Presets (GeoMeldConfig.from_preset): paper-atto (S2 in, 112 px, mask 0.6, MP-MAE + JEPA + ITC), the ablation
rows s2-mae, mpmae, mpmae-jepa, mpmae-itc, multimodal (S2 + S1 + DEM in) and tiny (CPU demos). Multi-GPU or
multi-node: launch the same command with `torchrun --nproc_per_node N -m modeling_geomeld.cli pretrain ...`
or `accelerate launch -m modeling_geomeld.cli pretrain ...`; the Trainer runs data parallel.
"""

from __future__ import annotations

import argparse
from typing import Any

from modeling_geomeld.configuration_geomeld import PRETRAINING_PRESETS


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain GeoMeld-FM on a built GeoMeld dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="dataset folder (made by `geomeld build`) or hub id")
    p.add_argument("--preset", default="tiny", choices=sorted(PRETRAINING_PRESETS), help="model/objective preset (default tiny)")
    p.add_argument(
        "--output-dir", required=True,
        help="the run: resumable checkpoints (with optimizer state) in DIR/checkpoints/, the release (safetensors, code, "
        "processor, card, logs) in DIR/release/",
    )  # fmt: skip
    p.add_argument("--release-dir", default=None, help="write the release here instead of OUTPUT_DIR/release")
    p.add_argument("--max-steps", type=int, default=100, help="optimiser steps (default 100)")
    p.add_argument("--batch-size", type=int, default=8, help="per-device batch size (default 8)")
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default 1)")
    p.add_argument("--lr", type=float, default=1.5e-4, help="peak learning rate (default 1.5e-4)")
    p.add_argument("--warmup-steps", type=int, default=10, help="linear warm-up steps (default 10)")
    p.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps (default 50)")
    p.add_argument("--image-size", type=int, default=None, help="crop size override (default: the preset's)")
    p.add_argument("--streaming", action="store_true", help="stream the dataset instead of loading it map-style")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run_pretrain)


def run_pretrain(args: argparse.Namespace) -> int:
    from dataset_scripts.errors import UsageError
    from modeling_geomeld.training.checkpoints import RunLayout, find_resumable_checkpoint
    from modeling_geomeld.training.pretraining import pretrain
    from modeling_geomeld.training.statistics import require_dataset

    require_dataset(args.dataset)  # a missing folder or an offline hub id: one line, before any model is built
    layout = RunLayout.of(args.output_dir, args.release_dir)
    if args.resume:
        if not layout.checkpoints.is_dir() and any(layout.root.glob("checkpoint-*")):
            raise UsageError(
                f"--resume: {layout.root} holds checkpoint-N folders of the earlier layout; move them into "
                f"{layout.checkpoints}/ (resumable checkpoints now live apart from the release) and run again"
            )
        find_resumable_checkpoint(layout.checkpoints)  # nothing to resume from is said before training starts

    overrides = {"encoder_config": {"image_size": args.image_size}} if args.image_size else None
    result = pretrain(
        args.dataset,
        args.output_dir,
        preset=args.preset,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=args.warmup_steps,
        gradient_accumulation_steps=args.grad_accum,
        save_steps=args.save_steps,
        streaming=args.streaming,
        resume=args.resume,
        seed=args.seed,
        config_overrides=overrides,
        release_dir=args.release_dir,
    )
    print(
        f"trained {result['global_step']} steps; release (model, processor, card, log.csv, loss.png) in {result['release']}, "
        f"resumable checkpoints in {layout.checkpoints}"
    )
    return 0
