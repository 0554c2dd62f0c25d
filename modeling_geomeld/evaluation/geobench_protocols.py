"""GEO-Bench evaluation protocols: MMEarth's fine-tuning recipe, frozen-encoder probes and k-NN, over seeds,
with bootstrap confidence intervals, resumable per run, as JSON, a Markdown table and a plot.

GEO-Bench numbers only compare within a protocol (band choice and normalisation alone move a checkpoint by many
points), so every protocol is spelled out here as data (`Recipe`) and each result records the recipe it ran.

Protocols and their columns (the paper's table has FT and LP columns):

``mmearth``
    The recipe of MMEarth-train (``main_finetune.py``, ``slurm_scripts/slurm_fine_tune_all.sh`` and
    ``slurm_fine_tune_seg_all.sh``). Classification: AdamW (betas 0.9/0.999), lr = 2e-4 x 1024 / 256 (base lr
    x effective batch 64 x 16 accumulation / 256), cosine to 0 without warm-up, 100 epochs, layer-wise decay 0.9,
    weight decay 0.3, drop path 0.1, label smoothing 0.2, head initialised with std 2e-5, no gradient clipping.
    ``FT`` trains everything (layer-wise decay); ``LP`` trains the linear head on the frozen encoder with the
    same recipe. Segmentation (ConvNeXt + UNet decoder): effective batch 32 (8 x 4), lr = 1e-2 x 32 / 256,
    200 epochs, no smoothing; ``FT`` is MMEarth's "unet lp&ft": decoder only for the first quarter (their 50 of
    200 epochs), then everything; ``LP`` keeps the encoder frozen throughout. Metrics as MMEarth's
    ``engine_finetune.py``: micro-F1 (threshold 0.5) for m-bigearthnet, accuracy for single-label tasks, macro
    Jaccard (mean IoU over the classes present) for segmentation. Patches go in at their native size, cropped
    to the encoder's patch multiple (m-bigearthnet 120 -> 112): MMEarth-train does not resize GEO-Bench patches
    (its ``--input_size 112`` names the pretraining size), but our encoder needs a multiple of its stride.
``frozen``
    The Galileo / TerraFM style: the encoder stays frozen in eval mode (no drop path, no batch statistics);
    ``LP`` is a linear probe on standardised pooled features (BatchNorm without affine, then linear, as MAE's
    probe) for classification, and a light decoder (every stage resized to the first stage's grid,
    concatenated, one 1x1 convolution, bilinear upsampling) for segmentation.
``knn``
    No training: cosine similarity of pooled embeddings (FAISS inner product on L2-normalised vectors),
    ``k=5`` and ``k=20`` columns; single-label by majority vote (ties broken by summed similarity),
    multi-label by the neighbours' mean multi-hot > 0.5; segmentation per patch of the last stage (each
    training patch labelled with its majority class, the prediction painted over the query patch).

Every (checkpoint, task, column, seed) run is one JSON file written atomically; a rerun skips finished ones.
Confidence intervals are percentile bootstraps over test samples (the same resampled indices for every seed,
the seed mean recomputed per resample, from per-sample sufficient statistics), seeded.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import ModelOutput

from modeling_geomeld.training.finetuning import TaskData, predict, prepare_model, train

Protocol = Literal["mmearth", "frozen", "knn"]
PROTOCOLS: tuple[str, ...] = ("mmearth", "frozen", "knn")
#: the table's columns per protocol
COLUMNS: dict[str, tuple[str, ...]] = {"mmearth": ("FT", "LP"), "frozen": ("LP",), "knn": ("k=5", "k=20")}
PRESET_NAMES: tuple[str, ...] = ("smoke", "full")
RANDOM = "random"
MAJORITY = "majority class"
CHANCE = "label prior, sampled"
#: MMEarth-train's substitutes for Sentinel-2 bands a task lacks (TRAINING.md: "in the case of so2sat ... we
#: replace the missing bands with ones containing similar wavelength (B1 -> B2, B9 -> B8A)")
S2_SUBSTITUTES: dict[str, str] = {"B01": "B02", "B09": "B8A"}
BOOTSTRAP_RESAMPLES = 1000


# ---------------------------------------------------------------------------------------------------------
# recipes
@dataclass(frozen=True)
class Recipe:
    """One protocol column's training recipe (all numbers a result depends on, recorded with it).

    ``steps`` fixes the optimiser steps; otherwise ``epochs`` x ceil(train samples / batch). The learning rate
    is ``base_lr x batch_size / 256`` (MMEarth's scaling) unless ``lr`` is set.
    """

    mode: Literal["full", "linear", "probe_then_full", "frozen_probe", "knn"]
    batch_size: int = 64
    epochs: int = 100
    steps: int | None = None
    base_lr: float = 2e-4
    lr: float | None = None
    layer_decay: float = 0.9
    weight_decay: float = 0.3
    label_smoothing: float = 0.0
    drop_path: float = 0.0
    warmup_steps: int = 0
    probe_fraction: float = 0.0
    head_init_std: float | None = None
    max_grad_norm: float = math.inf
    k: int = 0
    max_tokens: int | None = None
    max_train: int | None = None
    max_test: int | None = None

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else self.base_lr * self.batch_size / 256

    def steps_for(self, n_train: int) -> int:
        if self.steps is not None:
            return self.steps
        return self.epochs * max(1, math.ceil(n_train / self.batch_size))


def recipe(protocol: str, column: str, kind: str, preset: str = "full") -> Recipe:
    """The recipe of a protocol column for a task kind (``single_label``, ``multi_label``, ``segmentation``)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {list(PROTOCOLS)}")
    if column not in COLUMNS[protocol]:
        raise ValueError(f"protocol {protocol} has columns {list(COLUMNS[protocol])}, got {column!r}")
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; expected one of {list(PRESET_NAMES)}")
    seg = kind == "segmentation"
    if protocol == "mmearth":
        if seg:  # slurm_fine_tune_seg_all.sh: batch 8 x update_freq 4, blr 1e-2, 200 epochs, smoothing 0
            out = Recipe("probe_then_full" if column == "FT" else "linear", batch_size=32, epochs=200, base_lr=1e-2,
                         drop_path=0.1, probe_fraction=0.25)  # fmt: skip
        else:  # slurm_fine_tune_all.sh: batch 64 x update_freq 16, blr 2e-4, 100 epochs, smoothing 0.2
            out = Recipe("full" if column == "FT" else "linear", batch_size=1024, epochs=100, base_lr=2e-4,
                         drop_path=0.1, label_smoothing=0.2, head_init_std=2e-5)  # fmt: skip
    elif protocol == "frozen":
        out = Recipe("frozen_probe", batch_size=32 if seg else 128, epochs=50, lr=1e-3, weight_decay=0.0,
                     layer_decay=1.0)  # fmt: skip
    else:
        out = Recipe("knn", k=int(column.split("=")[1]), max_tokens=200_000 if seg else None)
    if preset == "smoke":
        # minutes on a CPU: few steps on the first samples, absolute learning rates large enough to move
        out = replace(out, steps=None if out.mode == "knn" else 12, batch_size=8, lr=3e-3 if out.mode in ("full", "probe_then_full") else 1e-2,
                      max_train=64, max_test=64, head_init_std=None)  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------------------
# per-sample statistics, metrics and bootstrap intervals
def sample_statistics(kind: str, logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> np.ndarray:
    """Per test sample, the counts its metric is a function of (summed over samples): single-label
    [correct]; multi-label [tp, fp, fn] at threshold 0.5; segmentation its K x K confusion (reference-major)."""
    if kind == "multi_label":
        pred, ref = (logits > 0).numpy(), labels.numpy().astype(bool)
        return np.stack([(pred & ref).sum(1), (pred & ~ref).sum(1), (~pred & ref).sum(1)], 1).astype(np.float64)
    if kind == "segmentation":
        pred = logits.argmax(1).reshape(len(labels), -1).numpy()
        ref = labels.reshape(len(labels), -1).numpy()
        keep = (ref >= 0) & (ref < num_labels)
        cells = np.where(keep, ref * num_labels + pred, num_labels * num_labels)  # dropped pixels -> spare bin
        rows = np.arange(len(ref))[:, None] * (num_labels * num_labels + 1) + cells
        counts = np.bincount(rows.ravel(), minlength=len(ref) * (num_labels * num_labels + 1))
        return counts.reshape(len(ref), -1)[:, :-1].astype(np.float64)
    return (logits.argmax(1) == labels).numpy().astype(np.float64)[:, None]


def metric_from_sums(kind: str, sums: np.ndarray, n: int, num_labels: int) -> np.ndarray:
    """The metric from summed statistics, vectorised over leading axes: accuracy, micro-F1, or mean IoU over
    the classes present in references or predictions (torchmetrics' macro Jaccard, our `mean_iou`)."""
    if kind == "multi_label":
        tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
        denominator = 2 * tp + fp + fn
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1e-12), 0.0)
    if kind == "segmentation":
        confusion = sums.reshape(*sums.shape[:-1], num_labels, num_labels)
        inter = np.diagonal(confusion, axis1=-2, axis2=-1)
        union = confusion.sum(-1) + confusion.sum(-2) - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), np.nan)
        present = (union > 0).sum(-1)
        return np.where(present > 0, np.nansum(np.nan_to_num(iou), -1) / np.maximum(present, 1), np.nan)
    return sums[..., 0] / n


