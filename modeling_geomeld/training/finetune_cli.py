"""`geomeld finetune`: linear probing, full fine-tuning (layer-wise lr decay) or LoRA on a downstream task,
over several seeds, reported as mean, standard deviation and interquartile mean, as a table and JSON. Every
run trains with the stock `transformers.Trainer` (see `training.finetuning.finetune_trainer`)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dataset_scripts.errors import UsageError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune GeoMeld-FM on a downstream task (linear probe, full, or LoRA) over several seeds",
        description=__doc__
        + "\n\nTasks: terramind-landcover (real TerraMesh samples, whole locations held out) and geobench:<task> "
        "(GEO-Bench v1.0 on disk; root from --data-root or GEO_BENCH_DIR). terramind-landcover reads the samples "
        "folder from --data-root or GEOMELD_TERRAMIND_DIR.\n\nStatistics (--stats): checkpoint (those the checkpoint "
        "was pretrained with), task (the GEO-Bench task's band_stats.json) or dataset:DIR (a built dataset's "
        "stats.json); the choice and the numbers are recorded in results.json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", default="terramind-landcover", help="task name (default: terramind-landcover)")
    p.add_argument("--data-root", default=None, help="data folder of the task (default: the task's own default)")
    p.add_argument("--classes", default=None, help="labels:<manifest> tasks: class list file (default: the manifest's sidecar)")
    p.add_argument("--checkpoint", default=None, help="GeoMeld checkpoint folder to start from (default: random init)")
    p.add_argument("--stats", default="checkpoint", help="normalisation statistics: checkpoint (default), task, or dataset:DIR")
    p.add_argument("--preset", default="tiny", help="model preset when no checkpoint is given (default: tiny)")
    p.add_argument("--mode", choices=["linear", "full", "lora", "all"], default="all", help="training mode (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--steps", type=int, default=150, help="optimiser steps per run (default: 150)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default: 8)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-3 linear/lora, 3e-4 full)")
    p.add_argument("--layer-decay", type=float, default=0.75, help="layer-wise lr decay for --mode full (default: 0.75)")
    p.add_argument("--lora-rank", type=int, default=8, help="LoRA rank (default: 8)")
    p.add_argument(
        "--save-model", default=None,
        help="save the last seed's model of --mode linear/full as a complete Hub folder here (DIR/<mode> with several "
        "modes); for --mode lora use --save-adapter, whose merged/ folder is the same",
    )  # fmt: skip
    p.add_argument("--save-adapter", default=None, help="save the last LoRA adapter here (and the merged model beside it)")
    p.add_argument("--out", default="outputs/finetune", help="output folder for results.json (default: outputs/finetune)")
    p.set_defaults(func=run_finetune)


def check_task_name(task: str) -> None:
    prefixed = task.startswith(("geobench:", "labels:")) and task.split(":", 1)[1]
    if task != "terramind-landcover" and not prefixed:
        raise UsageError(f"unknown task {task!r}; expected terramind-landcover, geobench:<task> or labels:<manifest>")


def build_task(args: argparse.Namespace, processor: Any) -> Any:
    from dataset_scripts.tasks import terramind_landcover
    from modeling_geomeld.training.finetune_setup import open_geobench, terramind_root

    check_task_name(args.task)
    if args.task == "terramind-landcover":
        return terramind_landcover(terramind_root(args.data_root), processor)
    if args.task.startswith("labels:"):  # the user's labelled manifest, built into --data-root (or OUT/labels-dataset)
        from dataset_scripts.tasks import labels_task

        out = Path(args.data_root) if args.data_root else Path(args.out) / "labels-dataset"
        try:
            return labels_task(args.task.split(":", 1)[1], processor, classes=getattr(args, "classes", None), out=out)
        except ValueError as err:  # a registry / manifest mistake found below the CLI
            raise UsageError(str(err)) from None
    from dataset_scripts.tasks import geobench_task

    name = args.task.split(":", 1)[1]
    open_geobench(name, args.data_root)  # a missing root or an unknown task is a usage error, said in one line
    try:
        return geobench_task(name, processor, root=args.data_root)
    except ValueError as err:  # the task offers none of the model's modalities
        raise UsageError(str(err)) from None


def score_fn(task: Any) -> Any:
    from modeling_geomeld.evaluation import accuracy, mean_iou, micro_f1

    def score(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        if task.kind == "segmentation":
            res = mean_iou(logits.argmax(1).numpy(), labels.numpy(), num_labels=task.num_labels, ignore_index=-1)
            return {"miou": float(res["mean_iou"]), "pixel_accuracy": float(res["overall_accuracy"])}
        if task.kind == "multi_label":
            return {"micro_f1": float(micro_f1((logits > 0).int().numpy(), labels.int().numpy()))}
        return {"accuracy": float(accuracy(logits.argmax(1).numpy(), labels.numpy()))}

    return score


def save_adapter_and_merged(
    peft_model: Any,
    folder: Path,
    *,
    processor: Any,
    base_model: str | None = None,
    training_data: Any = None,
    **card: Any,
) -> None:
    """Write the LoRA adapter to `folder` (PEFT format, safetensors, an `auto_mapping` that `AutoPeftModel`
    follows, a card with `library_name: peft`) and the merged model to `folder/merged` as a complete Hub folder
    (weights, code, processor, card). `card`: `write_model_card` arguments (results, pipeline_check, ...)."""
    from modeling_geomeld.hub.folders import complete_adapter_folder, complete_folder, default_training_data

    sources = list(training_data or default_training_data(peft_model.get_base_model()))
    complete_adapter_folder(peft_model, folder, base_model=base_model, training_data=sources, **card)
    merged = peft_model.merge_and_unload()
    complete_folder(merged, processor, folder / "merged", training_data=sources, base_model=base_model, **card)
    print(f"saved the LoRA adapter to {folder} and the merged model to {folder / 'merged'}")


MODE_NAMES = {"lora": "LoRA (rank {rank})", "full": "Full fine-tuning (layer-wise lr decay)", "linear": "A linear probe"}


def run_card(
    args: argparse.Namespace, task: Any, res: Mapping[str, Any], baseline: Mapping[str, float], processor: Any, mode: str = "lora"
) -> dict[str, Any]:
    """`save_adapter_and_merged` / `complete_folder` arguments for the last seed's run of `mode`: its test score
    against the majority baseline (a score that does not beat it makes the folder a pipeline check), the task's
    input sources."""
    from modeling_geomeld.hub.cards import Score, sources_for

    row = res["per_seed"][-1]
    value, floor = float(row[task.metric]), float(baseline[task.metric])
    start = f"the checkpoint `{Path(args.checkpoint).name}`" if args.checkpoint else "a random initialisation (no --checkpoint)"
    return {
        "processor": processor,
        "base_model": args.checkpoint,
        "training_data": sources_for(task.input_modalities),
        "results": [Score(task.metric, value, task.name, "test", seeds=(int(row["seed"]),), baseline=floor, baseline_name="majority class")],
        "pipeline_check": value <= floor,
        "pipeline_check_reason": f"its test {task.metric} ({value:.4f}) does not beat the majority class ({floor:.4f}).",
        "summary": f"{MODE_NAMES.get(mode, mode).format(rank=args.lora_rank)} on {task.name} ({task.description}) for "
        f"{args.steps} steps, seed {row['seed']}, from {start}.",
    }


def run_finetune(args: argparse.Namespace) -> int:
    import transformers

    from dataset_scripts.tasks import majority_baseline
    from modeling_geomeld import GeoMeldConfig, GeoMeldForImageClassification, GeoMeldForSemanticSegmentation
    from modeling_geomeld.training.finetune_setup import (
        check_against_checkpoint,
        checkpoint_image_processor,
        choose_statistics,
        require_checkpoint,
    )
    from modeling_geomeld.training.finetuning import Mode, run_seeds

    check_task_name(args.task)
    if args.checkpoint:
        require_checkpoint(args.checkpoint)
        base_cfg = GeoMeldConfig.from_pretrained(args.checkpoint)
    else:
        base_cfg = GeoMeldConfig.from_preset(args.preset)
    reference = checkpoint_image_processor(args.checkpoint, base_cfg)
    statistics = choose_statistics(args.stats, args.task, args.data_root, reference)
    task = build_task(args, statistics.processor)
    print(f"statistics: {statistics.choice} ({statistics.source})")
    shifts = check_against_checkpoint(task, statistics, reference)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"task {task.name}: {len(task.train)} train / {len(task.test)} test samples, {task.num_labels} labels ({task.description})")
    model_cls = GeoMeldForSemanticSegmentation if task.kind == "segmentation" else GeoMeldForImageClassification
    extra: dict[str, Any] = {"problem_type": "multi_label_classification"} if task.kind == "multi_label" else {}
    if task.label_colors:  # the class list's colours travel with the model (predict's colour table)
        extra["label_colors"] = task.label_colors
    id2label = dict(enumerate(task.label_names))

    def build() -> Any:
        if args.checkpoint:
            return model_cls.from_pretrained(args.checkpoint, id2label=id2label, label2id={v: k for k, v in id2label.items()}, **extra)
        cfg = GeoMeldConfig.from_preset(args.preset, id2label=id2label, label2id={v: k for k, v in id2label.items()}, **extra)
        return model_cls(cfg)

    score = score_fn(task)
    baseline = score(majority_baseline(task), task.test.labels)
    modes: list[Mode] = ["linear", "full", "lora"] if args.mode == "all" else [args.mode]
    results: dict[str, Any] = {
        "task": task.name, "description": task.description, "majority_baseline": baseline,
        "statistics": {**statistics.record(), "far_from_checkpoint": shifts},
        "trainer": f"transformers.Trainer {transformers.__version__}", "modes": {},
    }  # fmt: skip
    last: dict[str, Any] = {}  # the last seed's model of each mode, saved once its score is known
    saved_modes = [m for m in modes if m != "lora"] if args.save_model else []
    for mode in modes:
        lr = args.lr or (3e-4 if mode == "full" else 1e-3)
        t0 = time.time()
        kwargs: dict[str, Any] = {"layer_decay": args.layer_decay} if mode == "full" else {}
        if mode == "lora":
            kwargs["lora_rank"] = args.lora_rank
        if (mode == "lora" and args.save_adapter) or mode in saved_modes:
            kwargs["after_train"] = lambda seed, model, mode=mode: last.update({mode: model})
        res = run_seeds(
            build, mode, task.train, task.test, score, seeds=args.seeds, steps=args.steps, batch_size=args.batch_size,
            lr=lr, processor=statistics.processor, **kwargs,
        )  # fmt: skip
        if mode == "lora" and args.save_adapter:
            save_adapter_and_merged(last["lora"], Path(args.save_adapter), **run_card(args, task, res, baseline, statistics.processor))
        if mode in saved_modes:
            from modeling_geomeld.hub.folders import complete_folder

            folder = Path(args.save_model) / mode if len(saved_modes) > 1 else Path(args.save_model)
            complete_folder(last.pop(mode), **run_card(args, task, res, baseline, statistics.processor, mode), folder=folder)
            print(f"saved the {mode} model to {folder}")
        res["seconds"] = round(time.time() - t0, 1)
        results["modes"][mode] = res
    metric = task.metric
    print(f"\n{'mode':8s} {metric + ' mean':>12s} {'std':>8s} {'IQM':>8s} {'trainable':>10s}")
    print(f"{'majority':8s} {baseline[metric]:12.4f}")
    for mode, res in results["modes"].items():
        s = res["summary"][metric]
        print(f"{mode:8s} {s['mean']:12.4f} {s['std']:8.4f} {s['iqm']:8.4f} {res['trainable_share']:9.2%}")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'results.json'}")
    return 0
