"""GeoMeldImageProcessor / GeoMeldProcessor: validation, band order by name, no-data, statistics, crops."""

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
    with pytest.raises(ValueError, match="smaller than crop_size 32"):
        processor({"sentinel1": np.zeros((2, 20, 20), np.float32)})
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
    with torch.no_grad():
        emb = model.get_image_features(**{k: v for k, v in proc({"sentinel2_l2a": s2}, band_names=names).items() if k != "invalid_pixels"})
    assert torch.isfinite(emb).all()
