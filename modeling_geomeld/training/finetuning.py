"""Fine-tuning GeoMeld-FM on a downstream task: linear probing, full fine-tuning with layer-wise learning-rate
decay, and PEFT LoRA on the encoder's linear layers (head trained in full); multi-seed runs with the mean,
standard deviation and interquartile mean.

Task data is held in memory as a `TaskData` of already processed tensors (GEO-Bench tasks and the tests'
tasks are small); the training loop samples minibatches with a seeded generator.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

if TYPE_CHECKING:
    from modeling_geomeld.configuration_geomeld import GeoMeldConfig

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

    def batch(self, index: torch.Tensor) -> dict[str, Any]:
        return {
            "pixel_values": {k: v[index] for k, v in self.pixel_values.items()},
            "valid_mask": {k: v[index] for k, v in self.valid_mask.items()} or None,
            "labels": self.labels[index],
        }


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
# training and evaluation


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
) -> list[float]:
    """AdamW with warm-up and cosine decay on random minibatches; returns the loss of every step."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(groups)
    schedule = get_cosine_schedule_with_warmup(optimizer, min(warmup_steps, steps // 4), steps)
    params = [p for g in groups for p in g["params"]]
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="fine-tuning", disable=not progress):
        index = torch.randint(0, len(data), (min(batch_size, len(data)),), generator=generator)
        out = model(**data.batch(index))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        schedule.step()
        losses.append(float(out.loss.detach()))
    return losses


@torch.no_grad()
def predict(model: nn.Module, data: TaskData, batch_size: int = 16) -> torch.Tensor:
    """Logits for every sample of `data`, in order."""
    model.eval()
    chunks = []
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)))
        batch = data.batch(index)
        batch.pop("labels")
        chunks.append(model(**batch).logits)
    return torch.cat(chunks)


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
    **mode_kwargs: Any,
) -> dict[str, Any]:
    """Train and test one mode for every seed; returns per-seed scores and their summaries.
    `after_train(seed, model)` runs after each seed's training (to save an adapter, say)."""
    per_seed = []
    for seed in seeds:
        torch.manual_seed(seed)
        model, groups = prepare_model(build_model(), mode, lr=lr, **mode_kwargs)
        losses = train(model, groups, train_data, steps=steps, batch_size=batch_size, seed=seed)
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

