"""The modality registry: band semantics as data, reordering by name, class code mappings."""

from __future__ import annotations

import numpy as np
import pytest

from modeling_geomeld.modalities import (
    MODALITIES,
    SENTINEL2_BANDS,
    SENTINEL2_RELEASE_ORDER,
    get_modality,
    parse_class_map,
    reorder_bands,
    resolve,
)


def test_every_modality_is_described() -> None:
    assert set(MODALITIES) >= {
        "sentinel2", "sentinel1", "dem", "canopy_height", "esa_worldcover", "dynamic_world", "jrc_water", "naip",
        "landsat8", "aerial", "label",
    }  # fmt: skip
    for mod in MODALITIES.values():
        assert mod.bands and set(mod.default_bands) <= set(mod.band_names)
        assert mod.gsd > 0 and mod.dtype and mod.license and mod.source
        if mod.is_categorical:
            assert [c.index for c in mod.classes] == list(range(mod.num_classes))
            assert all(c.color.startswith("#") and len(c.color) == 7 for c in mod.classes)
        else:
            for variant in mod.variants:
                mean, std = mod.band_stats(mod.default_bands, variant)
                assert mean.shape == std.shape == (len(mod.default_bands),) and (std > 0).all()


def test_sentinel2_optical_metadata_and_product_statistics() -> None:
    s2 = get_modality("sentinel2")
    assert SENTINEL2_BANDS == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    assert s2.band("B08").wavelength_nm == pytest.approx(832.8) and s2.band("B8A").wavelength_nm == pytest.approx(864.7)
    assert s2.band("B02").gsd == 10 and s2.band("B05").gsd == 20 and s2.band("B01").gsd == 60
    assert all(b.bandwidth_nm for b in s2.bands)
    l1c, _ = s2.band_stats(SENTINEL2_BANDS, "l1c")
    l2a, _ = s2.band_stats(SENTINEL2_BANDS, "l2a")
    assert not np.allclose(l1c, l2a)  # L1C and L2A are normalised apart
    assert resolve("sentinel2_l1c") == (s2, "l1c") and resolve("sentinel2_l2a") == (s2, "l2a")
    with pytest.raises(KeyError, match="unknown modality 'sentinel3'"):
        resolve("sentinel3")


def test_sentinel1_orbit_is_never_invented() -> None:
    s1 = get_modality("sentinel1")
    assert s1.default_bands == ("VV", "VH")
    assert s1.band("VV").orbit is None and s1.band("VV").polarisation == "VV"
    assert s1.band("VH_asc").orbit == "ascending" and s1.band("HV_des").orbit == "descending"


def test_reorder_is_by_name_never_by_position() -> None:
    # the release stores B8A before B8: reordering by name must swap them back
    stack = np.stack([np.full((2, 2), i, dtype=np.float32) for i in range(12)])
    out = reorder_bands(stack, SENTINEL2_RELEASE_ORDER, SENTINEL2_BANDS, modality="sentinel2")
    assert out[SENTINEL2_BANDS.index("B08"), 0, 0] == SENTINEL2_RELEASE_ORDER.index("B08")
    assert out[SENTINEL2_BANDS.index("B8A"), 0, 0] == SENTINEL2_RELEASE_ORDER.index("B8A")
    with pytest.raises(ValueError, match=r"lacks bands \['B12'\]"):
        reorder_bands(stack[:11], SENTINEL2_RELEASE_ORDER[:11], SENTINEL2_BANDS, modality="sentinel2")
    with pytest.raises(ValueError, match="12 bands on axis 0 but 11 band names"):
        reorder_bands(stack, SENTINEL2_RELEASE_ORDER[:11], SENTINEL2_BANDS[:3])


def test_worldcover_and_dynamic_world_codes() -> None:
    wc = get_modality("esa_worldcover")
    assert wc.code_to_index() == {10: 0, 20: 1, 30: 2, 40: 3, 50: 4, 60: 5, 70: 6, 80: 7, 90: 8, 95: 9, 100: 10}
    got = wc.codes_to_indices(np.array([[10, 100], [0, 55]], dtype=np.uint8))
    assert got.tolist() == [[0, 10], [-1, -1]]  # no-data and unknown codes are ignored
    dw = get_modality("dynamic_world")
    assert dw.codes_to_indices(np.array([0, 1, 9])).tolist() == [-1, 0, 8]
    assert dw.class_by_name("Snow and Ice").code == 9


def test_class_map_parsing() -> None:
    dw = get_modality("dynamic_world")
    assert parse_class_map("1:water, 2:trees,8:nodata", dw) == {1: 1, 2: 2, 8: 0}
    with pytest.raises(ValueError, match="not of the form SRC:DST"):
        parse_class_map("1-water", dw)
    with pytest.raises(KeyError, match="no class 'forest'"):
        parse_class_map("2:forest", dw)
    with pytest.raises(ValueError, match="categorical"):
        parse_class_map("1:water", get_modality("dem"))


