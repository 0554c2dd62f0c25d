"""Fine-tuning GeoMeld-FM on a downstream task: linear probing, full fine-tuning with layer-wise learning-rate
decay, and PEFT LoRA on the encoder's linear layers (head trained in full); multi-seed runs with the mean,
standard deviation and interquartile mean.

Task data is held in memory as a `TaskData` of already processed tensors (GEO-Bench tasks and the tests'
tasks are small), a map-style dataset whose rows the `training.collators` stack. Training, evaluation and
prediction run the stock `transformers.Trainer` (`finetune_trainer`): the layer-wise decayed AdamW groups and
the warm-up + cosine schedule are handed to it as `optimizers=`, and it seeds sampling and dropout from the
run's seed (`run_seeds` seeds the head's and LoRA's initialisation before it).
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch
from torch import nn
from transformers import PrinterCallback, Trainer, TrainingArguments, get_cosine_schedule_with_warmup

if TYPE_CHECKING:
    from modeling_geomeld.configuration_geomeld import GeoMeldConfig

    from .collators import GeoMeldDataCollator

Mode = Literal["linear", "full", "lora"]
MODES: tuple[str, ...] = ("linear", "full", "lora")
#: the encoder's linear layers (the pointwise convolutions of every ConvNeXt V2 block)
LORA_TARGETS: tuple[str, ...] = ("pwconv1", "pwconv2")
HEAD_MODULES: tuple[str, ...] = ("classifier", "decode_head")


@dataclass
class TaskData:
    """Processed tensors of one split: `pixel_values` / `valid_mask` {modality: (N, ...)}, `labels` (N, ...)."""

    pixel_values: dict[str, torch.Tensor]
    labels: torch.Tensor
    valid_mask: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One processed row: `pixel_values` {modality: (C, H, W)}, `valid_mask` {modality: (H, W)}, `labels`."""
        row: dict[str, Any] = {"pixel_values": {k: v[index] for k, v in self.pixel_values.items()}, "labels": self.labels[index]}
        if self.valid_mask:
            row["valid_mask"] = {k: v[index] for k, v in self.valid_mask.items()}
        return row


# ---------------------------------------------------------------------------------------------------------
# training modes


