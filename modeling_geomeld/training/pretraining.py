"""Pretraining GeoMeld-FM with the transformers `Trainer`.

* `PretrainingCollator` turns decoded samples (`{"arrays": {layer: (C, H, W)}, "bands": {layer: names},
  "caption": str}`, layers keyed by registry names such as `sentinel2_l2a`) into model inputs: a random
  crop per sample through the processor (band order by name, no-data masks, normalisation), targets, and
  tokenized captions. A layer missing from a sample is filled as no data, so it contributes nothing.
  Randomness comes from torch's global generator, which the Trainer checkpoints and restores on resume.
* `EMACallback` steps the JEPA target encoder after every optimiser step with the momentum schedule;
  `LogitScaleClampCallback` clamps the ITC temperature parameter to [0, ln 100] after it (open_clip).
* `GeoMeldTrainer` logs every loss part (per target modality for MP-MAE) next to the total, and decays only
  weight matrices and kernels (`decay_parameter_names`).
* Optimisation as FCMAE / MMEarth: AdamW with betas (0.9, 0.95), learning rate = base_lr x effective batch / 256
  (`scaled_learning_rate`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback

from modeling_geomeld.modalities import get_modality, resolve
from modeling_geomeld.training.checkpoints import AtomicCheckpointMixin, RunLayout, resume_checkpoint
from modeling_geomeld.training.statistics import dataset_statistics, statistics_markdown


class PretrainingCollator:
    """Collate decoded samples into a `GeoMeldForPreTraining` batch (see module docstring)."""

    def __init__(self, processor: Any, use_captions: bool = True, with_targets: bool = True):
        self.processor = processor
        self.with_targets = with_targets
        self.image_processor = getattr(processor, "image_processor", processor)
        self.tokenizer: Any = getattr(processor, "tokenizer", None)
        self.use_captions = use_captions and self.tokenizer is not None

    def _split(self, sample: Mapping[str, Any]) -> tuple[dict, dict, dict, dict]:
        images, image_bands, targets, target_bands = {}, {}, {}, {}
        inputs = self.image_processor.input_modalities
        wanted_targets = self.image_processor.target_modalities if self.with_targets else {}
        for key, array in sample["arrays"].items():
            mod, _ = resolve(key)
            bands = list(sample["bands"][key])
            if mod.name in inputs and all(b in bands for b in inputs[mod.name]):
                images[key], image_bands[key] = array, bands
            if mod.name in wanted_targets and all(b in bands for b in wanted_targets[mod.name]):
                targets[key], target_bands[key] = array, bands
        if not images:
            raise ValueError(
                f"sample {sample.get('tile_id', '?')} has none of the input modalities {list(inputs)} with their bands; "
                f"it holds {({k: list(v) for k, v in sample['bands'].items()})}"
            )
        return images, image_bands, targets, target_bands

    def _one(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        images, image_bands, targets, target_bands = self._split(sample)
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        out = self.image_processor(
            images, band_names=image_bands, targets=targets or None, target_band_names=target_bands, seed=seed
        )
        return out.data

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        per = [self._one(s) for s in samples]
        # samples kept at their own size (a processor without crop_size) share the largest grid: the processor
        # pads bottom/right, so padding them further keeps every `valid_region` where it is
        grids = [next(iter(p["pixel_values"].values())).shape[-2:] for p in per]
        size = (max(g[0] for g in grids), max(g[1] for g in grids))
        batch: dict[str, Any] = {
            "pixel_values": _stack(per, "pixel_values", size, fill=0.0),
            "valid_mask": _stack(per, "valid_mask", size, fill=False),
        }
        if all("valid_region" in p for p in per):
            batch["valid_region"] = torch.cat([p["valid_region"] for p in per])
        if any("targets" in p for p in per):
            batch["targets"] = _stack_targets(per, size)
        captions = [s.get("caption") for s in samples]
        if self.use_captions and all(isinstance(c, str) and c.strip() for c in captions):
            tokens = self.tokenizer(
                list(captions), padding=True, truncation=True, max_length=getattr(self.processor, "max_length", 64), return_tensors="pt"
            )
            batch.update(tokens)
        return batch


def _padded(t: torch.Tensor, size: tuple[int, int], fill: float | bool) -> torch.Tensor:
    """`t` (..., h, w) padded at the bottom/right to `size` with `fill` (the no-data of its kind)."""
    if tuple(t.shape[-2:]) == size:
        return t
    out = torch.full((*t.shape[:-2], *size), fill, dtype=t.dtype)
    out[..., : t.shape[-2], : t.shape[-1]] = t
    return out


def _stack(
    per: list[dict[str, Any]], field: str, size: tuple[int, int], fill: float | bool
) -> dict[str, torch.Tensor]:
    names = sorted({k for p in per for k in p[field]})
    out = {}
    for name in names:
        ref = next(p[field][name] for p in per if name in p[field])
        parts = [p[field][name] if name in p[field] else torch.full_like(ref, fill) for p in per]
        out[name] = torch.cat([_padded(t, size, fill) for t in parts])
    return out


def _stack_targets(per: list[dict[str, Any]], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    names = sorted({k for p in per for k in p.get("targets", {})})
    out = {}
    for name in names:
        ref = next(p["targets"][name] for p in per if name in p.get("targets", {}))
        absent = -1 if get_modality(name).is_categorical else float("nan")  # no data: excluded from the loss
        parts = [p["targets"][name] if name in p.get("targets", {}) else torch.full_like(ref, absent) for p in per]
        out[name] = torch.cat([_padded(t, size, absent) for t in parts])
    return out


#: parameters that never take weight decay besides biases and norms (open_clip exempts its logit scale, timm's
#: `add_weight_decay` everything 1-D and its skip list): the temperature, the MP-MAE log-variances (decay
#: would pull every task weight towards 1), the modality embeddings and the mask tokens (learned inputs)
NO_DECAY_PATTERNS = ("logit_scale", "loss_log_vars.", "modality_embeddings.", "mask_token", ".grn.")

#: AdamW betas of FCMAE and MMEarth pretraining (a shorter second-moment memory than the default 0.999)
ADAM_BETAS = (0.9, 0.95)


def decay_parameter_names(model: torch.nn.Module) -> list[str]:
    """Names of the parameters AdamW decays: weight matrices and conv kernels (ndim >= 2), except the names
    in `NO_DECAY_PATTERNS` (GRN's gamma/beta are 4-D but are a norm's affine parameters, like LayerNorm's)."""
    return [
        name
        for name, p in model.named_parameters()
        if p.ndim >= 2 and not name.endswith(".bias") and not any(k in name for k in NO_DECAY_PATTERNS)
    ]


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups over the trainable parameters: decayed (`decay_parameter_names`) and not."""
    decay = set(decay_parameter_names(model))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in trainable if n in decay], "weight_decay": weight_decay},
        {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0},
    ]


def scaled_learning_rate(base_lr: float, per_device_batch: int, accumulation: int = 1, world_size: int = 1) -> float:
    """FCMAE / MMEarth's linear scaling rule: lr = base_lr x effective batch / 256."""
    return base_lr * per_device_batch * accumulation * world_size / 256


class LogitScaleClampCallback(TrainerCallback):
    """After every optimiser step, clamp the ITC log inverse temperature to [0, ln 100] as a parameter
    (open_clip); a clamp inside the loss would instead zero its gradient above ln 100."""

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        released = getattr(model, "geomeld", model)
        if released is not None and hasattr(released, "clamp_logit_scale"):
            released.clamp_logit_scale()


class EMACallback(TrainerCallback):
    """After every optimiser step: `model.update_ema(momentum(step))`, I-JEPA's 0.996 -> 1.0 schedule."""

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None and getattr(model, "ema_encoder", None) is not None:
            model.update_ema(model.ema_momentum_at(state.global_step, state.max_steps))


class GeoMeldTrainer(AtomicCheckpointMixin, Trainer):
    """The `Trainer` pretraining needs: it logs the mean of every named loss part since the last log (MP-MAE
    per target modality, JEPA, ITC) besides the total, decays only weight matrices and kernels, and writes
    checkpoints atomically. Task heads (`GeoMeldForImageClassification`, `...ForSemanticSegmentation`) train
    with the stock `Trainer`; given to this one they train too, with only the total loss logged."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._parts: dict[str, list[float]] = defaultdict(list)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        outputs = model(**inputs)
        for key in ("mpmae_loss", "jepa_loss", "itc_loss"):
            value = outputs.get(key)
            if value is not None:
                self._parts[key].append(float(value.detach()))
        pixels = outputs.get("mpmae_pixels") or {}
        for name, value in (outputs.get("mpmae_losses") or {}).items():
            if name not in pixels or float(pixels[name]) > 0:  # a target without masked data is not a 0 loss
                self._parts[f"mpmae/{name}"].append(float(value.detach()))
        loss = outputs.get("loss")
        if loss is None:
            raise ValueError(
                "the batch produced no loss: a pretraining batch holds no target, no masked valid pixel and no "
                "caption, or a task batch has no labels"
            )
        return (loss, outputs) if return_outputs else loss

    def get_decay_parameter_names(self, model: Any) -> list[str]:
        """Weight decay on matrices and kernels only (see `decay_parameter_names`)."""
        return decay_parameter_names(model)

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The model's own estimate (`GeoMeldPreTrainedModel.floating_point_ops`: pixels of every input
        modality as tokens), where the stock Trainer would call `.numel()` on the dict of modalities."""
        model: Any = self.accelerator.unwrap_model(self.model)
        return int(model.floating_point_ops(inputs)) if hasattr(model, "floating_point_ops") else 0

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:
            for key, values in self._parts.items():
                if values:
                    logs[key] = float(np.mean(values))
            self._parts.clear()
        super().log(logs, *args, **kwargs)


def row_to_sample(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of a built GeoMeld dataset -> the collator's sample form (layers keyed by registry name, with the
    Sentinel-2 product variant, so L1C and L2A get their own statistics)."""
    from dataset_scripts.loading import band_names, decode_row

    arrays, bands = decode_row(row), band_names(row)
    product = row.get("s2_product") or "l2a"

    def key(name: str) -> str:
        return f"sentinel2_{product}" if name == "sentinel2" else name

    return {
        "tile_id": row.get("tile_id"),
        "arrays": {key(k): v for k, v in arrays.items()},
        "bands": {key(k): bands[k] for k in arrays},
        "caption": row.get("caption") or None,
    }


class RowCollator(PretrainingCollator):
    """`PretrainingCollator` over raw dataset rows (what the Trainer's data loader hands over)."""

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return super().__call__([row_to_sample(r) for r in samples])


def pretrain(
    dataset: str,
    output_dir: str,
    *,
    preset: str = "tiny",
    max_steps: int = 100,
    batch_size: int = 8,
    learning_rate: float | None = None,
    base_learning_rate: float = 1.5e-4,
    warmup_steps: int = 10,
    gradient_accumulation_steps: int = 1,
    save_steps: int = 50,
    streaming: bool = False,
    resume: bool = False,
    seed: int = 0,
    logging_steps: int = 5,
    config_overrides: Mapping[str, Any] | None = None,
    init_text_from_minilm: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
    release_dir: str | None = None,
    pipeline_check: bool | None = None,
) -> dict[str, Any]:
    """Pretrain `GeoMeldForPreTraining` on a built dataset (folder or hub id) with the transformers Trainer:
    AdamW (betas 0.9, 0.95; no decay on biases, norms, temperature, log-variances, embeddings, mask tokens) at
    `learning_rate`, or when that is `None` at base_learning_rate x effective batch / 256; warm-up + cosine decay, clipping at 1.0, bf16 where the hardware has it, gradient accumulation,
    the EMA callback, every loss part logged, CSV log and loss plot.

    `output_dir` is the run (`RunLayout`): the Trainer's resumable `checkpoint-N` folders (optimizer, scheduler
    and RNG state) go to `output_dir/checkpoints/`, the release (weights, code, processor, card, log.csv and the
    loss plot: no pickles) to `release_dir` (default `output_dir/release`).
    `pipeline_check`: what the card says; `None`: fewer than `hub.cards.PIPELINE_CHECK_STEPS` steps."""

    from transformers import TrainingArguments

    from dataset_scripts.loading import load_geomeld
    from modeling_geomeld import GeoMeldConfig, GeoMeldForPreTraining, GeoMeldImageProcessor, GeoMeldProcessor
    from modeling_geomeld.text import init_text_tower_from_minilm, load_text_tokenizer

    layout = RunLayout.of(output_dir, release_dir)
    layout.root.mkdir(parents=True, exist_ok=True)  # every rank: data-parallel launchers write beside it
    statistics = dataset_statistics(dataset)  # before loading: computing them refreshes the dataset card
    train = load_geomeld(dataset, split="train", streaming=streaming)
    config = GeoMeldConfig.from_preset(preset, **dict(config_overrides or {}))
    # training crops are fixed-size and random; the saved release keeps the input size (see save_release_processor)
    crops = {"crop_size": config.encoder_cfg.image_size, "crop_mode": "random"}
    processor = GeoMeldProcessor(GeoMeldImageProcessor.from_model_config(config, **crops, **statistics.processor_kwargs()), load_text_tokenizer())
    torch.manual_seed(seed)
    model = GeoMeldForPreTraining(config)
    if init_text_from_minilm and not model.geomeld.text_tower_loaded:  # loaded at construction when at hand
        init_text_tower_from_minilm(model)
    use_bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    args = TrainingArguments(
        output_dir=str(layout.checkpoints),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        learning_rate=learning_rate or base_learning_rate,  # replaced below once the world size is known
        weight_decay=0.05,
        adam_beta1=ADAM_BETAS[0],
        adam_beta2=ADAM_BETAS[1],
        warmup_steps=warmup_steps,
        lr_scheduler_type="cosine",
        max_grad_norm=1.0,
        bf16=use_bf16,
        logging_steps=logging_steps,
        save_steps=save_steps,
        save_total_limit=2,
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        report_to=[],
        ddp_find_unused_parameters=True,  # targets absent from a batch leave their heads unused
        use_cpu=not torch.cuda.is_available(),
    )
    if learning_rate is None:
        args.learning_rate = scaled_learning_rate(base_learning_rate, batch_size, gradient_accumulation_steps, args.world_size)
    trainer = GeoMeldTrainer(
        model=model,
        args=args,
        train_dataset=train,
        data_collator=RowCollator(processor),
        callbacks=[EMACallback(), LogitScaleClampCallback(), *callbacks],
        release_processor=processor,
    )
    trainer.train(resume_from_checkpoint=resume_checkpoint(layout.checkpoints) if resume else None)
    history = [h for h in trainer.state.log_history if "loss" in h]
    if trainer.is_world_process_zero():
        write_release(trainer, processor, layout.release, dataset=str(dataset), preset=preset, history=history, pipeline_check=pipeline_check)
    return {"history": history, "global_step": trainer.state.global_step, "model": model, "release": layout.release}


def write_release(
    trainer: Trainer,
    processor: Any,
    folder: Path,
    *,
    dataset: str,
    preset: str,
    history: Sequence[Mapping[str, Any]],
    pipeline_check: bool | None = None,
) -> None:
    """The release folder of a pretraining run: `Trainer.save_model` weights and config (with the code its
    auto_map names), the processor (no crop: inference keeps the input size), log.csv, the loss plot and the model card."""
    from modeling_geomeld.hub.cards import write_pretraining_card
    from modeling_geomeld.hub.folders import default_training_data, save_folder

    model: Any = trainer.model
    trainer.save_model(str(folder))  # the Trainer's way: unwraps DDP, gathers sharded weights
    _write_csv(history, folder / "log.csv")
    plot = plot_losses(history, folder / "loss.png").name if history else None
    save_folder(model, processor, folder, save_model=False)
    write_pretraining_card(
        folder, model.config, dataset=dataset, preset=preset, history=history, steps=trainer.state.global_step,
        training_data=default_training_data(model), statistics=statistics_markdown(processor.image_processor),
        pipeline_check=pipeline_check, loss_plot=plot,
    )  # fmt: skip


def _write_csv(history: Sequence[Mapping[str, Any]], path: Path) -> None:
    import csv

    keys = sorted({k for h in history for k in h})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


@torch.no_grad()
def evaluate_pretraining(model: Any, processor: Any, samples: Sequence[Mapping[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Held-out evaluation of a `GeoMeldForPreTraining` on collator samples (`row_to_sample` of dataset rows;
    centre crops, one seeded mask):

    * per target modality, the masked-pixel reconstruction error against the error of predicting the
      per-band mean of the same pixels -- the best constant predictor, so beating it beats the training mean
      too (MSE for continuous targets; for class maps, accuracy against the
      majority class);
    * image -> caption and caption -> image retrieval recalls (R@1/5/10, both directions) when rows have
      captions, with chance level.
    Returns the numbers and the batch/outputs needed for plots under `"_batch"` / `"_outputs"`.
    """
    from modeling_geomeld.evaluation import retrieval_recall

    model.eval()
    batch = PretrainingCollator(processor)(list(samples))
    generator = torch.Generator().manual_seed(seed)
    out = model(**batch, generator=generator)
    patch = model.config.encoder_cfg.patch_size
    mask_px = out.mask.repeat_interleave(patch, 1).repeat_interleave(patch, 2)  # (B, H, W)
    recon: dict[str, Any] = {}
    targets = dict(batch.get("targets", {}))
    for name, pred in (out.reconstructions or {}).items():
        target = targets.get(name)
        if target is None:
            continue
        if get_modality(name).is_categorical:
            keep = mask_px & (target >= 0)
            if keep.sum() == 0:
                continue
            acc = float((pred.argmax(1)[keep] == target[keep]).float().mean())
            majority = int(torch.bincount(target[keep]).argmax())
            recon[name] = {"accuracy": acc, "majority_accuracy": float((target[keep] == majority).float().mean())}
            continue
        if name in set(model.config.decoder_cfg.norm_pix_loss_modalities or []):
            continue  # per-patch normalised target: its loss is reported, not a raw-unit ratio
        keep = mask_px[:, None].expand_as(target) & torch.isfinite(target)
        if keep.sum() == 0:
            continue
        t = torch.nan_to_num(target)
        band_mean = (t * keep).sum((0, 2, 3), keepdim=True) / keep.sum((0, 2, 3), keepdim=True).clamp_min(1)
        mse = float(((pred - t) ** 2)[keep].mean())
        base = float(((band_mean.expand_as(t) - t) ** 2)[keep].mean())
        recon[name] = {"mse": mse, "mean_predictor_mse": base, "ratio": mse / base if base > 0 else float("nan")}
    n = len(samples)
    result: dict[str, Any] = {"reconstruction": recon, "n": n, "loss": float(out.loss) if out.loss is not None else None}
    if out.jepa_loss is not None:
        result["jepa_loss"] = float(out.jepa_loss)
    if "input_ids" in batch:
        geomeld = model.geomeld
        image = geomeld.get_image_features(batch["pixel_values"], batch["valid_mask"]).numpy()
        text = geomeld.get_text_features(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).numpy()
        result["retrieval"] = retrieval_recall(image_embeddings=image, text_embeddings=text) if n > 1 else {}
        result["retrieval_chance_R@1"] = 1.0 / n
    result["_batch"], result["_outputs"] = batch, out
    return result


def plot_losses(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Loss curves by optimiser step (the Trainer's logged ``step``), one line per loss part, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    keys = sorted({k for h in history for k in h if ("loss" in k or k.startswith("mpmae/")) and k != "grad_norm"})
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for key in keys:
        pts = [(h["step"], float(h[key])) for h in history if key in h and "step" in h]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, label=key, lw=1.8 if key == "loss" else 1.0)
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (log scale)")
    ax.set_title("GeoMeld-FM pretraining losses by step")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
