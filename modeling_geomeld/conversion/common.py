"""What every converter shares: reading a checkpoint safely, consuming its keys, and the report.

A converter reads a foreign state dict through `SourceWeights`, which records every key it takes; a key the
layout needs but the checkpoint lacks raises at once (naming it), and keys left over that the layout does not
declare as discardable raise too. Nothing falls back to random weights silently: target weights no source key
filled are listed by name in the `ConversionReport`.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from ..configuration_geomeld import ENCODER_PRESETS


class ConversionError(ValueError):
    """A checkpoint does not have the layout its converter expects (names what is wrong)."""


def load_checkpoint(path: str | Path, nested_keys: Iterable[str] = ("model", "state_dict")) -> dict[str, torch.Tensor]:
    """Read a state dict from a `.safetensors` file, a `.pth`/`.pt`/`.bin` file (with
    `torch.load(weights_only=True)`), or a transformers folder; unwrap a training checkpoint's
    `{"model": state_dict, "optimizer": ...}` envelope."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return load_checkpoint(path / name, nested_keys)
        raise ConversionError(f"{path}: no model.safetensors or pytorch_model.bin in this folder")
    if not path.is_file():
        raise ConversionError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        return dict(load_file(str(path)))
    obj = load_checkpoint_object(path)
    if isinstance(obj, Mapping):
        for key in nested_keys:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{path}: expected a state dict of tensors (or {{'model': state_dict}})")
    return dict(obj)


def load_checkpoint_object(path: Path) -> Any:
    """`torch.load(weights_only=True)` of a training checkpoint, which may also hold its argparse Namespace."""
    # FCMAE and MMEarth training checkpoints pickle their argparse.Namespace next to the weights; it is
    # plain data, so it is the one class allowed beyond what weights_only admits.
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler's message names the refused global
        raise ConversionError(f"{path}: cannot be read with torch.load(weights_only=True): {err}") from err