def _head_names(model: nn.Module) -> list[str]:
    names = [n for n in HEAD_MODULES if hasattr(model, n)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no task head ({', '.join(HEAD_MODULES)}); use a GeoMeld task model")
    return names


def encoder_layer_id(name: str, depths: Sequence[int]) -> int:
    """Depth index of an encoder parameter for layer-wise decay: stems 0, block j of stage i counts after all
    earlier blocks, a downsample belongs to the first block of its stage, the final norm to the last."""
    parts = name.split(".")
    if "stems" in parts or "modality_embeddings" in parts:
        return 0
    if "stages" in parts:
        i = parts.index("stages")
        stage, block = int(parts[i + 1]), int(parts[i + 2])
        return 1 + sum(depths[:stage]) + block
    if "downsamples" in parts:
        stage = int(parts[parts.index("downsamples") + 1])
        return 1 + sum(depths[:stage])
    return 1 + sum(depths)


def llrd_param_groups(model: nn.Module, lr: float, layer_decay: float, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups with lr x decay^(L - layer) for encoder parameters and the full lr for the head; no weight
    decay on norms, biases and embeddings."""
    config = cast("GeoMeldConfig", model.config)
    depths = list(config.encoder_cfg.depths or ())
    top = 1 + sum(depths)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = layer_decay ** (top - encoder_layer_id(name, depths)) if ".encoder." in f".{name}" else 1.0
        wd = 0.0 if p.ndim <= 1 or "modality_embeddings" in name else weight_decay
        groups.setdefault((lr * scale, wd), []).append(p)
    return [{"params": ps, "lr": g_lr, "weight_decay": wd} for (g_lr, wd), ps in sorted(groups.items())]


def prepare_model(
    model: nn.Module,
    mode: Mode,
    *,
    lr: float,
    layer_decay: float = 0.75,
    weight_decay: float = 0.05,
    lora_rank: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.0,
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Set up `model` for `mode` and return it (a `PeftModel` for LoRA) with its optimiser parameter groups."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    heads = _head_names(model)
    if mode == "full":
        model.requires_grad_(True)
        return model, llrd_param_groups(model, lr, layer_decay, weight_decay)
    if mode == "linear":
        model.requires_grad_(False)
        for h in heads:
            getattr(model, h).requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
        return model, [{"params": params, "lr": lr, "weight_decay": weight_decay}]
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=list(LORA_TARGETS),
        modules_to_save=heads,
    )
    peft_model = get_peft_model(model, config)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    return peft_model, [{"params": params, "lr": lr, "weight_decay": weight_decay}]


def trainable_share(model: nn.Module) -> tuple[int, int, float]:
    """(trainable, total, trainable / total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total, trainable / max(total, 1)


# ---------------------------------------------------------------------------------------------------------
# training and evaluation with the stock transformers Trainer


def data_collator(data: TaskData, processor: Any = None) -> GeoMeldDataCollator:
    """The collator for `data`'s rows, by its labels: (N, H, W) segmentation, (N, K) multi-hot, (N,) classes.
    `TaskData` rows are processed already, so `processor` is only carried along."""
    from .collators import ClassificationCollator, SegmentationCollator

    if data.labels.ndim == 3:
        return SegmentationCollator(processor)
    if data.labels.ndim == 2:
        return ClassificationCollator(processor, num_labels=int(data.labels.shape[1]), multi_label=True)
    return ClassificationCollator(processor)


def training_arguments(
    output_dir: str | Path,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    lr: float = 1e-3,
    max_grad_norm: float = 1.0,
    progress: bool = False,
    **overrides: Any,
) -> TrainingArguments:
    """`TrainingArguments` of a fine-tuning run: `steps` optimiser steps, a loss logged every step (NaN and
    inf kept, not averaged away), seeded sampling, no checkpoints, no reporting, the CPU where there is no GPU.
    `overrides` go to `TrainingArguments` as they are (`save_strategy="steps"` to write checkpoints, say)."""
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "max_steps": steps,
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": batch_size,
        "learning_rate": lr,  # the optimizer's groups carry their own rates; this is what a fresh optimizer gets
        "max_grad_norm": max_grad_norm,
        "logging_steps": 1,
        "logging_nan_inf_filter": False,
        "save_strategy": "no",
        "report_to": "none",
        "seed": seed,
        "data_seed": seed,
        "dataloader_drop_last": True,
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,  # the collator reads modality columns the forward signature does not name
        "label_names": ["labels"],  # a PeftModel's forward(*args, **kwargs) hides them from the Trainer
        "disable_tqdm": not progress,
        "use_cpu": not torch.cuda.is_available(),
    }
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def finetune_trainer(
    model: nn.Module,
    groups: list[dict[str, Any]],
    data: TaskData,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    output_dir: str | Path,
    warmup_steps: int = 10,
    max_grad_norm: float = 1.0,
    progress: bool = False,
    processor: Any = None,
    eval_data: TaskData | None = None,
    compute_metrics: Callable[[Any], dict[str, float]] | None = None,
    **overrides: Any,
) -> Trainer:
    """A stock `transformers.Trainer` for `model` on `data`, with AdamW over `groups` (the layer-wise decayed
    groups of `prepare_model`, each with its own lr) and warm-up + cosine decay, passed as `optimizers=`.
    `processor` becomes the Trainer's `processing_class`, so `trainer.save_model(DIR)` folders carry it."""
    batch = min(batch_size, len(data))
    optimizer = torch.optim.AdamW(groups)
    schedule = get_cosine_schedule_with_warmup(optimizer, min(warmup_steps, steps // 4), steps)
    args = training_arguments(
        output_dir, steps=steps, batch_size=batch, seed=seed, lr=max(g["lr"] for g in groups),
        max_grad_norm=max_grad_norm, progress=progress, **overrides,
    )  # fmt: skip
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=eval_data,
        data_collator=data_collator(data, processor),
        processing_class=processor,
        optimizers=(optimizer, schedule),
        compute_metrics=compute_metrics,
    )
    if not progress:
        trainer.remove_callback(PrinterCallback)  # it prints every step's log dict when there is no bar
    return trainer


@contextmanager
def _scratch(output_dir: str | Path | None) -> Iterator[str]:
    """`output_dir`, or a temporary folder removed afterwards (the Trainer creates its output folder)."""
    if output_dir is not None:
        yield str(output_dir)
        return
    with tempfile.TemporaryDirectory(prefix="geomeld-finetune-") as tmp:
        yield tmp


def train(
    model: nn.Module,
    groups: list[dict[str, Any]],
    data: TaskData,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    warmup_steps: int = 10,
    max_grad_norm: float = 1.0,
    progress: bool = False,
    processor: Any = None,
    output_dir: str | Path | None = None,
) -> list[float]:
    """Train with the stock Trainer (`finetune_trainer`) for `steps` steps on shuffled minibatches (seeded);
    returns the loss of every step. Nothing is written unless `output_dir` is given."""
    with _scratch(output_dir) as folder:
        trainer = finetune_trainer(
            model, groups, data, steps=steps, batch_size=batch_size, seed=seed, output_dir=folder,
            warmup_steps=warmup_steps, max_grad_norm=max_grad_norm, progress=progress, processor=processor,
        )  # fmt: skip
        trainer.train()
    return [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]


def predict(model: nn.Module, data: TaskData, batch_size: int = 16) -> torch.Tensor:
    """Logits for every sample of `data`, in order (`Trainer.predict`)."""
    with _scratch(None) as folder:
        args = training_arguments(folder, steps=1, batch_size=batch_size, seed=0, dataloader_drop_last=False)
        collate = data_collator(data)
        # logits only: labels are not an input of a prediction (models without a `labels` argument take none)
        trainer = Trainer(model=model, args=args, data_collator=lambda rows: {k: v for k, v in collate(rows).items() if k != "labels"})
        trainer.remove_callback(PrinterCallback)
        predictions = trainer.predict(cast(Any, data)).predictions
    logits = predictions[0] if isinstance(predictions, tuple) else predictions
    return torch.from_numpy(np.asarray(logits))


def interquartile_mean(values: Sequence[float]) -> float:
    """Mean of the middle 50 % of the values (rliable's IQM): robust to a single outlier seed."""
    xs = np.sort(np.asarray(values, dtype=np.float64))
    n = len(xs)
    if n == 0:
        raise ValueError("interquartile_mean of no values")
    if n < 4:
        return float(xs.mean())
    lo, hi = n / 4, 3 * n / 4
    # fractional trimming so every n gives the exact middle half
    weights = np.clip(np.minimum(np.arange(1, n + 1), hi) - np.maximum(np.arange(n), lo), 0, 1)
    return float((xs * weights).sum() / weights.sum())


def summarise(scores: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation and IQM over seeds."""
    return {
        "mean": float(statistics.fmean(scores)),
        "std": float(statistics.stdev(scores)) if len(scores) > 1 else 0.0,
        "iqm": interquartile_mean(scores),
        "n": float(len(scores)),
    }


def run_seeds(
    build_model: Callable[[], nn.Module],
    mode: Mode,
    train_data: TaskData,
    test_data: TaskData,
    score: Callable[[torch.Tensor, torch.Tensor], dict[str, float]],
    *,
    seeds: Sequence[int],
    steps: int,
    batch_size: int,
    lr: float,
    after_train: Callable[[int, nn.Module], None] | None = None,
    processor: Any = None,
    **mode_kwargs: Any,
) -> dict[str, Any]:
    """Train and test one mode for every seed; returns per-seed scores and their summaries.
    `after_train(seed, model)` runs after each seed's training (to save an adapter, say); `processor` is the
    Trainer's `processing_class`."""
    per_seed = []
    for seed in seeds:
        torch.manual_seed(seed)
        model, groups = prepare_model(build_model(), mode, lr=lr, **mode_kwargs)
        losses = train(model, groups, train_data, steps=steps, batch_size=batch_size, seed=seed, processor=processor)
        metrics = score(predict(model, test_data), test_data.labels)
        if after_train is not None:
            after_train(seed, model)
        trainable, total, share = trainable_share(model)
        per_seed.append({"seed": seed, **metrics, "final_loss": losses[-1], "first_loss": losses[0], "trainable": trainable, "total": total, "trainable_share": share})
    names = [k for k in per_seed[0] if k not in ("seed", "trainable", "total", "trainable_share", "first_loss", "final_loss")]
    return {
        "mode": mode,
        "seeds": list(seeds),
        "per_seed": per_seed,
        "summary": {k: summarise([r[k] for r in per_seed]) for k in names},
        "trainable_share": per_seed[0]["trainable_share"],
    }

