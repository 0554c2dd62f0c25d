"""Pretraining GeoMeld-FM with the transformers `Trainer`.

* `PretrainingCollator` turns decoded samples (`{"arrays": {layer: (C, H, W)}, "bands": {layer: names},
  "caption": str}`, layers keyed by registry names such as `sentinel2_l2a`) into model inputs: a random
  crop per sample through the processor (band order by name, no-data masks, normalisation), targets, and
  tokenized captions. A layer missing from a sample is filled as no data, so it contributes nothing.
  Randomness comes from torch's global generator, which the Trainer checkpoints and restores on resume.
* `EMACallback` steps the JEPA target encoder after every optimiser step with the momentum schedule.
* `GeoMeldTrainer` logs every loss part (per target modality for MP-MAE) next to the total.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback

from .modalities import get_modality, resolve


class PretrainingCollator:
    """Collate decoded samples into a `GeoMeldForPreTraining` batch (see module docstring)."""

    def __init__(self, processor: Any, use_captions: bool = True):
        self.processor = processor
        self.image_processor = getattr(processor, "image_processor", processor)
        self.tokenizer = getattr(processor, "tokenizer", None)
        self.use_captions = use_captions and self.tokenizer is not None

    def _split(self, sample: Mapping[str, Any]) -> tuple[dict, dict, dict, dict]:
        images, image_bands, targets, target_bands = {}, {}, {}, {}
        inputs = self.image_processor.input_modalities
        wanted_targets = self.image_processor.target_modalities
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
        size = next(iter(per[0]["pixel_values"].values())).shape[-1]
        batch: dict[str, Any] = {
            "pixel_values": _stack(per, "pixel_values", size, fill=0.0),
            "valid_mask": _stack(per, "valid_mask", size, fill=False),
        }
        if any("targets" in p for p in per):
            batch["targets"] = _stack_targets(per, size)
        captions = [s.get("caption") for s in samples]
        if self.use_captions and all(isinstance(c, str) and c.strip() for c in captions):
            tokens = self.tokenizer(
                list(captions), padding=True, truncation=True, max_length=getattr(self.processor, "max_length", 64), return_tensors="pt"
            )
            batch.update(tokens)
        return batch


def _stack(per: list[dict[str, Any]], field: str, size: int, fill: float | bool) -> dict[str, torch.Tensor]:
    names = sorted({k for p in per for k in p[field]})
    out = {}
    for name in names:
        ref = next(p[field][name] for p in per if name in p[field])
        parts = [p[field][name] if name in p[field] else torch.full_like(ref, fill) for p in per]
        out[name] = torch.cat(parts)
    return out


def _stack_targets(per: list[dict[str, Any]], size: int) -> dict[str, torch.Tensor]:
    names = sorted({k for p in per for k in p.get("targets", {})})
    out = {}
    for name in names:
        ref = next(p["targets"][name] for p in per if name in p.get("targets", {}))
        absent = -1 if get_modality(name).is_categorical else float("nan")  # no data: excluded from the loss
        parts = [p["targets"][name] if name in p.get("targets", {}) else torch.full_like(ref, absent) for p in per]
        out[name] = torch.cat(parts)
    return out


class EMACallback(TrainerCallback):
    """After every optimiser step: `model.update_ema(momentum(step))`, I-JEPA's 0.996 -> 1.0 schedule."""

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None and getattr(model, "ema_encoder", None) is not None:
            model.update_ema(model.ema_momentum_at(state.global_step, state.max_steps))


class GeoMeldTrainer(Trainer):
    """A `Trainer` that logs the mean of every named loss part since the last log, besides the total."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._parts: dict[str, list[float]] = defaultdict(list)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        outputs = model(**inputs)
        for key in ("mpmae_loss", "jepa_loss", "itc_loss"):
            value = getattr(outputs, key, None)
            if value is not None:
                self._parts[key].append(float(value.detach()))
        for name, value in (outputs.mpmae_losses or {}).items():
            self._parts[f"mpmae/{name}"].append(float(value.detach()))
        loss = outputs.loss
        if loss is None:
            raise ValueError("the batch produced no loss: it holds no target, no masked valid pixel and no caption")
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:
            for key, values in self._parts.items():
                if values:
                    logs[key] = float(np.mean(values))
            self._parts.clear()
        super().log(logs, *args, **kwargs)
