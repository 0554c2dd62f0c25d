"""transformers `ConvNextV2Model` / `ConvNextV2ForImageClassification` folders -> GeoMeld-FM.

Exact at the ImageNet geometry: the HF stem is a 4x4 stride-4 conv and four stages downsample 32x, which is
GeoMeld's `patch_size=32` (stem stride = patch / 2**(stages-1) = 4). The RGB filters go on B04/B03/B02 by
name and zero elsewhere, so GeoMeld on 12 S2 bands computes the HF model on those three bands. At another
patch size the stem is resampled (`resample_patch_stem`) and the report says the result is an approximation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import ConvNextV2Config

from ..configuration_geomeld import GeoMeldConfig
from ..modalities import SENTINEL2_BANDS
from ..modeling_geomeld import GeoMeldModel
from .common import (
    ConversionError,
    ConversionReport,
    SourceWeights,
    block_shapes,
    encoder_geometry,
    load_checkpoint,
    load_into,
    rgb_stem,
)

# HF's names of a block's tensors, by GeoMeld name
_HF_BLOCK = {
    "dwconv.weight": "dwconv.weight",
    "dwconv.bias": "dwconv.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
    "pwconv1.weight": "pwconv1.weight",
    "pwconv1.bias": "pwconv1.bias",
    "grn.gamma": "grn.weight",
    "grn.beta": "grn.bias",
    "pwconv2.weight": "pwconv2.weight",
    "pwconv2.bias": "pwconv2.bias",
}


def convert_hf_convnextv2(
    folder: str | Path,
    *,
    patch_size: int | None = None,
    input_modalities: dict[str, list[str]] | None = None,
    image_size: int | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> tuple[GeoMeldModel, ConversionReport]:
    """Build a `GeoMeldModel` whose encoder carries the weights of a transformers ConvNeXt V2 folder.

    Args:
        folder: a folder written by `ConvNextV2Model.save_pretrained` (or the image-classification head;
            its classifier is discarded and reported).
        patch_size: GeoMeld's patch size; defaults to the exact one (HF stem stride x 2**(stages-1)).
        input_modalities: the encoder's inputs; defaults to the 12 Sentinel-2 bands. Must hold B04/B03/B02.
        image_size: the config's training crop; defaults to the HF config's when divisible by the patch.
        config_overrides: further `GeoMeldConfig` fields (text tower, projection width, ...).
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ConversionError(f"{folder}: not a transformers model folder (no config.json)")
    hf: Any = ConvNextV2Config.from_pretrained(str(folder))
    if hf.model_type != "convnextv2":
        raise ConversionError(f"{folder}: model_type {hf.model_type!r}, expected 'convnextv2'")
    if hf.hidden_act != "gelu":
        raise ConversionError(f"{folder}: hidden_act {hf.hidden_act!r}; GeoMeld's blocks use GELU")
    sd = load_checkpoint(folder)
    prefix = "convnextv2." if any(k.startswith("convnextv2.") for k in sd) else ""
    src = SourceWeights(sd, "transformers ConvNextV2", prefix)

    depths, dims = list(hf.depths), list(hf.hidden_sizes)
    stem_stride = int(hf.patch_size)
    exact_patch = stem_stride * 2 ** (len(depths) - 1)
    patch = patch_size or exact_patch
    modalities = {k: list(v) for k, v in (input_modalities or {"sentinel2": list(SENTINEL2_BANDS)}).items()}
    if image_size is None:
        image_size = int(hf.image_size) if int(hf.image_size) % patch == 0 else patch * max(1, round(112 / patch))
    config = GeoMeldConfig(
        encoder_config={
            **encoder_geometry(depths, dims),
            "input_modalities": modalities,
            "patch_size": patch,
            "image_size": image_size,
            "stem_type": "convnext",  # ConvNeXt V2's k = s patchify stem
            "layer_norm_eps": 1e-6,  # HF's stem, block and downsampling norms; see the note on the final norm
        },
        **(config_overrides or {}),
    )
    report = ConversionReport("transformers-convnextv2", str(folder), "GeoMeldModel")
    target_stride = config.encoder_cfg.stem_stride

    out: dict[str, torch.Tensor] = {}
    stem = src.take("embeddings.patch_embeddings.weight", (dims[0], hf.num_channels, stem_stride, stem_stride))
    if hf.num_channels != 3:
        raise ConversionError(f"{folder}: num_channels {hf.num_channels}; the converter places 3 RGB channels")
    if "sentinel2" not in modalities:
        raise ConversionError(f"input_modalities {list(modalities)} lack sentinel2, which the RGB stem maps onto")
    out["encoder.stems.sentinel2.conv.weight"] = rgb_stem(
        stem, target_stride, patch, exact_patch, modalities["sentinel2"], report
    )
    out["encoder.stems.sentinel2.conv.bias"] = src.take("embeddings.patch_embeddings.bias", (dims[0],))
    out["encoder.stems.sentinel2.norm.weight"] = src.take("embeddings.layernorm.weight", (dims[0],))
    out["encoder.stems.sentinel2.norm.bias"] = src.take("embeddings.layernorm.bias", (dims[0],))
    for name in modalities:
        out[f"encoder.modality_embeddings.{name}"] = torch.zeros(dims[0])  # ConvNeXt V2 has none
    report.notes.append("inputs are normalised with GeoMeld's Sentinel-2 statistics, not ImageNet's")
    extra = [m for m in modalities if m != "sentinel2"]
    if extra:
        report.notes.append(f"stems of {extra} are not in the source and keep their random initialisation")
    for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
        if i > 0:
            ds = f"encoder.stages.{i}.downsampling_layer"
            out[f"encoder.downsamples.{i}.norm.weight"] = src.take(f"{ds}.0.weight", (dims[i - 1],))
            out[f"encoder.downsamples.{i}.norm.bias"] = src.take(f"{ds}.0.bias", (dims[i - 1],))
            out[f"encoder.downsamples.{i}.conv.weight"] = src.take(f"{ds}.1.weight", (dim, dims[i - 1], 2, 2))
            out[f"encoder.downsamples.{i}.conv.bias"] = src.take(f"{ds}.1.bias", (dim,))
        for j in range(depth):
            for ours, shape in block_shapes(dim).items():
                out[f"encoder.stages.{i}.{j}.{ours}"] = src.take(
                    f"encoder.stages.{i}.layers.{j}.{_HF_BLOCK[ours]}", shape
                )
    out["encoder.norm.weight"] = src.take("layernorm.weight", (dims[-1],))
    out["encoder.norm.bias"] = src.take("layernorm.bias", (dims[-1],))
    if abs(float(hf.layer_norm_eps) - 1e-6) > 1e-12:
        report.notes.append(
            f"HF's final (pooler) LayerNorm uses eps {hf.layer_norm_eps}, GeoMeld's 1e-6: pooled outputs may "
            "differ in the last digits; dense features are unaffected"
        )
    src.check_done([r"^classifier\."], report)

    model = GeoMeldModel(config)
    load_into(model, out, report)
    return model, report