class SourceWeights:
    """A foreign state dict whose keys are consumed by name; `leftover()` is what nobody took."""

    def __init__(self, state_dict: Mapping[str, torch.Tensor], layout: str, prefix: str = ""):
        self._sd = dict(state_dict)
        self._taken: set[str] = set()
        self.layout = layout
        self.prefix = prefix

    def __contains__(self, key: str) -> bool:
        return self.prefix + key in self._sd

    def keys(self) -> list[str]:
        return [k[len(self.prefix) :] for k in self._sd if k.startswith(self.prefix)]

    def take(self, key: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        full = self.prefix + key
        if full not in self._sd:
            raise ConversionError(f"{self.layout} checkpoint lacks {full!r}, which its layout requires")
        value = self._sd[full]
        if shape is not None and tuple(value.shape) != shape:
            raise ConversionError(f"{self.layout} {full!r}: expected shape {shape}, got {tuple(value.shape)}")
        self._taken.add(full)
        return value.detach().to(torch.float32).clone()

    def leftover(self, discard: Iterable[str] = ()) -> tuple[list[str], list[str]]:
        """-> (discarded keys matching a `discard` regex, unexpected keys matching none)."""
        patterns = [re.compile(p) for p in discard]
        rest = sorted(k for k in self._sd if k not in self._taken)
        discarded = [k for k in rest if any(p.search(k) for p in patterns)]
        unexpected = [k for k in rest if k not in discarded]
        return discarded, unexpected

    def check_done(self, discard: Iterable[str], report: ConversionReport) -> None:
        discarded, unexpected = self.leftover(discard)
        if unexpected:
            raise ConversionError(
                f"{self.layout} checkpoint has {len(unexpected)} keys this converter does not understand: "
                f"{unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}"
            )
        report.source_keys_discarded = discarded
        report.source_keys_used = len(self._taken)


@dataclass
class ConversionReport:
    """What a conversion did, written next to the converted checkpoint as `conversion.json`."""

    source_format: str
    source: str
    target_class: str
    exact: bool = True
    notes: list[str] = field(default_factory=list)
    source_keys_used: int = 0
    source_keys_discarded: list[str] = field(default_factory=list)
    target_keys_converted: int = 0
    target_keys_not_in_source: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def summary(self) -> str:
        fresh = _group(self.target_keys_not_in_source)
        lines = [
            f"converted {self.source_format} checkpoint {self.source} -> {self.target_class}",
            f"  {self.source_keys_used} source tensors used, {self.target_keys_converted} target tensors filled",
            f"  exact: {self.exact}",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        if self.source_keys_discarded:
            lines.append(f"  source keys discarded: {_group(self.source_keys_discarded)}")
        if fresh:
            lines.append(f"  target weights NOT in the source (freshly initialised): {fresh}")
        return "\n".join(lines)


def _group(keys: list[str]) -> str:
    """Compact listing: keys grouped by their first two name parts, with counts."""
    groups: dict[str, int] = {}
    for k in keys:
        head = ".".join(k.split(".")[:2])
        groups[head] = groups.get(head, 0) + 1
    return ", ".join(f"{h}.* ({n})" if n > 1 else h for h, n in groups.items())


def encoder_geometry(depths: list[int], dims: list[int]) -> dict[str, Any]:
    """Encoder config fields for a ConvNeXt V2 of these depths/widths: the preset name when one matches."""
    for name, (d, c) in ENCODER_PRESETS.items():
        if list(d) == depths and list(c) == dims:
            return {"size": name, "depths": depths, "dims": dims}
    return {"depths": depths, "dims": dims}


def count_blocks(keys: Iterable[str], pattern: str) -> list[int]:
    """Blocks per stage from keys matching `pattern` with groups (stage, block)."""
    rx = re.compile(pattern)
    found: dict[int, set[int]] = {}
    for k in keys:
        m = rx.match(k)
        if m:
            found.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not found or sorted(found) != list(range(len(found))):
        raise ConversionError(f"no consecutive ConvNeXt stages found under keys matching {pattern!r}")
    return [max(found[i]) + 1 for i in range(len(found))]


def load_into(model: nn.Module, state: dict[str, torch.Tensor], report: ConversionReport) -> None:
    """Copy converted tensors into `model`; every one must land on an existing weight of the same shape.
    Target weights not converted keep the model's initialisation and are listed in the report."""
    own = model.state_dict()
    wrong = [k for k in state if k not in own]
    if wrong:
        raise ConversionError(f"converted weights name no parameter of {type(model).__name__}: {wrong[:20]}")
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape]
    if bad:
        raise ConversionError(f"converted weights of the wrong shape: {bad[:20]}")
    result = model.load_state_dict(state, strict=False)
    report.target_keys_converted = len(state)
    report.target_keys_not_in_source = sorted(result.missing_keys)


#: GeoMeld's names of one ConvNeXt V2 block's tensors (all dense PyTorch shapes, GRN as (1, 1, 1, 4C))
BLOCK_TENSORS: tuple[str, ...] = (
    "dwconv.weight", "dwconv.bias", "norm.weight", "norm.bias", "pwconv1.weight", "pwconv1.bias",
    "grn.gamma", "grn.beta", "pwconv2.weight", "pwconv2.bias",
)  # fmt: skip


def block_shapes(dim: int, kernel_size: int = 7) -> dict[str, tuple[int, ...]]:
    """Dense shapes of a ConvNeXt V2 block's tensors, by GeoMeld name."""
    return {
        "dwconv.weight": (dim, 1, kernel_size, kernel_size),
        "dwconv.bias": (dim,),
        "norm.weight": (dim,),
        "norm.bias": (dim,),
        "pwconv1.weight": (4 * dim, dim),
        "pwconv1.bias": (4 * dim,),
        "grn.gamma": (1, 1, 1, 4 * dim),
        "grn.beta": (1, 1, 1, 4 * dim),
        "pwconv2.weight": (dim, 4 * dim),
        "pwconv2.bias": (dim,),
    }


#: ImageNet's input channels, by Sentinel-2 band name: red, green, blue
RGB_BANDS: tuple[str, str, str] = ("B04", "B03", "B02")


def place_rgb(weight: torch.Tensor, bands: list[str], modality: str = "sentinel2") -> torch.Tensor:
    """An RGB filter bank (C_out, 3, k, k) as a filter bank over `bands`: R, G, B on B04, B03, B02 by name,
    zero on every other band, so the other bands do not change the output."""
    missing = [b for b in RGB_BANDS if b not in bands]
    if missing:
        raise ConversionError(
            f"an RGB stem needs bands {list(RGB_BANDS)} in the {modality} input, which has {bands} (missing {missing})"
        )
    out = weight.new_zeros(weight.shape[0], len(bands), *weight.shape[2:])
    for i, name in enumerate(RGB_BANDS):
        out[:, bands.index(name)] = weight[:, i]
    return out


def resample_patch_stem(weight: torch.Tensor, stride: int) -> torch.Tensor:
    """A k = s patchify kernel (C_out, C_in, s0, s0) resampled to stride `stride`.

    Shrinking (s0 = f * stride) sums each f x f block of taps: the result on an image X equals the original
    stem on X upsampled f-fold (nearest). Growing (stride = f * s0) spreads each tap over f x f and divides by
    f**2: the result on X equals the original stem on X average-pooled f-fold. Either way the network sees
    the scene at another scale than it was trained at, so this is an approximation of the original model.
    """
    s0 = weight.shape[-1]
    if stride == s0:
        return weight.clone()
    if s0 % stride == 0:
        f = s0 // stride
        c_out, c_in = weight.shape[:2]
        return weight.reshape(c_out, c_in, stride, f, stride, f).sum(dim=(3, 5))
    if stride % s0 == 0:
        f = stride // s0
        return weight.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3) / f**2
    raise ConversionError(f"cannot resample a {s0}x{s0} stem to stride {stride}: one must divide the other")


def rgb_stem(
    stem: torch.Tensor, target_stride: int, patch: int, exact_patch: int, bands: list[str], report: ConversionReport
) -> torch.Tensor:
    """An ImageNet RGB patchify stem as GeoMeld's S2 stem: resampled when the stride differs (the report marks
    the conversion as an approximation), then placed on B04/B03/B02 (`place_rgb`)."""
    s0 = stem.shape[-1]
    if target_stride != s0:
        stem = resample_patch_stem(stem, target_stride)
        report.exact = False
        report.notes.append(
            f"APPROXIMATION: the {s0}x{s0} stem was resampled to {target_stride}x{target_stride} (patch_size "
            f"{patch} instead of {exact_patch}); the encoder sees the scene at another scale than its ImageNet "
            "training. Fine-tune before trusting its features."
        )
    report.notes.append("RGB stem filters placed on B04/B03/B02 by name, zero on the other bands; modality embeddings zero")
    return place_rgb(stem, bands)
