"""GeoMeldImageProcessor / GeoMeldProcessor: validation, band order by name, no-data, statistics, sizes (full
size padded by default, explicit crops, everything reported), slope from elevation (against GDAL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from modeling_geomeld import GeoMeldImageProcessor, GeoMeldProcessor
from modeling_geomeld.modalities import SENTINEL2_ALL_BANDS, SENTINEL2_BANDS, get_modality
from modeling_geomeld.text import load_text_tokenizer

INPUTS = {"sentinel2": list(SENTINEL2_BANDS), "sentinel1": ["VV", "VH"]}
TARGETS = {"esa_worldcover": ["class"], "dem": ["elevation"]}


@pytest.fixture
def processor() -> GeoMeldImageProcessor:
    return GeoMeldImageProcessor(input_modalities=INPUTS, target_modalities=TARGETS, crop_size=32, patch_size=16)


def _s2(seed: int = 0, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 8000, (12, size, size)).astype(np.int16)


def test_bands_given_in_another_order_are_reordered_by_name(processor: GeoMeldImageProcessor) -> None:
    s2 = _s2()
    perm = np.random.default_rng(1).permutation(12)
    shuffled_names = [SENTINEL2_BANDS[i] for i in perm]
    a = processor({"sentinel2_l2a": s2})["pixel_values"]["sentinel2"]
    b = processor({"sentinel2_l2a": s2[perm]}, band_names={"sentinel2_l2a": shuffled_names})["pixel_values"]["sentinel2"]
    assert torch.equal(a, b)


def test_l1c_drops_b10_by_name_and_uses_its_own_statistics(processor: GeoMeldImageProcessor) -> None:
    l1c = np.random.default_rng(2).integers(1, 8000, (13, 40, 40)).astype(np.int16)
    out = processor({"sentinel2_l1c": l1c})["pixel_values"]["sentinel2"]
    assert out.shape == (1, 12, 32, 32)
    without_b10 = l1c[[SENTINEL2_ALL_BANDS.index(b) for b in SENTINEL2_BANDS]]
    as_l2a = processor({"sentinel2_l2a": without_b10})["pixel_values"]["sentinel2"]
    assert not torch.allclose(out, as_l2a)  # same numbers, different product statistics
    mean, std = get_modality("sentinel2").band_stats(SENTINEL2_BANDS, "l1c")
    crop = without_b10[:, 4:36, 4:36].astype(np.float32)
    expected = (crop - mean[:, None, None]) / std[:, None, None]
    assert np.allclose(out[0].numpy(), expected, atol=1e-5)


def test_wrong_band_count_names_expected_and_received(processor: GeoMeldImageProcessor) -> None:
    with pytest.raises(ValueError, match=r"expected 12 bands \['B01'.*got 10"):
        processor({"sentinel2_l2a": _s2()[:10]})
    with pytest.raises(ValueError, match=r"lacks bands \['B12'\]"):
        processor({"sentinel2_l2a": _s2()[:11]}, band_names={"sentinel2_l2a": list(SENTINEL2_BANDS[:11])})
    with pytest.raises(ValueError, match="not an input modality"):
        processor({"naip": np.zeros((3, 40, 40), np.uint16)})
    with pytest.raises(ValueError, match="numeric array"):
        processor({"sentinel1": np.zeros((2, 40, 40), dtype=bool)})
    with pytest.raises(ValueError, match="share batch size and grid"):
        processor({"sentinel2_l2a": _s2(), "sentinel1": np.zeros((2, 48, 48), np.float32)})


def test_no_data_becomes_a_validity_mask(processor: GeoMeldImageProcessor) -> None:
    s2 = _s2()
    s2[:, 4:10, :] = 0  # Sentinel-2 no-data value
    s1 = np.random.default_rng(3).normal(-12, 3, (2, 40, 40))
    s1[1, 20:, 20:] = np.nan
    out = processor({"sentinel2_l2a": s2, "sentinel1": s1})
    v2, v1 = out["valid_mask"]["sentinel2"][0], out["valid_mask"]["sentinel1"][0]
    assert not v2[:6].any() and v2[6:].all()
    assert not v1[16:, 16:].any() and v1[:16].all()
    assert (out["pixel_values"]["sentinel2"][0][:, :6] == 0).all()
    assert torch.isfinite(out["pixel_values"]["sentinel1"]).all()


def test_random_crop_is_seeded_and_shared_by_all_layers() -> None:
    proc = GeoMeldImageProcessor(input_modalities=INPUTS, target_modalities=TARGETS, crop_size=16, crop_mode="random", patch_size=16)
    yy, xx = np.mgrid[:48, :48].astype(np.float32)
    s1 = np.stack([yy - 30.0, xx - 30.0])  # values encode position
    dem = (yy * 100 + xx)[None]
    a = proc({"sentinel1": s1}, targets={"dem": dem}, seed=7)
    b = proc({"sentinel1": s1}, targets={"dem": dem}, seed=7)
    assert torch.equal(a["pixel_values"]["sentinel1"], b["pixel_values"]["sentinel1"])
    s1_mean, s1_std = get_modality("sentinel1").band_stats(["VV"], "default")
    y0 = round(float(a["pixel_values"]["sentinel1"][0, 0, 0, 0]) * s1_std[0] + s1_mean[0] + 30)
    dem_mean, dem_std = get_modality("dem").band_stats(["elevation"], "default")
    d0 = float(a["targets"]["dem"][0, 0, 0, 0]) * dem_std[0] + dem_mean[0]
    assert round(d0) // 100 == y0  # the DEM target was cut from the same window


def test_categorical_targets_become_indices(processor: GeoMeldImageProcessor) -> None:
    wc = np.full((1, 40, 40), 80, np.uint8)
    wc[0, :, 20:] = 10
    wc[0, :4] = 0
    out = processor({"sentinel1": np.zeros((2, 40, 40), np.float32)}, targets={"esa_worldcover": wc})
    t = out["targets"]["esa_worldcover"][0]
    assert t.dtype == torch.int64
    assert set(t.unique().tolist()) == {0, 7}  # rows 0..3 of the crop window are rows 4..7 of the input: valid
    assert int(t[0, 0]) == 7 and int(t[0, -1]) == 0


def test_processor_round_trip_and_text(tmp_path: Path, processor: GeoMeldImageProcessor) -> None:
    full = GeoMeldProcessor(processor, load_text_tokenizer())
    full.save_pretrained(tmp_path)
    again = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(again, GeoMeldProcessor)
    a = full(images={"sentinel2_l2a": _s2()}, text=["a snowy plain"])
    b = again(images={"sentinel2_l2a": _s2()}, text=["a snowy plain"])
    assert torch.equal(a["pixel_values"]["sentinel2"], b["pixel_values"]["sentinel2"])
    assert torch.equal(a["input_ids"], b["input_ids"])
    with pytest.raises(ValueError, match="needs images, text, or both"):
        full()


# -- refusals: what the processor cannot honour is a ValueError naming expected and found ---------------


def test_band_names_keyed_by_another_name_of_the_image_are_refused(processor: GeoMeldImageProcessor) -> None:
    with pytest.raises(ValueError, match=r"band_names key 'sentinel2' does not match the images key 'sentinel2_l2a'"):
        processor({"sentinel2_l2a": _s2()}, band_names={"sentinel2": list(SENTINEL2_BANDS)})


def test_two_images_of_one_modality_are_refused(processor: GeoMeldImageProcessor) -> None:
    l1c = np.random.default_rng(2).integers(1, 8000, (13, 40, 40)).astype(np.int16)
    with pytest.raises(ValueError, match=r"two arrays of sentinel2: 'sentinel2_l2a' and 'sentinel2_l1c'"):
        processor({"sentinel2_l2a": _s2(), "sentinel2_l1c": l1c})


def test_band_names_without_an_image_are_refused(processor: GeoMeldImageProcessor) -> None:
    with pytest.raises(ValueError, match=r"band_names names bands of 'sentinel1' but images holds no such array"):
        processor({"sentinel2_l2a": _s2()}, band_names={"sentinel1": ["VV", "VH"]})
    with pytest.raises(ValueError, match=r"target_band_names key 'dem' .*|target_band_names names bands of 'dem'"):
        processor({"sentinel2_l2a": _s2()}, targets={"esa_worldcover": np.full((1, 40, 40), 10, np.uint8)},
                  target_band_names={"dem": ["elevation"]})  # fmt: skip


def test_unknown_modality_is_a_value_error_listing_the_known(processor: GeoMeldImageProcessor) -> None:
    with pytest.raises(ValueError, match=r"unknown modality 'sentinel3'; expected one of \[.*'sentinel2_l2a'"):
        processor({"sentinel3": _s2()})
    with pytest.raises(ValueError, match="unknown modality 'sentinel2_l3'"):
        processor({"sentinel2_l2a": _s2()}, band_names={"sentinel2_l3": list(SENTINEL2_BANDS)})


def test_unnamed_array_warns_once_how_to_pass_names(processor: GeoMeldImageProcessor) -> None:
    from modeling_geomeld import image_processing_geomeld

    image_processing_geomeld._UNNAMED_WARNED.discard("sentinel2_l2a")
    with pytest.warns(UserWarning, match=r"canonical order \['B01', .*'B08', 'B8A'.*band_names=\{'sentinel2_l2a'"):
        unnamed = processor({"sentinel2_l2a": _s2()})["pixel_values"]["sentinel2"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call is silent
        processor({"sentinel2_l2a": _s2()})
        named = processor({"sentinel2_l2a": _s2()}, band_names={"sentinel2_l2a": list(SENTINEL2_BANDS)})
    assert torch.equal(unnamed, named["pixel_values"]["sentinel2"])  # canonical order is what it assumed


def test_non_finite_and_absurd_values_become_no_data_and_are_counted(processor: GeoMeldImageProcessor) -> None:
    s2 = _s2().astype(np.float32)
    s2[3, 10, 10] = 3e38  # a fill value far beyond 16-bit reflectance
    s2[0, 11, 11] = np.inf
    s2[5, 12, 12] = -50.0  # negative reflectance DN
    s1 = np.random.default_rng(3).normal(-12, 3, (2, 40, 40)).astype(np.float32)
    s1[0, 20, 20] = np.nan
    s1[1, 21, 21] = 1e6  # a linear power value in a dB layer would be ~60 dB at most
    dem = np.full((1, 40, 40), 120.0, np.float32)
    dem[0, 30, 30] = -3e38
    out = processor({"sentinel2_l2a": s2, "sentinel1": s1}, targets={"dem": dem},
                    band_names={"sentinel2_l2a": list(SENTINEL2_BANDS), "sentinel1": ["VV", "VH"]})  # fmt: skip
    counts = {k: v.tolist() for k, v in out["invalid_pixels"].items()}
    assert counts == {"sentinel2": [3], "sentinel1": [2], "targets.dem": [1]}
    v2 = out["valid_mask"]["sentinel2"][0]
    assert not v2[6, 6] and not v2[7, 7] and not v2[8, 8] and v2[9, 9]  # crop offset 4
    assert torch.isfinite(out["pixel_values"]["sentinel2"]).all() and torch.isfinite(out["pixel_values"]["sentinel1"]).all()
    assert torch.isnan(out["targets"]["dem"][0, 0, 26, 26]) and torch.isfinite(out["targets"]["dem"][0, 0, 25, 25])
    # a realistic array has nothing to count
    clean = processor({"sentinel1": np.full((2, 40, 40), -12.0, np.float32)}, band_names={"sentinel1": ["VV", "VH"]})
    assert clean["invalid_pixels"]["sentinel1"].tolist() == [0]


def test_3e38_gives_a_finite_embedding() -> None:
    from modeling_geomeld import GeoMeldConfig, GeoMeldModel

    torch.manual_seed(0)
    model = GeoMeldModel(GeoMeldConfig.from_preset("tiny", encoder_config={"image_size": 32})).eval()
    proc = GeoMeldImageProcessor.from_model_config(model.config)
    s2 = _s2(size=32).astype(np.float32)
    s2[:, 8:12, 8:12] = 3e38
    names = {"sentinel2_l2a": list(SENTINEL2_BANDS)}
    batch = proc({"sentinel2_l2a": s2}, band_names=names)
    with torch.no_grad():
        emb = model.get_image_features(batch["pixel_values"], batch["valid_mask"])
        out = model(**batch, text_features=torch.zeros(1, model.text_projection.in_features))  # the report fields pass
    assert torch.isfinite(emb).all() and torch.isfinite(out.image_embeds).all()


# -- sizes: the input size is kept (padded to the patch multiple); crops only when asked; all reported -------

TILE = "433D_629L_3_1"  # Chile: the most relief of the five real locations


def _tile(terramind_dir: Path) -> dict[str, np.ndarray]:
    from dataset_scripts.terramind import read_tile

    return read_tile(terramind_dir, TILE)


S2_NAMES = {"sentinel2_l2a": list(SENTINEL2_BANDS)}  # TerraMind's file order is the canonical one


def _denormalise(proc: GeoMeldImageProcessor, key: str, x: torch.Tensor) -> np.ndarray:
    _, mean, std = proc.mean_std(key)
    return x.numpy() * std[:, None, None] + mean[:, None, None]


def test_a_224px_tile_keeps_all_its_pixels(terramind_dir: Path) -> None:
    s2 = _tile(terramind_dir)["sentinel2_l2a"]
    assert s2.shape == (12, 224, 224)
    proc = GeoMeldImageProcessor(input_modalities={"sentinel2": []})  # the default: no crop
    out = proc({"sentinel2_l2a": s2}, band_names=S2_NAMES)
    assert out["pixel_values"]["sentinel2"].shape == (1, 12, 224, 224)
    assert out["transforms"] == []  # nothing was done to the grid
    assert out["valid_region"].tolist() == [[0, 0, 224, 224]] and out["original_size"].tolist() == [[224, 224]]
    back = _denormalise(proc, "sentinel2_l2a", out["pixel_values"]["sentinel2"][0])
    np.testing.assert_allclose(back, s2, atol=0.05)  # every pixel, unchanged
    # a processor from a model config is the inference one too; only an explicit crop crops
    from modeling_geomeld import GeoMeldConfig

    cfg = GeoMeldConfig.from_preset("tiny")
    assert GeoMeldImageProcessor.from_model_config(cfg).crop_size is None


def test_120px_pads_to_128_with_the_valid_region_reported_and_the_padding_masked(terramind_dir: Path) -> None:
    tile = _tile(terramind_dir)
    s2, dem, dw = tile["sentinel2_l2a"][:, :120, :120], tile["dem"][:, :120, :120], tile["dynamic_world"][:, :120, :120]
    proc = GeoMeldImageProcessor(input_modalities={"sentinel2": [], "dem": ["elevation", "slope"]},
                                 target_modalities={"dynamic_world": [], "dem": ["elevation"]})  # fmt: skip
    out = proc({"sentinel2_l2a": s2, "dem": dem}, band_names={**S2_NAMES, "dem": ["elevation"]},
               targets={"dynamic_world": dw, "dem": dem}, target_band_names={"dem": ["elevation"]})  # fmt: skip
    for name in ("sentinel2", "dem"):
        x, valid = out["pixel_values"][name][0], out["valid_mask"][name][0]
        assert x.shape[-2:] == (128, 128) and valid.shape == (128, 128)
        assert valid[:120, :120].all() and not valid[120:].any() and not valid[:, 120:].any()
        assert (x[:, 120:] == 0).all() and (x[:, :, 120:] == 0).all()  # no-data is 0 after normalisation
    assert torch.isnan(out["targets"]["dem"][0, 0, 120:]).all() and torch.isfinite(out["targets"]["dem"][0, 0, :120, :120]).all()
    assert (out["targets"]["dynamic_world"][0, 120:] == -1).all() and (out["targets"]["dynamic_world"][0, :120, :120] >= 0).all()
    assert out["valid_region"].tolist() == [[0, 0, 120, 120]] and out["original_size"].tolist() == [[120, 120]]
    assert out["invalid_pixels"]["sentinel2"].tolist() == [0]  # padding is not counted as bad values
    pad = [t for t in out["transforms"] if t["op"] == "pad"]
    assert pad == [{"op": "pad", "where": "bottom_right", "bottom": 8, "right": 8, "height": 128, "width": 128,
                    "fill": "no-data", "reason": "to a multiple of patch_size 16"}]  # fmt: skip
    # back to the input: the valid region of the output is the input, pixel for pixel
    back = proc.crop_to_valid(out["pixel_values"]["sentinel2"], out)
    assert back.shape == (1, 12, 120, 120)
    np.testing.assert_allclose(_denormalise(proc, "sentinel2_l2a", back[0]), s2, atol=0.05)
    # a coarser grid (per-patch cells of 16 px) keeps every cell holding a valid pixel: ceil(120 / 16) = 8
    assert proc.crop_to_valid(torch.zeros(1, 7, 8, 8), out).shape == (1, 7, 8, 8)
    assert proc.crop_to_valid(np.zeros((1, 3, 32, 32)), out).shape == (1, 3, 30, 30)
    with pytest.raises(ValueError, match=r"array's grid \(5, 5\) must be the batch's \(128, 128\) or coarser"):
        proc.crop_to_valid(torch.zeros(1, 5, 5), out)


def test_segmentation_on_a_padded_batch_crops_back_to_the_original_and_agrees_with_unpadded(terramind_dir: Path) -> None:
    from modeling_geomeld import GeoMeldConfig, GeoMeldForSemanticSegmentation

    torch.manual_seed(0)
    cfg = GeoMeldConfig.from_preset("tiny", num_labels=get_modality("dynamic_world").num_classes)
    model = GeoMeldForSemanticSegmentation(cfg).eval()
    proc = GeoMeldImageProcessor.from_model_config(cfg)
    s2 = _tile(terramind_dir)["sentinel2_l2a"]
    padded = proc({"sentinel2_l2a": s2[:, :120, :120]}, band_names=S2_NAMES)  # 120 -> 128, 8 px of no-data
    whole = proc({"sentinel2_l2a": s2[:, :128, :128]}, band_names=S2_NAMES)  # the same place, real pixels there
    with torch.no_grad():
        logits = model(**padded).logits
        reference = model(**whole).logits[..., :120, :120]
        garbage = {k: v.clone() for k, v in padded["pixel_values"].items()}
        garbage["sentinel2"][..., 120:, :] = 1e3  # what lies under the padding does not matter: it is no-data
        same = model(pixel_values=garbage, valid_mask=padded["valid_mask"]).logits
    assert logits.shape == (1, cfg.num_labels, 128, 128)
    cropped = proc.crop_to_valid(logits, padded)
    assert cropped.shape == (1, cfg.num_labels, 120, 120) and torch.isfinite(cropped).all()
    assert torch.equal(same, logits)
    corr = torch.corrcoef(torch.stack([cropped.flatten(), reference.flatten()]))[0, 1]
    assert corr > 0.95, corr  # padding changes the output near the edge only
    inner = torch.corrcoef(torch.stack([cropped[..., :96, :96].flatten(), reference[..., :96, :96].flatten()]))[0, 1]
    assert inner > 0.99, inner  # and hardly at all a patch row or more away from it
    # labels on the input grid go onto the output grid with the loss's ignore index under the padding
    dw = get_modality("dynamic_world").codes_to_indices(_tile(terramind_dir)["dynamic_world"][:, :120, :120])
    ignore = model.config.semantic_loss_ignore_index
    labels = proc.to_output_grid(torch.from_numpy(dw), padded, fill=ignore)
    assert labels.shape == (1, 128, 128) and (labels[:, 120:] == ignore).all() and torch.equal(labels[:, :120, :120], torch.from_numpy(dw))
    with torch.no_grad():
        loss = model(**padded, labels=labels).loss
        only_valid = torch.nn.functional.cross_entropy(cropped, torch.from_numpy(dw), ignore_index=ignore)
    assert torch.isclose(loss, only_valid)  # the padding does not enter the loss
    centre = GeoMeldImageProcessor.from_model_config(cfg, crop_size=64)
    cut = centre({"sentinel2_l2a": s2}, band_names=S2_NAMES)
    grid = np.arange(224 * 224).reshape(1, 224, 224)
    np.testing.assert_array_equal(centre.to_output_grid(grid, cut, fill=-1), grid[:, 80:144, 80:144])
    with pytest.raises(ValueError, match=r"array's grid \(120, 120\) must be the input's \[224, 224\]"):
        centre.to_output_grid(grid[:, :120, :120], cut, fill=-1)


def test_explicit_random_crops_are_reproducible_per_seed_and_reported(terramind_dir: Path) -> None:
    s2 = _tile(terramind_dir)["sentinel2_l2a"]
    proc = GeoMeldImageProcessor(input_modalities={"sentinel2": []}, crop_size=64, crop_mode="random")
    windows = []
    for seed in range(6):
        a = proc({"sentinel2_l2a": s2}, band_names=S2_NAMES, seed=seed)
        b = proc({"sentinel2_l2a": s2}, band_names=S2_NAMES, seed=seed)
        assert torch.equal(a["pixel_values"]["sentinel2"], b["pixel_values"]["sentinel2"]) and a["transforms"] == b["transforms"]
        (crop,) = a["transforms"]
        assert (crop["op"], crop["mode"], crop["height"], crop["width"], crop["input_height"]) == ("crop", "random", 64, 64, 224)
        y, x = crop["y0"], crop["x0"]
        back = _denormalise(proc, "sentinel2_l2a", a["pixel_values"]["sentinel2"][0])
        np.testing.assert_allclose(back, s2[:, y : y + 64, x : x + 64], atol=0.05)  # the reported window
        assert a["valid_region"].tolist() == [[0, 0, 64, 64]]
        windows.append((y, x))
    assert len(set(windows)) > 1  # the seed moves the window
    centre = GeoMeldImageProcessor(input_modalities={"sentinel2": []}, crop_size=64)({"sentinel2_l2a": s2}, band_names=S2_NAMES)
    assert centre["transforms"][0] | {} == {"op": "crop", "mode": "center", "y0": 80, "x0": 80, "height": 64, "width": 64,
                                             "input_height": 224, "input_width": 224}  # fmt: skip


def test_an_input_smaller_than_the_crop_is_padded_and_reported_not_refused() -> None:
    proc = GeoMeldImageProcessor(input_modalities=INPUTS, crop_size=32, crop_mode="random")
    out = proc({"sentinel1": np.full((2, 20, 48), -12.0, np.float32)}, band_names={"sentinel1": ["VV", "VH"]}, seed=1)
    assert out["pixel_values"]["sentinel1"].shape == (1, 2, 32, 32)
    assert out["valid_region"].tolist() == [[0, 0, 20, 32]] and out["original_size"].tolist() == [[20, 48]]
    crop, pad = out["transforms"]
    assert (crop["op"], crop["y0"], crop["height"], crop["width"]) == ("crop", 0, 20, 32)  # rows kept whole
    assert pad == {"op": "pad", "where": "bottom_right", "bottom": 12, "right": 0, "height": 32, "width": 32,
                   "fill": "no-data", "reason": "up to crop_size 32"}  # fmt: skip
    v = out["valid_mask"]["sentinel1"][0]
    assert v[:20].all() and not v[20:].any()
    with pytest.raises(ValueError, match=r"crop_size must be None \(keep the input size\) or a positive multiple of patch_size 16, got 40"):
        GeoMeldImageProcessor(input_modalities=INPUTS, crop_size=40)


#: the preprocessor_config.json that the processor before this change saved (crop_size 112 was its default)
OLD_SAVED_CONFIG = {
    "auto_map": {"AutoImageProcessor": "image_processing_geomeld.GeoMeldImageProcessor"},
    "crop_mode": "center",
    "crop_size": 112,
    "image_processor_type": "GeoMeldImageProcessor",
    "input_modalities": {"sentinel2": list(SENTINEL2_BANDS)},
    "patch_size": 16,
    "s2_product": "l2a",
    "stats": {},
    "target_modalities": {"dem": ["elevation", "slope"], "sentinel1": ["VV", "VH"]},
}


def test_a_processor_saved_by_the_old_code_loads_and_reports_its_crop(tmp_path: Path, terramind_dir: Path) -> None:
    import json

    from transformers import AutoImageProcessor

    (tmp_path / "preprocessor_config.json").write_text(json.dumps(OLD_SAVED_CONFIG))
    old = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(old, GeoMeldImageProcessor) and old.crop_size == 112 and old.pixel_size_m is None
    s2 = _tile(terramind_dir)["sentinel2_l2a"]
    out = old({"sentinel2_l2a": s2}, band_names=S2_NAMES)
    assert out["pixel_values"]["sentinel2"].shape == (1, 12, 112, 112)  # it crops as it says ...
    assert out["transforms"] == [{"op": "crop", "mode": "center", "y0": 56, "x0": 56, "height": 112, "width": 112,
                                  "input_height": 224, "input_width": 224}]  # ... and says so  # fmt: skip
    full = AutoImageProcessor.from_pretrained(tmp_path, crop_size=None)  # the way out for inference
    assert full({"sentinel2_l2a": s2}, band_names=S2_NAMES)["pixel_values"]["sentinel2"].shape[-2:] == (224, 224)
    # what a release saves now is the inference default, whatever the training cropped
    from modeling_geomeld.hub.folders import save_release_processor

    training = GeoMeldImageProcessor(input_modalities={"sentinel2": []}, crop_size=64, crop_mode="random")
    save_release_processor(training, tmp_path / "release")
    saved = json.loads((tmp_path / "release" / "preprocessor_config.json").read_text())
    assert saved.get("crop_size") is None and saved["crop_mode"] == "center" and training.crop_size == 64
    assert AutoImageProcessor.from_pretrained(tmp_path / "release").crop_size is None


def test_the_pretraining_collator_stacks_full_size_samples_of_several_sizes(terramind_dir: Path) -> None:
    from modeling_geomeld.training.pretraining import PretrainingCollator

    s2 = _tile(terramind_dir)["sentinel2_l2a"].astype(np.float32)
    sample = lambda n: {"arrays": {"sentinel2_l2a": s2[:, :n, :n]}, "bands": S2_NAMES}  # noqa: E731
    proc = GeoMeldImageProcessor(input_modalities={"sentinel2": []})
    batch = PretrainingCollator(proc, use_captions=False, with_targets=False)([sample(120), sample(96)])
    assert batch["pixel_values"]["sentinel2"].shape == (2, 12, 128, 128)
    assert batch["valid_region"].tolist() == [[0, 0, 120, 120], [0, 0, 96, 96]]
    v = batch["valid_mask"]["sentinel2"]
    assert v[0, :120, :120].all() and not v[0, 120:].any() and v[1, :96, :96].all() and not v[1, 96:].any()
    with pytest.raises(ValueError, match="different valid regions"):
        proc.crop_to_valid(batch["pixel_values"]["sentinel2"], batch)


# -- slope derived from elevation: Horn's method, as GDAL computes it ------------------------------------


def _gdaldem_slope(src: Path, dst: Path) -> np.ndarray:
    """`gdaldem slope -compute_edges -alg Horn` through the GDAL library that the rasterio wheel ships."""
    import ctypes
    import glob
    import os

    import rasterio

    libs = glob.glob(os.path.join(os.path.dirname(rasterio.__file__), os.pardir, "rasterio.libs", "libgdal*.so*"))
    if not libs:
        pytest.skip("rasterio's bundled libgdal not found (a rasterio built against a system GDAL)")
    gdal = ctypes.CDLL(libs[0])
    gdal.GDALOpenEx.restype = ctypes.c_void_p
    gdal.GDALOpenEx.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    gdal.GDALDEMProcessingOptionsNew.restype = ctypes.c_void_p
    gdal.GDALDEMProcessingOptionsNew.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p]
    gdal.GDALDEMProcessing.restype = ctypes.c_void_p
    gdal.GDALDEMProcessing.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                       ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]  # fmt: skip
    gdal.GDALClose.argtypes = [ctypes.c_void_p]
    gdal.GDALDEMProcessingOptionsFree.argtypes = [ctypes.c_void_p]
    gdal.GDALAllRegister()
    args = [b"-compute_edges", b"-alg", b"Horn", b"-of", b"GTiff"]
    options = gdal.GDALDEMProcessingOptionsNew((ctypes.c_char_p * (len(args) + 1))(*args, None), None)
    source = gdal.GDALOpenEx(str(src).encode(), 0, None, None, None)
    failed = ctypes.c_int(0)
    result = gdal.GDALDEMProcessing(str(dst).encode(), source, b"slope", None, options, ctypes.byref(failed))
    assert result and not failed.value, f"GDALDEMProcessing failed on {src}"
    gdal.GDALClose(result)
    gdal.GDALClose(source)
    gdal.GDALDEMProcessingOptionsFree(options)
    with rasterio.open(dst) as ds:
        slope = ds.read(1)
        return np.where(slope == ds.nodata, np.nan, slope) if ds.nodata is not None else slope


CORNERS = (np.array([0, 0, -1, -1]), np.array([0, -1, 0, -1]))


def test_slope_matches_gdaldem_on_real_dems(terramind_dir: Path, tmp_path: Path) -> None:
    import rasterio

    from modeling_geomeld.modalities import slope_degrees

    for tile in (TILE, "282D_485L_3_3"):
        src = terramind_dir / "DEM" / f"{tile}.tif"
        with rasterio.open(src) as ds:
            elevation, (xres, yres) = ds.read(1), ds.res
            profile = ds.profile
        assert xres == yres == 10.0
        ours, gdal = slope_degrees(elevation, 10.0), _gdaldem_slope(src, tmp_path / f"{tile}.tif")
        off_corner = np.ones(ours.shape, bool)
        off_corner[CORNERS] = False
        np.testing.assert_allclose(ours[off_corner], gdal[off_corner], atol=1e-3)  # edges included
        assert gdal.max() > 10  # real relief, not a flat test
    # no-data holes (NaN in a float DEM): GDAL's rule too, a missing neighbour counts as the centre value
    holed = elevation.astype(np.float32)
    holed[40:50, 60:75] = np.nan
    holed[100, 100] = np.nan
    with rasterio.open(tmp_path / "holed.tif", "w", **{**profile, "dtype": "float32", "nodata": float("nan")}) as ds:
        ds.write(holed, 1)
    ours, gdal = slope_degrees(holed, 10.0), _gdaldem_slope(tmp_path / "holed.tif", tmp_path / "holed_slope.tif")
    assert np.array_equal(np.isnan(ours), np.isnan(holed)) and np.array_equal(np.isnan(gdal), np.isnan(holed))
    off_corner = np.isfinite(holed)
    off_corner[CORNERS] = False
    np.testing.assert_allclose(ours[off_corner], gdal[off_corner], atol=1e-3)


def test_slope_is_exact_on_a_plane_and_a_cone() -> None:
    from modeling_geomeld.modalities import slope_degrees

    yy, xx = np.mgrid[:40, :50].astype(np.float64) * 30.0  # metres on a 30 m grid
    plane = 0.3 * xx - 0.4 * yy + 500.0  # gradient 0.5: 26.565 degrees everywhere, corners and edges too
    np.testing.assert_allclose(slope_degrees(plane, 30.0), np.degrees(np.arctan(0.5)), atol=1e-4)
    cone = -0.2 * np.hypot(xx - 600.0, yy - 600.0)  # 11.31 degrees away from the apex and its neighbours
    away = np.hypot(xx - 600.0, yy - 600.0) > 100.0
    np.testing.assert_allclose(slope_degrees(cone, 30.0)[away], np.degrees(np.arctan(0.2)), atol=0.6)
    with pytest.raises(ValueError, match="pixel_size_m must be a positive number of metres, got 0"):
        slope_degrees(plane, 0)


def test_a_dem_with_elevation_only_gets_the_builders_slope(terramind_dir: Path) -> None:
    from dataset_scripts.align import align
    from dataset_scripts.terramind import s2_datetime
    from dataset_scripts.types import AnchorRequest, LayerRef

    request = AnchorRequest(TILE, [
        LayerRef("sentinel2_l2a", str(terramind_dir / "S2L2A" / f"{TILE}.tif"), datetime=s2_datetime(terramind_dir, TILE)),
        LayerRef("dem", str(terramind_dir / "DEM" / f"{TILE}.tif"), bands=("elevation",)),
    ])  # fmt: skip
    built = align(request)  # the real builder, which derives slope on its grid
    assert built.bands["dem"] == ("elevation", "slope")
    elevation, slope = built.arrays["dem"]
    proc = GeoMeldImageProcessor(input_modalities={"dem": ["elevation", "slope"]}, target_modalities={"dem": []})
    named = proc({"dem": elevation[None]}, band_names={"dem": ["elevation"]}, targets={"dem": elevation[None]},
                 target_band_names={"dem": ["elevation"]})  # fmt: skip
    unnamed = proc({"dem": elevation[None]})  # one band: the elevation
    for out in (named, unnamed):
        derived = _denormalise(proc, "dem", out["pixel_values"]["dem"][0])[1]
        np.testing.assert_allclose(derived, slope, atol=1e-3)
        assert out["transforms"][0] == {"op": "derive", "role": "input", "modality": "dem", "band": "slope",
                                        "from": "elevation", "method": "horn", "pixel_size_m": 10.0}  # fmt: skip
    dem_mean, dem_std = get_modality("dem").band_stats(["slope"], "default")
    target_slope = named["targets"]["dem"][0, 1].numpy() * dem_std[0] + dem_mean[0]
    np.testing.assert_allclose(target_slope, slope, atol=1e-3)
    # the grid's own pixel size: a 30 m DEM has a third of the gradient of the same numbers at 10 m
    coarse = proc({"dem": elevation[None]}, pixel_size_m=30.0)
    assert coarse["transforms"][0]["pixel_size_m"] == 30.0
    from modeling_geomeld.modalities import slope_degrees

    np.testing.assert_allclose(_denormalise(proc, "dem", coarse["pixel_values"]["dem"][0])[1], slope_degrees(elevation, 30.0), atol=1e-3)


def test_band_errors_name_what_was_expected_and_found_and_point_to_the_fix() -> None:
    proc = GeoMeldImageProcessor(input_modalities={"dem": ["elevation", "slope"], "sentinel1": ["VV", "VH"]})
    dem = np.full((1, 32, 32), 120.0, np.float32)
    with pytest.raises(ValueError, match=r"dem: expected bands \['elevation', 'slope'\], found \['height'\]; "
                                         r"'slope' is derived from 'elevation' when absent, but 'elevation' "
                                         r"is missing too"):  # fmt: skip
        proc({"dem": dem}, band_names={"dem": ["height"]})
    with pytest.raises(ValueError, match=r"sentinel1 input lacks bands \['VH'\]; expected \['VV', 'VH'\], received \['VV', 'HH'\]"):
        proc({"sentinel1": np.zeros((2, 32, 32), np.float32)}, band_names={"sentinel1": ["VV", "HH"]})
    with pytest.raises(ValueError, match=r"dem: expected 2 bands \['elevation', 'slope'\] .* got 3"):
        proc({"dem": np.zeros((3, 32, 32), np.float32)})
    with pytest.raises(ValueError, match="pixel_size_m must be a positive number of metres, got -10"):
        proc({"dem": dem}, pixel_size_m=-10)


def test_every_model_forward_takes_the_processors_report_fields() -> None:
    """`model(**processor(...))` works for every head: the batch's report fields (`REPORT_FIELDS`) are accepted
    and ignored by each forward, so a field added to the report without its forward argument fails here."""
    import inspect

    from modeling_geomeld import (
        GeoMeldForImageClassification,
        GeoMeldForPreTraining,
        GeoMeldForSemanticSegmentation,
        GeoMeldModel,
        GeoMeldVisionModel,
    )
    from modeling_geomeld.image_processing_geomeld import REPORT_FIELDS

    for cls in (GeoMeldVisionModel, GeoMeldModel, GeoMeldForPreTraining, GeoMeldForImageClassification, GeoMeldForSemanticSegmentation):
        missing = set(REPORT_FIELDS) - set(inspect.signature(cls.forward).parameters)
        assert not missing, f"{cls.__name__}.forward lacks {sorted(missing)}"