def bootstrap_interval(
    stats_per_seed: Sequence[np.ndarray], kind: str, num_labels: int, *, seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
) -> tuple[float, float]:  # fmt: skip
    """Percentile bootstrap interval of the seed-mean metric over test samples: each resample draws test
    samples with replacement (the same draw for every seed, as the seeds share the test set)."""
    n = len(stats_per_seed[0])
    if any(len(s) != n for s in stats_per_seed):
        raise ValueError(f"every seed must score the same test samples, got {[len(s) for s in stats_per_seed]}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    counts = np.zeros((resamples, n))
    np.add.at(counts, (np.repeat(np.arange(resamples), n), draws.ravel()), 1.0)
    values = np.mean([metric_from_sums(kind, counts @ s, n, num_labels) for s in stats_per_seed], axis=0)
    alpha = (1 - level) / 2
    lo, hi = np.nanquantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------------------
# frozen-encoder heads and embeddings (so that training and prediction go through training.finetuning)
@dataclass
class ProbeOutput(ModelOutput):
    """Output of the probes: `loss` (scalar or None) and `logits` ((B, K) or (B, K, H, W)); a `ModelOutput`, as
    the Trainer that `finetuning.train` / `predict` run indexes its outputs."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class LightDecoder(nn.Module):
    """Every encoder stage resized to the first stage's grid, concatenated, one 1x1 convolution: a decoder that
    is linear in the frozen features, upsampled bilinearly to the input size."""

    def __init__(self, dims: Sequence[int], num_labels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(sum(dims), affine=False)
        self.classifier = nn.Conv2d(sum(dims), num_labels, kernel_size=1)

    def forward(self, stages: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        grid = stages[0].shape[-2:]
        x = torch.cat([F.interpolate(s, size=grid, mode="bilinear", align_corners=False) for s in stages], 1)
        return F.interpolate(self.classifier(self.norm(x)), size=size, mode="bilinear", align_corners=False)


class FrozenEncoderProbe(nn.Module):
    """A frozen GeoMeld encoder (kept in eval mode) under a trainable head named as the task models name
    theirs (`classifier`, `decode_head`), so `prepare_model(..., "linear")` and `train` drive it."""

    def __init__(self, encoder: nn.Module, kind: str, num_labels: int, smoothing: float = 0.0):
        super().__init__()
        cfg: Any = getattr(encoder, "config").encoder_cfg  # noqa: B009  (a GeoMeldVisionModel's config)
        self.encoder = encoder.requires_grad_(False)
        self.kind, self.smoothing = kind, smoothing
        if kind == "segmentation":
            self.decode_head = LightDecoder(list(cfg.dims), num_labels)
        else:
            self.classifier = nn.Sequential(nn.BatchNorm1d(cfg.hidden_size, affine=False), nn.Linear(cfg.hidden_size, num_labels))

    def train(self, mode: bool = True) -> FrozenEncoderProbe:
        super().train(mode)
        self.encoder.eval()  # frozen means frozen: no drop path, no statistics updates
        return self

    def forward(
        self, pixel_values: dict[str, torch.Tensor], valid_mask: dict[str, torch.Tensor] | None = None,
        labels: torch.Tensor | None = None,
    ) -> ProbeOutput:  # fmt: skip
        seg = self.kind == "segmentation"
        with torch.no_grad():
            out = self.encoder(pixel_values, valid_mask, output_hidden_states=seg, return_dict=True)
        if seg:
            size = tuple(next(iter(pixel_values.values())).shape[-2:])
            logits = self.decode_head(list(out.hidden_states[1:]), size)
        else:
            logits = self.classifier(out.pooler_output)
        return ProbeOutput(loss=None if labels is None else task_loss(self.kind, logits, labels, self.smoothing), logits=logits)


def task_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """The losses of the GeoMeld task heads: BCE (multi-label), cross-entropy ignoring -1 (segmentation), CE."""
    if kind == "multi_label":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype) * (1 - smoothing) + 0.5 * smoothing)
    if kind == "segmentation":
        return F.cross_entropy(logits, labels.long(), ignore_index=-1, label_smoothing=smoothing)
    return F.cross_entropy(logits, labels.long(), label_smoothing=smoothing)


class Embedder(nn.Module):
    """Frozen encoder whose `logits` are the embeddings k-NN compares: the pooled vector (B, D), or for
    segmentation the last stage's map (B, D, h, w); so `finetuning.predict` batches it."""

    def __init__(self, encoder: nn.Module, dense: bool):
        super().__init__()
        self.encoder, self.dense = encoder.eval().requires_grad_(False), dense

    def forward(self, pixel_values: dict[str, torch.Tensor], valid_mask: dict[str, torch.Tensor] | None = None) -> ProbeOutput:
        out = self.encoder(pixel_values, valid_mask, output_hidden_states=self.dense, return_dict=True)
        return ProbeOutput(logits=out.hidden_states[-1] if self.dense else out.pooler_output)


def knn_logits(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, k: int, kind: str, num_labels: int
) -> torch.Tensor:
    """k-NN scores by cosine similarity (FAISS exact inner product on L2-normalised rows), shaped like logits:
    single-label votes + summed similarity / (2(k+1)) (breaks ties, never outvotes); multi-label mean
    neighbour multi-hot - 0.5 (positive = predicted)."""
    import faiss

    def unit(x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(F.normalize(x.double(), dim=1).float().numpy())

    index = faiss.IndexFlatIP(train_x.shape[1])
    index.add(unit(train_x))
    k = min(k, len(train_x))
    sims, idx = index.search(unit(test_x), k)
    neighbours = train_y[torch.from_numpy(idx)]  # (Q, k) or (Q, k, L)
    if kind == "multi_label":
        return neighbours.float().mean(1) - 0.5
    votes = F.one_hot(neighbours.long(), num_labels).double()  # (Q, k, K)
    similarity = torch.from_numpy(sims).double()[..., None]
    return (votes.sum(1) + (votes * similarity).sum(1) / (2 * (k + 1))).float()


def patch_labels(labels: torch.Tensor, grid: tuple[int, int], num_labels: int) -> torch.Tensor:
    """Majority class of each cell of a (h, w) grid over (N, H, W) label maps; -1 where a cell has no label."""
    n, height, width = labels.shape
    h, w = grid
    cells = labels.reshape(n, h, height // h, w, width // w).permute(0, 1, 3, 2, 4).reshape(n, h, w, -1)
    counts = F.one_hot(cells.clamp_min(0).long(), num_labels).mul((cells >= 0)[..., None]).sum(-2)  # (N, h, w, K)
    return torch.where(counts.sum(-1) > 0, counts.argmax(-1), torch.full_like(counts[..., 0], -1))


# ---------------------------------------------------------------------------------------------------------
# one run
@dataclass
class RunResult:
    """One (checkpoint, task, column, seed) run, as written to its JSON file."""

    checkpoint: str
    task: str
    protocol: str
    column: str
    seed: int
    kind: str
    metric: str
    num_labels: int
    value: float
    n_test: int
    n_train: int
    stats: list[list[float]]
    recipe: dict[str, Any]
    steps: int = 0
    first_loss: float | None = None
    final_loss: float | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _head(data: TaskData, n: int | None) -> TaskData:
    if n is None or n >= len(data):
        return data
    return TaskData({k: v[:n] for k, v in data.pixel_values.items()}, data.labels[:n],
                    {k: v[:n] for k, v in data.valid_mask.items()})  # fmt: skip


def prior_sample_logits(kind: str, train_labels: torch.Tensor, test_labels: torch.Tensor, num_labels: int, seed: int) -> torch.Tensor:
    """Logits of a predictor that ignores the image and draws its answer from the training labels' marginal:
    per test sample (single-label), per label (multi-label: Bernoulli of its training frequency), per pixel
    (segmentation). The other "knows nothing" baseline: mean IoU rewards spreading guesses over the classes
    (the majority class scores frequency / classes present), so for segmentation it is the higher of the two."""
    g = torch.Generator().manual_seed(20_011 + seed)
    if kind == "multi_label":
        prior = train_labels.float().mean(0).expand(len(test_labels), -1)
        return torch.where(torch.rand(prior.shape, generator=g) < prior, 1.0, -1.0)
    known = train_labels[train_labels >= 0].flatten().long()
    prior = torch.bincount(known, minlength=num_labels).double()
    drawn = torch.multinomial(prior / prior.sum(), test_labels.numel(), replacement=True, generator=g)
    onehot = F.one_hot(drawn.reshape(test_labels.shape), num_labels).float()  # (N, [H, W,] K)
    return onehot.movedim(-1, 1)


def shuffled_labels(data: TaskData, seed: int) -> TaskData:
    """The split with its labels (whole label maps, for segmentation) permuted among its samples, seeded: the
    label marginal stays, any link between image and label goes. A protocol scoring above the knows-nothing
    baselines on these labels learns from something other than the images (a leak, a test-set peek).

    The permutation is a random cycle (sample perm[i] takes the label of perm[i + 1]), a derangement: a plain
    permutation leaves one sample on its own label in expectation, which on a few dozen training samples
    k-NN and probes exploit (m-cashew-plant k=5 reached 23.5 mIoU against 11 for chance at such a seed)."""
    n = len(data)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(10_007 + seed))
    order = torch.empty_like(perm)
    order[perm] = perm.roll(-1)
    return TaskData(data.pixel_values, data.labels[order], data.valid_mask)


def _train(model: nn.Module, groups: list[dict[str, Any]], data: TaskData, rec: Recipe, steps: int, seed: int) -> list[float]:
    # warm-up and clipping are keyword options of `train` beyond its fixed signature: pass those it takes
    import inspect

    options: dict[str, Any] = {"warmup_steps": rec.warmup_steps, "max_grad_norm": rec.max_grad_norm}
    accepted = inspect.signature(train).parameters
    extra = {k: v for k, v in options.items() if k in accepted}
    return train(model, groups, data, steps=steps, batch_size=rec.batch_size, seed=seed, **extra)


def run_protocol(
    task: Any, protocol: str, column: str, rec: Recipe, seed: int, *,
    build_task_model: Callable[[Recipe], nn.Module], build_encoder: Callable[[], nn.Module],
    shuffle_labels: bool = False,
) -> tuple[torch.Tensor, dict[str, Any]]:  # fmt: skip
    """Train (or not) and predict the test split; returns test logits and training facts. `shuffle_labels`
    permutes the training labels among the training samples (seeded by `seed`): the control run."""
    train_data, test_data = _head(task.train, rec.max_train), _head(task.test, rec.max_test)
    if shuffle_labels:
        train_data = shuffled_labels(train_data, seed)
    if rec.mode == "knn":
        return _knn(task, train_data, test_data, rec, build_encoder(), seed), {"steps": 0}
    torch.manual_seed(seed)
    lr = rec.learning_rate()
    steps = rec.steps_for(len(train_data))
    if rec.mode == "frozen_probe":
        model: nn.Module = FrozenEncoderProbe(build_encoder(), task.kind, task.num_labels, rec.label_smoothing)
        model, groups = prepare_model(model, "linear", lr=lr, weight_decay=rec.weight_decay)
        losses = _train(model, groups, train_data, rec, steps, seed)
    elif rec.mode == "probe_then_full":
        probe_steps = max(1, round(steps * rec.probe_fraction))
        model, groups = prepare_model(build_task_model(rec), "linear", lr=lr, weight_decay=rec.weight_decay)
        losses = _train(model, groups, train_data, rec, probe_steps, seed)
        # MMEarth adds the encoder to the optimiser at epoch 50 without a layer scale: full lr everywhere
        model, groups = prepare_model(model, "full", lr=lr, layer_decay=1.0, weight_decay=rec.weight_decay)
        losses += _train(model, groups, train_data, rec, steps - probe_steps, seed + 1)
    else:
        model, groups = prepare_model(build_task_model(rec), rec.mode, lr=lr, layer_decay=rec.layer_decay,
                                      weight_decay=rec.weight_decay)  # fmt: skip
        losses = _train(model, groups, train_data, rec, steps, seed)
    logits = predict(model, test_data, batch_size=min(max(rec.batch_size, 16), 256))
    return logits, {"steps": steps, "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
                    "n_train": len(train_data)}  # fmt: skip


def _knn(task: Any, train_data: TaskData, test_data: TaskData, rec: Recipe, encoder: nn.Module, seed: int) -> torch.Tensor:
    dense = task.kind == "segmentation"
    embedder = Embedder(encoder, dense)
    train_x, test_x = predict(embedder, train_data, 16), predict(embedder, test_data, 16)
    if not dense:
        return knn_logits(train_x, train_data.labels, test_x, rec.k, task.kind, task.num_labels)
    grid = (int(train_x.shape[-2]), int(train_x.shape[-1]))
    height, width = test_data.labels.shape[-2:]
    if height % grid[0] or width % grid[1]:
        raise ValueError(f"label maps {height}x{width} are not a multiple of the feature grid {grid}")
    tokens = train_x.permute(0, 2, 3, 1).reshape(-1, train_x.shape[1])
    token_labels = patch_labels(train_data.labels, grid, task.num_labels).reshape(-1)
    keep = torch.nonzero(token_labels >= 0).squeeze(1)
    if rec.max_tokens is not None and len(keep) > rec.max_tokens:  # a seeded subsample bounds memory
        keep = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(seed))[: rec.max_tokens]]
    queries = test_x.permute(0, 2, 3, 1).reshape(-1, test_x.shape[1])
    scores = knn_logits(tokens[keep], token_labels[keep], queries, rec.k, "single_label", task.num_labels)
    scores = scores.reshape(len(test_x), *grid, -1).permute(0, 3, 1, 2)  # (N, K, h, w)
    return F.interpolate(scores, size=(height, width), mode="nearest")


