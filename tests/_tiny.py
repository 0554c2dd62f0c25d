"""Deliberately odd tiny configurations shared by the model tests (odd widths, odd batch, small grid)."""

from __future__ import annotations

from typing import Any

import torch

from modeling_geomeld import GeoMeldConfig
from modeling_geomeld.modalities import SENTINEL2_BANDS

TINY_TEXT: dict[str, Any] = {
    "model_type": "bert",
    "vocab_size": 30522,  # the MiniLM tokenizer's vocabulary, so real captions tokenize
    "hidden_size": 20,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 36,
    "max_position_embeddings": 64,
}
ALL_INPUTS = {"sentinel2": list(SENTINEL2_BANDS), "sentinel1": ["VV", "VH"], "dem": ["elevation", "slope"]}
IMAGE = 48  # patch 16 -> a 3 x 3 patch grid; stem stride 2 -> 24 x 24 first stage
BATCH = 13


def tiny_config(**overrides: Any) -> GeoMeldConfig:
    encoder = {
        "depths": [1, 2, 1, 1],
        "dims": [8, 12, 20, 28],
        "image_size": IMAGE,
        "patch_size": 16,
        "input_modalities": ALL_INPUTS,
        "drop_path_rate": 0.1,
    }
    encoder.update(overrides.pop("encoder_config", {}))
    decoder = {"hidden_size": 18, "depth": 1}
    decoder.update(overrides.pop("decoder_config", {}))
    kwargs: dict[str, Any] = {
        "encoder_config": encoder,
        "decoder_config": decoder,
        "predictor_config": {"hidden_size": 10, "depth": 1},
        "text_config": dict(TINY_TEXT),
        "projection_dim": 14,
        "freeze_text_tower": False,
    }
    kwargs.update(overrides)
    return GeoMeldConfig(**kwargs)


def inputs(names: list[str], batch: int = BATCH, size: int = IMAGE, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(batch, len(ALL_INPUTS[n]), size, size, generator=g) for n in names}


def targets(batch: int = BATCH, size: int = IMAGE, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "sentinel1": torch.randn(batch, 2, size, size, generator=g),
        "dem": torch.randn(batch, 2, size, size, generator=g),
        "canopy_height": torch.randn(batch, 2, size, size, generator=g),
        "dynamic_world": torch.randint(-1, 9, (batch, size, size), generator=g),
        "esa_worldcover": torch.randint(-1, 11, (batch, size, size), generator=g),
    }


def captions(batch: int = BATCH, seed: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (batch, 7), generator=g)
    attention = torch.ones_like(ids)
    attention[::2, 5:] = 0  # ragged captions
    return {"input_ids": ids, "attention_mask": attention}
