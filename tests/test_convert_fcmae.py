"""ConvNeXt-V2 FCMAE (MinkowskiEngine layout) -> GeoMeld, against the reference's own remap + dense model."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from modeling_geomeld.conversion import ConversionError, convert_fcmae
from modeling_geomeld.modalities import SENTINEL2_BANDS
from tests._convnextv2_reference import (
    DenseConvNeXtV2,
    random_state,
    remap_checkpoint_keys,
    sparse_fcmae_layout,
)
from tests._tiny import TINY_TEXT

SMALL = {"text_config": dict(TINY_TEXT), "projection_dim": 14}
RGB = [SENTINEL2_BANDS.index(b) for b in ("B04", "B03", "B02")]
DEPTHS, DIMS = [1, 2, 1, 1], [8, 12, 20, 28]


def _reference(sd: dict[str, torch.Tensor]) -> DenseConvNeXtV2:
    """What the ConvNeXt-V2 fine-tuning script builds from an FCMAE checkpoint: remap, then a non-strict load
    into the dense model (the final norm keeps its init, the decoder keys are unused)."""
    ref = DenseConvNeXtV2(3, DEPTHS, DIMS).eval()
    missing, unexpected = ref.load_state_dict(remap_checkpoint_keys(sd), strict=False)
    assert sorted(missing) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert {k.split(".")[0] for k in unexpected} == {"proj", "mask_token", "decoder", "pred"}
    return ref


def test_fcmae_checkpoint_matches_reference(tmp_path: Path) -> None:
    sd = random_state(sparse_fcmae_layout(DEPTHS, DIMS), seed=0)
    path = tmp_path / "checkpoint-1599.pth"
    # the pretraining script saves the argparse Namespace beside the weights: weights_only must still read it
    torch.save({"model": sd, "epoch": 1599, "args": argparse.Namespace(model="convnextv2_atto")}, path)
    model, report = convert_fcmae(path, config_overrides=SMALL)
    assert report.exact and model.config.encoder_cfg.patch_size == 32
    assert any("no final norm" in n for n in report.notes)
    assert {k.split(".")[0] for k in report.source_keys_discarded} == {"proj", "mask_token", "decoder", "pred"}
    ref = _reference(sd)
    x = torch.randn(3, 12, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref_feats, ref_pooled = ref(x[:, RGB])
        ours = model.encoder({"sentinel2": x})
    for i, (a, b) in enumerate(zip(ours.hidden_states, ref_feats, strict=True)):
        assert (a - b).abs().max() <= 1e-5, f"stage {i}"
    assert (ours.pooler_output - ref_pooled).abs().max() <= 1e-5


def test_dense_convnextv2_checkpoint_matches_reference() -> None:
    ref = DenseConvNeXtV2(3, DEPTHS, DIMS).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    model, report = convert_fcmae(dict(ref.state_dict()), config_overrides=SMALL)
    assert report.source_keys_discarded == ["head.bias", "head.weight"]
    x = torch.randn(2, 12, 64, 64, generator=g)
    with torch.no_grad():
        ref_feats, ref_pooled = ref(x[:, RGB])
        ours = model.encoder({"sentinel2": x})
    assert (ours.last_hidden_state - ref_feats[-1]).abs().max() <= 1e-5
    assert (ours.pooler_output - ref_pooled).abs().max() <= 1e-5


def test_fcmae_missing_key_is_named() -> None:
    sd = random_state(sparse_fcmae_layout(DEPTHS, DIMS), seed=0)
    del sd["encoder.stages.1.1.grn.gamma"]
    with pytest.raises(ConversionError, match=r"encoder\.stages\.1\.1\.grn\.gamma"):
        convert_fcmae(sd, config_overrides=SMALL)


def test_unsafe_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "x": Path("/tmp")}, path)  # a class weights_only does not admit
    with pytest.raises(ConversionError, match="weights_only"):
        convert_fcmae(path, config_overrides=SMALL)
