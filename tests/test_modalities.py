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
    assert set(MODALITIES) == {"sentinel2", "sentinel1", "dem", "canopy_height", "esa_worldcover", "dynamic_world", "jrc_water", "naip"}
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