def test_landsat8_oli_bands_units_and_statistics() -> None:
    l8 = get_modality("landsat8")
    assert l8.band_names == ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9")
    assert l8.default_bands == ("B1", "B2", "B3", "B4", "B5", "B6", "B7")  # cirrus (no Level-2 SR) is opt-in
    assert all(b.gsd == 30 and b.bandwidth_nm for b in l8.bands) and l8.gsd == 30
    # USGS OLI band designations (micrometres): each centre lies inside its band's published interval
    usgs = {"B1": (0.43, 0.45), "B2": (0.45, 0.51), "B3": (0.53, 0.59), "B4": (0.64, 0.67), "B5": (0.85, 0.88),
            "B6": (1.57, 1.65), "B7": (2.11, 2.29), "B9": (1.36, 1.38)}  # fmt: skip
    for name, (lo, hi) in usgs.items():
        assert lo * 1000 <= l8.band(name).wavelength_nm <= hi * 1000, name
    assert "2.75e-5" in l8.band("B4").unit and "- 0.2" in l8.band("B4").unit  # Collection-2 L2 SR scaling
    assert l8.dtype == "uint16" and l8.nodata == 0 and "public domain" in l8.license.lower()
    mean, std = l8.band_stats(l8.default_bands)
    # the statistics are for DN as distributed: reflectance = DN * 2.75e-5 - 0.2 gives plausible land means
    reflectance = mean * 2.75e-5 - 0.2
    assert ((reflectance > 0.0) & (reflectance < 0.4)).all() and (std > 1000).all()
    assert l8.band("B5").valid_range == (1.0, 65535.0)  # 0 is the fill value


def test_aerial_and_label_layers() -> None:
    aerial = get_modality("aerial")
    assert aerial.band_names == ("R", "G", "B", "NIR") and aerial.default_bands == ("R", "G", "B")
    assert all(b.unit == "DN" and b.gsd <= 1.0 for b in aerial.bands) and aerial.gsd <= 1.0
    assert "0.1-1 m" in aerial.source  # the GSD is the product's own: the declaration says so
    label = get_modality("label")
    assert label.is_categorical and label.band_names == ("class",) and label.classes == ()
    assert label.nodata == 255  # code 0 may be a class
    assert label.codes_to_indices(np.array([0, 3, 255])).tolist() == [-1, -1, -1]  # no classes declared
    # a task's label raster keeps its own codes: integer targets, no-data refused
    assert parse_class_map("0:0,1:1,9:nodata", label) == {0: 0, 1: 1, 9: 255}
    with pytest.raises(ValueError, match="differ from label's no-data 255"):
        parse_class_map("1:255", label)


def test_geobench_presets_resolve_against_the_registry() -> None:
    from dataset_scripts.geobench import BAND_PARSERS, PRESETS

    assert {m for p in PRESETS.values() for m in p.modalities} <= set(MODALITIES)
    for preset in PRESETS.values():  # the Landsat-8 and aerial tasks (m-so2sat's SAR names are geobench.py's)
        for modality, bands in preset.modalities.items():
            if modality not in ("landsat8", "aerial"):
                continue
            unknown = [b for b in bands if b not in get_modality(modality).band_names]
            assert not unknown, (preset.name, modality, unknown)
    assert PRESETS["m-forestnet"].modalities["landsat8"] == ("B4", "B3", "B2", "B5", "B6", "B7")
    assert BAND_PARSERS["landsat8"]("05 - NIR") == "B5" and BAND_PARSERS["aerial"]("Red") == "R"
    assert [b for b in ("R", "G", "B") if b in get_modality("aerial").band_names] == ["R", "G", "B"]


def test_processor_masks_values_outside_a_declared_valid_range() -> None:
    from modeling_geomeld.image_processing_geomeld import GeoMeldImageProcessor

    proc = GeoMeldImageProcessor(input_modalities={"landsat8": ["B4", "B5"]}, crop_size=None)
    dn = np.full((2, 16, 16), 12000, dtype=np.uint16)
    dn[:, 0, :4] = 0  # Collection-2 fill
    batch = proc({"landsat8": dn}, band_names={"landsat8": ["B4", "B5"]})
    assert int(batch["invalid_pixels"]["landsat8"][0]) == 4
    assert not batch["valid_mask"]["landsat8"][0, 0, :4].any() and batch["valid_mask"]["landsat8"][0, 1].all()
    mean, std = get_modality("landsat8").band_stats(["B4"])
    assert float(batch["pixel_values"]["landsat8"][0, 0, 5, 5]) == pytest.approx((12000 - mean[0]) / std[0], rel=1e-5)
