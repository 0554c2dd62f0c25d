"""MMEarth-train pretraining checkpoints -> GeoMeldForPreTraining, against a re-creation of the model that
wrote them (sparse FCMAE on a fully visible input, loaded through MMEarth's own `remap_checkpoint_keys`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from modeling_geomeld.conversion import ConversionError, convert_mmearth
from modeling_geomeld.conversion.mmearth import geomeld_band
from tests._convnextv2_reference import (
    MMEarthReference,
    mmearth_layout,
    random_state,
    remap_checkpoint_keys,
    shared_decoder,
)
from tests._tiny import TINY_TEXT

SMALL = {"text_config": dict(TINY_TEXT), "projection_dim": 14}
DEPTHS, DIMS, PATCH, DEC = [1, 1, 2, 1], [8, 12, 16, 20], 16, 12
MM_S2 = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8A", "B8", "B9", "B11", "B12"]  # MMEarth's order
OUT = {"sentinel2": MM_S2, "sentinel1": "all", "aster": "all", "dynamic_world": "all", "biome": "all"}
OUT_CHANS = {"sentinel2": 12, "sentinel1": 8, "aster": 2, "dynamic_world": 9}
NAMES = {"sentinel2": "sentinel2", "sentinel1": "sentinel1", "aster": "dem", "dynamic_world": "dynamic_world"}


def _checkpoint(orig_stem: bool, seed: int = 0) -> dict:
    shapes = mmearth_layout(DEPTHS, DIMS, 12, PATCH, DEC, OUT_CHANS, {"biome": 14}, orig_stem=orig_stem)
    sd = shared_decoder(random_state(shapes, seed), [*OUT_CHANS, "biome"])
    args = argparse.Namespace(
        modalities={"sentinel2": MM_S2}, out_modalities=OUT, patch_size=PATCH, input_size=64, norm_pix_loss=True
    )
    return {"model": sd, "args": args, "epoch": 199}


def _reference(sd: dict, orig_stem: bool, grn_eps: float) -> MMEarthReference:
    ref = MMEarthReference(12, DEPTHS, DIMS, PATCH, DEC, OUT_CHANS, orig_stem=orig_stem, decoder_grn_eps=grn_eps)
    # the remap is for the sparse encoder (fine-tuning drops the decoder first: remapping its dense GRN would
    # add two more axes); the decoder is dense already
    dense = dict(remap_checkpoint_keys({k: v for k, v in sd.items() if k.startswith("encoder.")}))
    dense |= {k: v for k, v in sd.items() if k.startswith(("proj.", "mask_token", "decoder_dict.", "pred_dict."))}
    dense = {k: v for k, v in dense.items() if "biome" not in k}
    ref.load_state_dict(dense, strict=True)
    return ref.eval()


@pytest.mark.parametrize("orig_stem", [False, True], ids=["mmearth-stem", "orig-stem"])
def test_mmearth_encoder_and_decoders_match_reference(orig_stem: bool, tmp_path: Path) -> None:
    ckpt = _checkpoint(orig_stem)
    torch.save(ckpt, tmp_path / "checkpoint-199.pth")
    model, report = convert_mmearth(tmp_path / "checkpoint-199.pth", config_overrides=SMALL)
    model.eval()
    enc_cfg = model.config.encoder_cfg
    assert enc_cfg.stem_type == ("convnext" if orig_stem else "mmearth") and enc_cfg.patch_size == PATCH
    assert not report.exact and any("GRN eps 1e-4" in n for n in report.notes)
    assert {k.split(".")[1] for k in report.source_keys_discarded} == {"biome", "weight", "bias"}
    assert not [k for k in report.target_keys_not_in_source if k.startswith(("geomeld.encoder.", "decoder.", "loss_log_vars."))]

    g = torch.Generator().manual_seed(1)
    x_mm = torch.randn(1, 12, 64, 64, generator=g)  # batch 1: MMEarth's sparse GRN pools over the batch
    ours_bands = enc_cfg.input_modalities["sentinel2"]
    x = x_mm[:, [[geomeld_band("sentinel2", b) for b in MM_S2].index(b) for b in ours_bands]]
    exact = _reference(ckpt["model"], orig_stem, grn_eps=1e-6)
    with torch.no_grad():
        ref_feats = exact.encode(x_mm)
        enc = model.geomeld.encoder({"sentinel2": x})
    for i, (a, b) in enumerate(zip(enc.hidden_states, ref_feats, strict=True)):
        assert (a - b).abs().max() <= 1e-5, f"stage {i}"

    mask = torch.rand(1, 4 * 4, generator=g) > 0.4  # (N, L), 1 = masked
    latent = ref_feats[-1]
    targets = [n for n in model.config.decoder_cfg.target_modalities]
    with torch.no_grad():
        ours = model.decoder(latent, mask.reshape(1, 4, 4), targets)
        by_eps = {eps: _reference(ckpt["model"], orig_stem, eps).decode(latent, mask.float()) for eps in (1e-6, 1e-4)}
    worst = {}
    for mm, name in NAMES.items():
        c = OUT_CHANS[mm]
        mine = ours[name].reshape(1, c, 4, PATCH, 4, PATCH).permute(0, 3, 5, 1, 2, 4)  # (N, p, p, C, h, w)
        if name in ("dynamic_world",):
            order = list(range(c))
        else:
            mm_names = [geomeld_band(mm, b) for b in (MM_S2 if mm == "sentinel2" else
                        {"sentinel1": ["asc_VV", "asc_VH", "asc_HH", "asc_HV", "desc_VV", "desc_VH", "desc_HH", "desc_HV"],
                         "aster": ["elevation", "slope"]}[mm])]
            order = [mm_names.index(b) for b in model.config.decoder_cfg.target_modalities[name]]
        for eps, preds in by_eps.items():
            theirs = preds[mm].reshape(1, PATCH, PATCH, c, 4, 4)[:, :, :, order]
            worst[(name, eps)] = float((mine - theirs).abs().max())
    # the mapping (blocks, heads, channel permutation, band order) is exact: with GRN eps 1e-6 on both sides
    assert max(v for (_, eps), v in worst.items() if eps == 1e-6) <= 1e-5, worst
    # MMEarth's decoder GRN eps is 1e-4 (GeoMeld: 1e-6): the reconstructions differ only by that, a little
    assert max(v for (_, eps), v in worst.items() if eps == 1e-4) <= 1e-2, worst
    # uncertainty log-variances follow args.out_modalities order
    log_vars = ckpt["model"]["loss_fn.log_vars"]
    for i, mm in enumerate(OUT):
        if mm in NAMES:
            assert float(model.loss_log_vars[NAMES[mm]]) == float(log_vars[i])


def test_mmearth_unshared_decoder_blocks_are_refused() -> None:
    ckpt = _checkpoint(False)
    ckpt["model"]["decoder_dict.aster.0.dwconv.bias"] += 1.0
    with pytest.raises(ConversionError, match="differs between modalities"):
        convert_mmearth(ckpt, config_overrides=SMALL)


def test_mmearth_unknown_key_is_named() -> None:
    ckpt = _checkpoint(False)
    ckpt["model"]["encoder.extra_head.weight"] = torch.zeros(2)
    with pytest.raises(ConversionError, match=r"encoder\.extra_head\.weight"):
        convert_mmearth(ckpt, config_overrides=SMALL)
