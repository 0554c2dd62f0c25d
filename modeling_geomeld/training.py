"""Small training utilities shared by the demo, tests and benchmarks.

`fit_in_memory` pretrains `GeoMeldForPreTraining` on arrays already in memory: a fresh random crop and
patch mask each step, AdamW with linear warm-up and cosine decay, gradient clipping, and the JEPA EMA
update with its momentum schedule after every optimiser step. Every loss part is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup


def loss_parts(output: Any) -> dict[str, float]:
    """Every named loss of a `GeoMeldForPreTrainingOutput` as floats (per modality for MP-MAE)."""
    parts = {k: float(getattr(output, k).detach()) for k in ("loss", "mpmae_loss", "jepa_loss", "itc_loss") if getattr(output, k) is not None}
    parts.update({f"mpmae/{k}": float(v.detach()) for k, v in (output.mpmae_losses or {}).items()})
    return parts


def fit_in_memory(
    model: Any,
    processor: Any,
    images: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray] | None,
    captions: Sequence[str] | None,
    *,
    steps: int,
    lr: float = 2e-3,
    warmup_steps: int = 10,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Pretrain on the whole (small) batch for `steps` steps; returns the loss parts of every step."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    schedule = get_cosine_schedule_with_warmup(optimizer, min(warmup_steps, steps // 2), steps)
    generator = torch.Generator().manual_seed(seed)
    history = []
    bar = tqdm(range(steps), desc="pretraining", disable=not progress)
    for step in bar:
        batch = processor(images=images, targets=targets, text=list(captions) if captions else None, seed=seed + step)
        out = model(**batch, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        schedule.step()
        model.update_ema(model.ema_momentum_at(step + 1, steps))
        history.append(loss_parts(out))
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    return history


def plot_losses(history: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """A loss-curve figure, one line per loss part (log scale), written to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    keys = sorted({k for h in history for k in h})
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for key in keys:
        ys = [h.get(key, np.nan) for h in history]
        ax.plot(range(1, len(ys) + 1), ys, label=key, lw=1.5 if key == "loss" else 1.0)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("GeoMeld-FM pretraining")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