# ---------------------------------------------------------------------------------------------------------
# results on disk
def atomic_write_json(path: Path, payload: Any) -> None:
    """Write JSON to a temporary file beside `path`, then rename: a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def run_path(out: Path, protocol: str, checkpoint: str, task: str, column: str, seed: int) -> Path:
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in f"{checkpoint}")
    col = column.replace("=", "")
    return out / "runs" / protocol / safe / task / f"{col}-seed{seed}.json"


def result_of(
    task: Any, logits: torch.Tensor, labels: torch.Tensor, facts: dict[str, Any], **ids: Any
) -> RunResult:
    """The run's JSON record: headline metric from the shared metric functions, per-sample statistics."""
    from modeling_geomeld.evaluation import accuracy, mean_iou, micro_f1

    if task.kind == "segmentation":
        value = float(mean_iou(logits.argmax(1).numpy(), labels.numpy(), num_labels=task.num_labels, ignore_index=-1)["mean_iou"])
    elif task.kind == "multi_label":
        value = float(micro_f1((logits > 0).int().numpy(), labels.int().numpy()))
    else:
        value = float(accuracy(logits.argmax(1).numpy(), labels.numpy()))
    stats = sample_statistics(task.kind, logits, labels, task.num_labels)
    return RunResult(task=task.name.split(":", 1)[-1], kind=task.kind, metric=task.metric, num_labels=task.num_labels,
                     value=value, n_test=len(labels), stats=stats.tolist(), steps=facts.get("steps", 0),
                     n_train=facts.get("n_train", len(task.train)), first_loss=facts.get("first_loss"),
                     final_loss=facts.get("final_loss"), **ids)  # fmt: skip


