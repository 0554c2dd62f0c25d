"""The original ConvNeXt-V2 checkpoints (facebookresearch/ConvNeXt-V2) -> GeoMeld-FM.

Two layouts: the FCMAE pretraining checkpoint (`{"model": ...}` with `encoder.*` a `SparseConvNeXtV2` in
MinkowskiEngine layout, plus the FCMAE decoder `proj`, `mask_token`, `decoder.*`, `pred`), and the dense
fine-tuned `ConvNeXtV2` (`downsample_layers`, `stages`, `norm`, `head`). The FCMAE encoder has no final norm:
GeoMeld's pooled-output LayerNorm stays at identity (weight 1, bias 0) and the report says so. Both are
ImageNet models (3 RGB input channels, 4x4 stride-4 stem): exact at patch 32, as the transformers converter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..configuration_geomeld import GeoMeldConfig
from ..modalities import SENTINEL2_BANDS
from ..modeling_geomeld import GeoMeldModel
from . import minkowski as mk
from .common import (
    ConversionError,
    ConversionReport,
    SourceWeights,
    block_shapes,
    count_blocks,
    encoder_geometry,
    load_checkpoint,
    load_into,
    rgb_stem,
)


class _Layout:
    """Reads one ConvNeXt V2 tensor by GeoMeld meaning from either layout, as a dense tensor."""

    def __init__(self, src: SourceWeights, sparse: bool):
        self.src, self.sparse = src, sparse

    def norm(self, prefix: str, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = f"{prefix}.ln" if self.sparse else prefix
        return self.src.take(f"{p}.weight", (dim,)), self.src.take(f"{p}.bias", (dim,))

    def conv(self, prefix: str, c_in: int, c_out: int, ks: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.sparse:
            w = mk.conv_kernel(self.src.take(f"{prefix}.kernel", (ks * ks, c_in, c_out)), prefix)
            return w, mk.flat(self.src.take(f"{prefix}.bias", (1, c_out)))
        return self.src.take(f"{prefix}.weight", (c_out, c_in, ks, ks)), self.src.take(f"{prefix}.bias", (c_out,))

    def block(self, prefix: str, dim: int) -> dict[str, torch.Tensor]:
        if not self.sparse:
            return {name: self.src.take(f"{prefix}.{name}", shape) for name, shape in block_shapes(dim).items()}
        take = self.src.take
        out = {
            "dwconv.weight": mk.depthwise_kernel(take(f"{prefix}.dwconv.kernel", (49, dim)), prefix),
            "dwconv.bias": mk.flat(take(f"{prefix}.dwconv.bias", (1, dim))),
            "norm.weight": take(f"{prefix}.norm.ln.weight", (dim,)),
            "norm.bias": take(f"{prefix}.norm.ln.bias", (dim,)),
            "pwconv1.weight": take(f"{prefix}.pwconv1.linear.weight", (4 * dim, dim)),
            "pwconv1.bias": take(f"{prefix}.pwconv1.linear.bias", (4 * dim,)),
            "grn.gamma": take(f"{prefix}.grn.gamma", (1, 4 * dim)).reshape(1, 1, 1, 4 * dim),
            "grn.beta": take(f"{prefix}.grn.beta", (1, 4 * dim)).reshape(1, 1, 1, 4 * dim),
            "pwconv2.weight": take(f"{prefix}.pwconv2.linear.weight", (dim, 4 * dim)),
            "pwconv2.bias": take(f"{prefix}.pwconv2.linear.bias", (dim,)),
        }
        return out


    def stages(
        self, depths: list[int], dims: list[int], target: str, first_downsample: int
    ) -> dict[str, torch.Tensor]:
        """Every stage and the downsampling before it, under GeoMeld prefix `target` (e.g. `encoder.`); the
        source numbers its downsampling layers from `first_downsample` (1 in ConvNeXt-V2, whose index 0 is the
        stem; 0 in MMEarth, whose stem lives apart)."""
        out: dict[str, torch.Tensor] = {}
        for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            if i > 0:
                ds, ours = f"downsample_layers.{i - 1 + first_downsample}", f"{target}downsamples.{i}"
                out[f"{ours}.norm.weight"], out[f"{ours}.norm.bias"] = self.norm(f"{ds}.0", dims[i - 1])
                out[f"{ours}.conv.weight"], out[f"{ours}.conv.bias"] = self.conv(f"{ds}.1", dims[i - 1], dim, 2)
            for j in range(depth):
                for name, value in self.block(f"stages.{i}.{j}", dim).items():
                    out[f"{target}stages.{i}.{j}.{name}"] = value
        return out


def convert_fcmae(
    checkpoint: str | Path | dict[str, torch.Tensor],
    *,
    patch_size: int | None = None,
    input_modalities: dict[str, list[str]] | None = None,
    image_size: int | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> tuple[GeoMeldModel, ConversionReport]:
    """A `GeoMeldModel` from a ConvNeXt-V2 FCMAE (sparse) or fine-tuned (dense) checkpoint file or state dict."""
    sd = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    sparse = any(k.startswith("encoder.") for k in sd)
    src = SourceWeights(sd, "ConvNeXt-V2 FCMAE" if sparse else "ConvNeXt-V2", "encoder." if sparse else "")
    layout = _Layout(src, sparse)
    keys = src.keys()
    depths = count_blocks(keys, r"stages\.(\d+)\.(\d+)\.")
    dw = ".dwconv.kernel" if sparse else ".dwconv.weight"
    dims = [int(sd[f"{src.prefix}stages.{i}.0{dw}"].shape[-1 if sparse else 0]) for i in range(len(depths))]
    stem_key = "downsample_layers.0.0.weight"
    if stem_key not in src:
        raise ConversionError(f"{src.layout} checkpoint lacks {src.prefix + stem_key!r} (the 4x4 stem)")
    stem = src.take(stem_key)
    c_in, s0 = int(stem.shape[1]), int(stem.shape[-1])
    if c_in != 3:
        raise ConversionError(f"the stem takes {c_in} channels; the ConvNeXt-V2 converter places 3 RGB channels")
    exact_patch = s0 * 2 ** (len(depths) - 1)
    patch = patch_size or exact_patch
    modalities = {k: list(v) for k, v in (input_modalities or {"sentinel2": list(SENTINEL2_BANDS)}).items()}
    config = GeoMeldConfig(
        encoder_config={
            **encoder_geometry(depths, dims),
            "input_modalities": modalities,
            "patch_size": patch,
            "image_size": image_size or (224 if 224 % patch == 0 else patch * 4),
            "stem_type": "convnext",  # ConvNeXt V2's k = s patchify stem
            "layer_norm_eps": 1e-6,
        },
        **(config_overrides or {}),
    )
    target = config.encoder_cfg.stem_stride
    report = ConversionReport("convnextv2-fcmae" if sparse else "convnextv2", str(checkpoint)[:200], "GeoMeldModel")
    if "sentinel2" not in modalities:
        raise ConversionError(f"input_modalities {list(modalities)} lack sentinel2, which the RGB stem maps onto")
    out: dict[str, torch.Tensor] = {
        "encoder.stems.sentinel2.conv.weight": rgb_stem(stem, target, patch, exact_patch, modalities["sentinel2"], report),
        "encoder.stems.sentinel2.conv.bias": src.take("downsample_layers.0.0.bias", (dims[0],)),
        "encoder.stems.sentinel2.norm.weight": src.take("downsample_layers.0.1.weight", (dims[0],)),
        "encoder.stems.sentinel2.norm.bias": src.take("downsample_layers.0.1.bias", (dims[0],)),
    }
    for name in modalities:
        out[f"encoder.modality_embeddings.{name}"] = torch.zeros(dims[0])
    out |= layout.stages(depths, dims, "encoder.", first_downsample=1)
    if sparse:
        report.notes.append(
            "the FCMAE encoder has no final norm: GeoMeld's pooled-output LayerNorm (encoder.norm) is identity "
            "(weight 1, bias 0); the FCMAE decoder (proj, mask_token, decoder, pred) is discarded"
        )
        out["encoder.norm.weight"], out["encoder.norm.bias"] = torch.ones(dims[-1]), torch.zeros(dims[-1])
        src.check_done([r"^proj\.", r"^mask_token$", r"^decoder\.", r"^pred\."], report)
    else:
        out["encoder.norm.weight"], out["encoder.norm.bias"] = src.take("norm.weight", (dims[-1],)), src.take("norm.bias", (dims[-1],))
        src.check_done([r"^head\."], report)
    model = GeoMeldModel(config)
    load_into(model, out, report)
    return model, report