@dataclass
class Cell:
    """One table cell: a checkpoint's column on a task over seeds, or why it is not applicable."""

    checkpoint: str
    task: str
    column: str
    metric: str = ""
    values: list[float] = field(default_factory=list)
    mean: float = float("nan")
    std: float = float("nan")
    lo: float = float("nan")
    hi: float = float("nan")
    not_applicable: str = ""

    def text(self, scale: float = 100.0) -> str:
        if self.not_applicable:
            return self.not_applicable
        return f"{self.mean * scale:.1f} ± {self.std * scale:.1f} [{self.lo * scale:.1f}, {self.hi * scale:.1f}]"


def summarise_runs(runs: Sequence[dict[str, Any]], *, bootstrap_seed: int = 0) -> Cell:
    """Mean and sample standard deviation over seeds, and the bootstrap interval of the mean."""
    first = runs[0]
    values = [float(r["value"]) for r in runs]
    stats = [np.asarray(r["stats"], dtype=np.float64) for r in runs]
    lo, hi = bootstrap_interval(stats, first["kind"], first["num_labels"], seed=bootstrap_seed)
    return Cell(first["checkpoint"], first["task"], first["column"], first["metric"], values, float(np.mean(values)),
                float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, lo, hi)  # fmt: skip


def markdown_table(cells: Sequence[Cell], tasks: Sequence[str], columns: Sequence[str], rows: Sequence[str],
                   metrics: dict[str, str]) -> str:  # fmt: skip
    """The paper's layout: rows are checkpoints, columns task x protocol column, `mean ± std [lo, hi]` (x 100)."""
    by_key = {(c.checkpoint, c.task, c.column): c for c in cells}
    header = ["checkpoint"] + [f"{t} {c} ({metrics.get(t, '')})" for t in tasks for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        texts = [by_key[(row, t, c)].text() if (row, t, c) in by_key else "not run" for t in tasks for c in columns]
        lines.append("| " + " | ".join([row, *texts]) + " |")
    return "\n".join(lines)


def plot_cells(cells: Sequence[Cell], path: Path, title: str) -> None:
    """Bars per (task, column) grouped by checkpoint, with the bootstrap interval as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in cells if not c.not_applicable and np.isfinite(c.mean)]
    groups = sorted({(c.task, c.column) for c in shown})
    rows = list(dict.fromkeys(c.checkpoint for c in shown))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(1, len(rows)) / 2), 4))
    width = 0.8 / max(1, len(rows))
    by_key = {(c.checkpoint, c.task, c.column): c for c in shown}
    for i, row in enumerate(rows):
        xs: list[float] = []
        ys: list[float] = []
        err: list[list[float]] = [[], []]
        for j, key in enumerate(groups):
            cell = by_key.get((row, *key))
            if cell is None:
                continue
            xs.append(j + i * width)
            ys.append(100 * cell.mean)
            err[0].append(100 * max(cell.mean - cell.lo, 0))
            err[1].append(100 * max(cell.hi - cell.mean, 0))
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=row)
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(groups))], [f"{t}\n{c}" for t, c in groups], fontsize=8)
    ax.set_ylabel("score x 100 (metric per task; bars: bootstrap 95 % interval)")
    ax.set_title(title)
    if shown:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no applicable results", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# checkpoints, tasks and the benchmark loop
@dataclass(frozen=True)
class CheckpointSource:
    """A row of the table: a checkpoint folder, or a random-init model of `random_preset` (configured with
    the task's own modalities and bands, so it is applicable wherever the registry knows the task's data)."""

    name: str
    path: str | None = None
    random_preset: str = "paper-atto"


def parse_checkpoint(arg: str) -> CheckpointSource:
    """``random`` / ``random:PRESET``, ``LABEL=PATH`` or ``PATH`` (labelled by its folder name)."""
    if arg == RANDOM or arg.startswith(f"{RANDOM}:"):
        preset = arg.split(":", 1)[1] if ":" in arg else "paper-atto"
        return CheckpointSource(f"random init ({preset})", None, preset)
    label, sep, path = arg.partition("=")
    if not sep:
        label, path = Path(arg).name or arg, arg
    return CheckpointSource(label, path)


def base_config(source: CheckpointSource, preset: Any) -> Any:
    """The checkpoint's config, or a random-init config taking the task's bands the registry knows."""
    from modeling_geomeld import GeoMeldConfig
    from modeling_geomeld.modalities import MODALITIES

    if source.path is not None:
        return GeoMeldConfig.from_pretrained(source.path)
    inputs = {}
    for modality, bands in preset.modalities.items():
        known = MODALITIES[modality].band_names if modality in MODALITIES else ()
        usable = [b for b in bands if b in known and b != "B10"]  # B10 (cirrus) is dropped by name, as for 12-band models
        if usable and len(usable) == len(bands) - (1 if "B10" in bands else 0):
            inputs[modality] = usable
    if not inputs:
        return None
    return GeoMeldConfig.from_preset(source.random_preset, encoder_config={"input_modalities": inputs})


def applicability(input_modalities: dict[str, list[str]] | None, preset: Any) -> tuple[str, dict[str, dict[str, str]]]:
    """("", band fills) when the model can take the task, else ("not applicable: ...", {}). Sentinel-2 bands
    the model takes and the task lacks are filled as MMEarth does (B01 <- B02, B09 <- B8A) when possible."""
    provides = ", ".join(f"{m} ({', '.join(b)})" for m, b in preset.modalities.items())
    if input_modalities is None:
        return f"not applicable: random init needs registry modalities, task provides {provides}", {}
    served = [m for m in preset.modalities if m in input_modalities]
    if not served:
        return f"not applicable: checkpoint takes {', '.join(input_modalities)}, task provides {provides}", {}
    fills: dict[str, dict[str, str]] = {}
    for modality in served:
        given = set(preset.modalities[modality])
        missing = [b for b in input_modalities[modality] if b not in given]
        substitutes = S2_SUBSTITUTES if modality == "sentinel2" else {}
        unfillable = [b for b in missing if substitutes.get(b) not in given]
        if unfillable:
            return (f"not applicable: checkpoint takes {modality} bands {unfillable}, task provides "
                    f"{', '.join(preset.modalities[modality])}", {})  # fmt: skip
        if missing:
            fills[modality] = {b: substitutes[b] for b in missing}
    return "", fills


class BandFilling:
    """The processor, with bands a task lacks copied from their substitutes first (MMEarth's so2sat fix)."""

    def __init__(self, processor: Any, fills: dict[str, dict[str, str]]):
        self.processor, self.fills = processor, fills

    def __getattr__(self, name: str) -> Any:
        return getattr(self.processor, name)

    def __call__(self, images: dict[str, np.ndarray], band_names: dict[str, list[str]], **kwargs: Any) -> Any:
        images, band_names = dict(images), {k: list(v) for k, v in band_names.items()}
        for modality, fill in self.fills.items():
            names = band_names[modality]
            extra = [images[modality][:, names.index(source)] for source in fill.values()]  # (N, H, W) each
            images[modality] = np.concatenate([images[modality], np.stack(extra, 1)], 1)
            band_names[modality] = names + list(fill)
        return self.processor(images, band_names=band_names, **kwargs)


def _native_size(name: str, root: str | None, partition: str) -> int:
    from dataset_scripts.geobench import GeoBenchTask

    gb = GeoBenchTask.open(name, root)
    sample = gb.read_sample(gb.sample_names("train", partition)[0])
    return int(min(next(sample[m] for m in gb.bands).shape[1:]))


def task_processor(source: CheckpointSource, config: Any, size: int) -> tuple[Any, int]:
    """(the checkpoint's processor, input side) for square patches of `size` px: centre-cropped to the encoder's
    patch multiple (explicitly: the processor keeps the input size and would pad otherwise)."""
    from modeling_geomeld.training.finetune_setup import checkpoint_image_processor

    processor = checkpoint_image_processor(source.path, config)
    patch = int(config.encoder_cfg.patch_size)
    crop = size - size % patch
    if crop != size:
        processor.crop_size, processor.crop_mode = crop, "center"
    return processor, crop


def load_task(name: str, config: Any, source: CheckpointSource, fills: dict[str, dict[str, str]], *,
              root: str | None, partition: str, stats: str) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """`geobench_task` through the checkpoint's processor, the chosen statistics and band fills; patches
    centre-cropped to the encoder's patch multiple (segmentation labels with them)."""
    from dataset_scripts.tasks import geobench_task
    from modeling_geomeld.training.finetune_setup import choose_statistics

    size = _native_size(name, root, partition)
    processor, crop = task_processor(source, config, size)
    chosen = choose_statistics(stats, f"geobench:{name}", root, processor)
    task = geobench_task(name, BandFilling(chosen.processor, fills) if fills else chosen.processor, root=root,
                         partition=partition)  # fmt: skip
    if task.kind == "segmentation":
        for split in (task.train, task.test):
            height, width = next(iter(split.pixel_values.values())).shape[-2:]
            top, left = (split.labels.shape[-2] - height) // 2, (split.labels.shape[-1] - width) // 2
            split.labels = split.labels[..., top : top + height, left : left + width]
    facts = {"native_size": size, "input_size": crop, "statistics": chosen.source, "band_fills": fills,
             "input_modalities": task.input_modalities}  # fmt: skip
    return task, facts


def model_builders(source: CheckpointSource, config: Any, task: Any) -> tuple[Callable[[Recipe], nn.Module], Callable[[], nn.Module]]:
    """(task model for a recipe, bare encoder) from the checkpoint or a random init, heads sized for the task."""
    import copy

    from modeling_geomeld import (
        GeoMeldForImageClassification,
        GeoMeldForSemanticSegmentation,
        GeoMeldVisionModel,
    )

    cls = GeoMeldForSemanticSegmentation if task.kind == "segmentation" else GeoMeldForImageClassification
    id2label = dict(enumerate(task.label_names))

    def task_model(rec: Recipe) -> nn.Module:
        cfg = copy.deepcopy(config)
        cfg.id2label, cfg.label2id = id2label, {v: k for k, v in id2label.items()}
        cfg.problem_type = "multi_label_classification" if task.kind == "multi_label" else None
        cfg.label_smoothing = rec.label_smoothing
        cfg.encoder_cfg.drop_path_rate = rec.drop_path
        model = cls.from_pretrained(source.path, config=cfg) if source.path else cls(cfg)
        head = getattr(model, "classifier", None)
        if rec.head_init_std is not None and isinstance(head, nn.Linear):  # MMEarth: trunc_normal_(std=2e-5), bias 0
            nn.init.trunc_normal_(head.weight, std=rec.head_init_std)
            nn.init.zeros_(head.bias)
        return model

    def encoder() -> nn.Module:
        if source.path:
            return GeoMeldForImageClassification.from_pretrained(source.path, config=copy.deepcopy(config)).geomeld
        return GeoMeldVisionModel(copy.deepcopy(config))

    return task_model, encoder


@dataclass
class BenchmarkReport:
    """What `run_benchmark` produced: the cells, the runs computed now and those reused from disk."""

    cells: list[Cell]
    computed: list[Path]
    reused: list[Path]
    table: str
    out: Path
    stopped_early: bool = False
    controls: list[dict[str, Any]] = field(default_factory=list)


def run_benchmark(
    protocol: str, tasks: Sequence[str], checkpoints: Sequence[CheckpointSource], out: str | Path, *,
    seeds: Sequence[int] = (0, 1, 2), preset: str = "full", partition: str = "default", root: str | None = None,
    stats: str = "task", steps: int | None = None, bootstrap_seed: int = 0, max_new_runs: int | None = None,
    controls: bool = False, log: Callable[[str], None] = print,
) -> BenchmarkReport:  # fmt: skip
    """Every (checkpoint, task, column, seed) run of a protocol, resumable, then the summary files:
    `results.json`, `table.md` and `plot.png` in `out`. `max_new_runs` stops after that many new runs (to
    bound a session, or to test resuming). `controls` adds, under every checkpoint, a row of the same runs
    with the training labels shuffled (`shuffled_labels`) and a verdict per cell (`control_verdicts`)."""
    from dataset_scripts.geobench import get_preset

    out = Path(out)
    columns = COLUMNS[protocol]
    cells: list[Cell] = []
    computed: list[Path] = []
    reused: list[Path] = []
    majority: dict[str, dict[str, Any]] = {}
    chance: dict[str, list[dict[str, Any]]] = {}
    task_facts: dict[str, dict[str, Any]] = {}
    names = [get_preset(t).name for t in tasks]
    stopped = False
    arms = [(s, s.name, False) for s in checkpoints]
    if controls:
        arms = [arm for s in checkpoints for arm in ((s, s.name, False), (s, shuffled_row(s.name), True))]
    for source, row, shuffle in arms:
        for name in names:
            preset_ = get_preset(name)
            if preset_.wrong_band_names:
                log(f"warning: {name}: {preset_.notes} (selecting bands by name picks the wrong channels)")
            config = base_config(source, preset_)
            reason, fills = applicability(None if config is None else dict(config.encoder_cfg.input_modalities), preset_)
            if reason:
                cells += [Cell(row, name, c, preset_.metric, not_applicable=reason) for c in columns]
                continue
            task = None
            for column in columns:
                rec = recipe(protocol, column, "segmentation" if preset_.label_kind == "segmentation" else preset_.label_kind, preset)
                if steps is not None and rec.mode != "knn":
                    rec = replace(rec, steps=steps)
                runs = []
                for seed in seeds:
                    path = run_path(out, protocol, row, name, column, seed)
                    if path.is_file():
                        stored = json.loads(path.read_text())
                        if (stored.get("recipe") == asdict(rec) and stored.get("checkpoint_path") == source.path
                                and stored.get("shuffled_train_labels", False) == shuffle):  # fmt: skip
                            runs.append(stored)
                            reused.append(path)
                            continue
                        log(f"{path}: recorded with another recipe or checkpoint; running it again")
                    if max_new_runs is not None and len(computed) >= max_new_runs:
                        stopped = True
                        break
                    if task is None:
                        task, task_facts[name] = load_task(name, config, source, fills, root=root, partition=partition, stats=stats)
                        build_task_model, build_encoder = model_builders(source, config, task)
                    t0 = time.time()
                    logits, facts = run_protocol(task, protocol, column, rec, seed, build_task_model=build_task_model,
                                                 build_encoder=build_encoder, shuffle_labels=shuffle)  # fmt: skip
                    test_labels = _head(task.test, rec.max_test).labels
                    result = result_of(task, logits, test_labels, facts, checkpoint=row, protocol=protocol,
                                       column=column, seed=seed, recipe=asdict(rec))  # fmt: skip
                    result.seconds = round(time.time() - t0, 2)
                    result.notes = [f"{k}: {v}" for k, v in task_facts[name].items()]
                    payload = {**asdict(result), "checkpoint_path": source.path, "partition": partition,
                               "shuffled_train_labels": shuffle}  # fmt: skip
                    atomic_write_json(path, payload)
                    computed.append(path)
                    runs.append(payload)
                    log(f"{row} / {name} / {column} / seed {seed}: {result.metric} {result.value:.4f} "
                        f"({result.steps} steps, {result.seconds:.1f} s)")  # fmt: skip
                if stopped:
                    break
                if runs:
                    cells.append(summarise_runs(runs, bootstrap_seed=bootstrap_seed))
            if stopped:
                break
            if name not in majority:  # also when every run came from disk: the baselines are cheap, not stored
                if task is None:
                    task, task_facts[name] = load_task(name, config, source, fills, root=root, partition=partition, stats=stats)
                majority[name], chance[name] = knows_nothing(task, rec, seeds, protocol)
        if stopped:
            break
    rows = [row for _, row, _ in arms]
    for name, m in majority.items():
        lo, hi = bootstrap_interval([np.asarray(m["stats"])], m["kind"], m["num_labels"], seed=bootstrap_seed)
        cells += [Cell(MAJORITY, name, c, m["metric"], [m["value"]], m["value"], 0.0, lo, hi) for c in columns]
    for runs_ in chance.values():
        cell = summarise_runs(runs_, bootstrap_seed=bootstrap_seed)
        cells += [replace(cell, column=c) for c in columns]
    if majority:
        rows += [MAJORITY, CHANCE]
    metrics = {n: get_preset(n).metric for n in names}
    table = markdown_table(cells, names, columns, rows, metrics)
    verdicts = control_verdicts(cells) if controls else []
    if not stopped:
        payload = {"protocol": protocol, "preset": preset, "partition": partition, "seeds": list(seeds),
                   "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": bootstrap_seed, "level": 0.95},
                   "checkpoints": [asdict(c) for c in checkpoints], "tasks": names, "task_facts": task_facts,
                   "cells": [asdict(c) for c in cells], "majority": {k: {kk: v for kk, v in m.items() if kk != "stats"}
                                                                      for k, m in majority.items()},
                   "label_prior_sampled": {k: [r["value"] for r in v] for k, v in chance.items()}, "table": table,
                   "controls": verdicts}  # fmt: skip
        atomic_write_json(out / "results.json", payload)
        (out / "table.md").write_text(table + "\n")
        plot_cells(cells, out / "plot.png", f"GEO-Bench, protocol {protocol} ({preset})")
    return BenchmarkReport(cells, computed, reused, table, out, stopped, verdicts)


def shuffled_row(name: str) -> str:
    """The table row of a checkpoint's shuffled-label control."""
    return f"{name}, shuffled train labels"


def control_verdicts(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """Per shuffled-label cell: its mean against the two baselines that know nothing but the label prior.
    `beats_majority`: the mean exceeds the majority class's upper 95 % bootstrap bound; `passes`: it exceeds
    neither that nor the sampled prior's upper bound (a control must not beat knowing nothing)."""
    by_key = {(c.checkpoint, c.task, c.column): c for c in cells}
    verdicts = []
    for cell in cells:
        if not cell.checkpoint.endswith(shuffled_row("")) or cell.not_applicable or not np.isfinite(cell.mean):
            continue
        majority, prior = by_key.get((MAJORITY, cell.task, cell.column)), by_key.get((CHANCE, cell.task, cell.column))
        if majority is None or prior is None:
            continue
        verdicts.append({"checkpoint": cell.checkpoint, "task": cell.task, "column": cell.column, "metric": cell.metric,
                         "shuffled_mean": cell.mean, "shuffled_interval": [cell.lo, cell.hi],
                         "majority": majority.mean, "majority_interval": [majority.lo, majority.hi],
                         "prior_sampled": prior.mean, "prior_sampled_interval": [prior.lo, prior.hi],
                         "beats_majority": bool(cell.mean > majority.hi),
                         "passes": bool(cell.mean <= max(majority.hi, prior.hi))})  # fmt: skip
    return verdicts


def knows_nothing(task: Any, rec: Recipe, seeds: Sequence[int], protocol: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The two baselines that ignore the images, on the test samples the runs score: the majority class
    (one run) and the sampled label prior (one run per seed), as run records."""
    from dataset_scripts.tasks import majority_baseline

    test, train = _head(task.test, rec.max_test), _head(task.train, rec.max_train)
    ids = {"protocol": protocol, "column": "-", "recipe": {}}
    majority = asdict(result_of(task, majority_baseline(replace_test(task, test)), test.labels, {}, checkpoint=MAJORITY,
                                seed=0, **ids))  # fmt: skip
    prior = [asdict(result_of(task, prior_sample_logits(task.kind, train.labels, test.labels, task.num_labels, s),
                              test.labels, {}, checkpoint=CHANCE, seed=s, **ids)) for s in seeds]  # fmt: skip
    return majority, prior


def replace_test(task: Any, test: TaskData) -> Any:
    """The task with its test split replaced (the majority baseline predicts for `task.test`)."""
    import copy

    clone = copy.copy(task)
    clone.test = test
    return clone
