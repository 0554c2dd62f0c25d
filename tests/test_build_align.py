"""The alignment protocol on the real TerraMind samples and the WorldCover crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from _build_helpers import LULC_TO_DYNAMIC_WORLD, README_LATLON, TERRAMIND_IDS, s2_datetime
from rasterio.transform import Affine

from dataset_scripts.align import AlignConfig, align, anchor_grid, parse_datetime, slope_degrees, utm_crs
from dataset_scripts.types import AnchorRequest, LayerRef, QuarantineError
from modeling_geomeld.modalities import (
    DYNAMIC_WORLD,
    ESA_WORLDCOVER,
    SENTINEL2_ALL_BANDS,
    SENTINEL2_BANDS,
    parse_class_map,
)

CLASS_MAP = parse_class_map(LULC_TO_DYNAMIC_WORLD, DYNAMIC_WORLD)


def _request(
    terramind: Path, tile: str, *, s2_path: Path | None = None, product: str = "l2a"
) -> AnchorRequest:
    folder = "S2L2A" if product == "l2a" else "S2L1C"
    props = {} if product == "l2a" else {"cloud_cover": "1.0"}
    return AnchorRequest(
        tile,
        [
            LayerRef(f"sentinel2_{product}", str(s2_path or terramind / folder / f"{tile}.tif"),
                     datetime=s2_datetime(terramind, tile), properties=props),
            LayerRef("sentinel1", str(terramind / "S1RTC" / f"{tile}.tif"), bands=("VV", "VH")),
            LayerRef("dem", str(terramind / "DEM" / f"{tile}.tif"), bands=("elevation",)),
            LayerRef("dynamic_world", str(terramind / "LULC" / f"{tile}.tif"), class_map=CLASS_MAP),
        ],
    )  # fmt: skip


def test_every_location_aligns_onto_a_128px_utm_grid_near_the_readme_coordinates(terramind_dir: Path) -> None:
    for tile in TERRAMIND_IDS:
        sample = align(_request(terramind_dir, tile))
        shapes = {name: a.shape for name, a in sample.arrays.items()}
        assert shapes == {"sentinel2": (12, 128, 128), "sentinel1": (2, 128, 128), "dem": (2, 128, 128),
                          "dynamic_world": (1, 128, 128)}  # fmt: skip
        assert sample.bands["sentinel2"] == SENTINEL2_BANDS
        assert sample.bands["sentinel1"] == ("VV", "VH")  # polarisations only: no orbit invented
        assert sample.bands["dem"] == ("elevation", "slope")
        assert (
            sample.arrays["dynamic_world"].dtype == np.uint8
            and sample.arrays["sentinel2"].dtype == np.float32
        )
        lat, lon = README_LATLON[tile]
        assert abs(sample.metadata["lat"] - lat) < 0.05 and abs(sample.metadata["lon"] - lon) < 0.05, tile
        assert sample.metadata["crs"] == utm_crs(lat, lon).to_string()
        assert sample.metadata["absent"] == ["canopy_height", "esa_worldcover", "jrc_water", "naip", "landsat8", "aerial", "label"]
        assert "canopy_height" not in sample.arrays  # absent, never zero-filled
        left, bottom, right, top = sample.metadata["bounds"]
        assert right - left == pytest.approx(1280) and top - bottom == pytest.approx(1280)
        assert (
            abs(sample.metadata["s1_offset_days"]) <= 15 and sample.metadata["dynamic_world_offset_days"] == 0
        )


def test_sentinel2_in_the_grid_crs_is_copied_not_resampled(terramind_dir: Path) -> None:
    tile = "637U_59R_1_3"
    sample = align(_request(terramind_dir, tile))
    with rasterio.open(terramind_dir / "S2L2A" / f"{tile}.tif") as ds:
        raw = ds.read().astype(np.float32)
        col = round((sample.metadata["bounds"][0] - ds.transform.c) / 10)
        row = round((ds.transform.f - sample.metadata["bounds"][3]) / 10)
    np.testing.assert_array_equal(sample.arrays["sentinel2"], raw[:, row : row + 128, col : col + 128])


def _edge_shift(signal: np.ndarray, land: np.ndarray) -> int:
    """Horizontal shift (pixels) of ``signal`` that best correlates with the land mask."""

    def corr(dx: int) -> float:
        a, b = np.roll(signal, dx, axis=1)[6:-6, 6:-6], land[6:-6, 6:-6].astype(float)
        ok = np.isfinite(a)
        return float(np.corrcoef(a[ok], b[ok])[0, 1])

    return max(range(-6, 7), key=corr)


@pytest.mark.parametrize("gsd", [10.0, 15.0])
def test_the_brazil_coastline_lands_on_the_same_pixels_in_every_layer(
    terramind_dir: Path, gsd: float
) -> None:
    # The coast runs SW-NE with forest (Dynamic World trees/grass) west of it: a horizontal shift moves it.
    # At 15 m every layer is resampled (bilinear S2/S1/DEM, mode for the class map).
    sample = align(_request(terramind_dir, "282D_485L_3_3"), AlignConfig(gsd=gsd, size_px=int(1280 / gsd)))
    land = np.isin(sample.arrays["dynamic_world"][0], [2, 3])
    assert 0.3 < land.mean() < 0.6
    s2, names = sample.arrays["sentinel2"], list(sample.bands["sentinel2"])
    red, nir = s2[names.index("B04")], s2[names.index("B08")]
    ndvi = (nir - red) / (nir + red)
    assert abs(_edge_shift(ndvi, land)) <= 1
    assert abs(_edge_shift(sample.arrays["sentinel1"][1], land)) <= 2  # VH; RTC geolocation ~1-2 px
    assert abs(_edge_shift(sample.arrays["dem"][0], land)) <= 1
    # an NDVI-based land mask and the class map agree on almost every pixel
    assert ((ndvi > 0.5) == land).mean() > 0.95


def test_a_misregistered_file_is_detected_by_the_same_measure(terramind_dir: Path, tmp_path: Path) -> None:
    tile = "282D_485L_3_3"
    shifted = tmp_path / "s2_shifted.tif"
    with rasterio.open(terramind_dir / "S2L2A" / f"{tile}.tif") as src:
        profile = {**src.profile, "transform": src.transform @ Affine.translation(5, 0)}  # 50 m east
        with rasterio.open(shifted, "w", **profile) as dst:
            dst.write(src.read())
    sample = align(_request(terramind_dir, tile, s2_path=shifted))
    s2, names = sample.arrays["sentinel2"], list(sample.bands["sentinel2"])
    ndvi = (s2[names.index("B08")] - s2[names.index("B04")]) / (
        s2[names.index("B08")] + s2[names.index("B04")]
    )
    land = np.isin(sample.arrays["dynamic_world"][0], [2, 3])
    assert _edge_shift(ndvi, land) in (-6, -5, -4)


def test_l1c_drops_b10_by_name_and_detects_its_offset(terramind_dir: Path) -> None:
    sample = align(_request(terramind_dir, "282D_485L_3_3", product="l1c"))
    assert sample.bands["sentinel2"] == SENTINEL2_BANDS and "B10" not in sample.bands["sentinel2"]
    assert sample.metadata["s2_product"] == "l1c"
    # no offset in the metadata: the median B10 >= 1000 reveals baseline >= 04.00, and the offset is removed
    assert (sample.metadata["s2_offset_removed"], sample.metadata["s2_offset_source"]) == (
        1000.0,
        "b10_level",
    )
    assert sample.metadata["s2_radiometric_offset"] == 0.0  # what is left in the stored values
    assert sample.metadata["cloud_cover_source"] == "metadata" and sample.metadata["cloud_cover"] == 1.0


def test_l1c_cloud_estimate_uses_s2cloudless(terramind_dir: Path) -> None:
    pytest.importorskip("s2cloudless")
    request = _request(terramind_dir, "637U_59R_1_3", product="l1c")
    request.layers[0] = LayerRef("sentinel2_l1c", request.layers[0].path, datetime=request.layers[0].datetime)
    sample = align(request)
    assert sample.metadata["cloud_cover_source"] == "s2cloudless"
    assert 0.0 <= sample.metadata["cloud_fraction"] < 0.1


def test_class_map_codes_and_slope_on_the_final_grid(terramind_dir: Path) -> None:
    tile = "282D_485L_3_3"
    sample = align(_request(terramind_dir, tile))
    with rasterio.open(terramind_dir / "LULC" / f"{tile}.tif") as ds:
        raw = ds.read(1)
    codes = set(np.unique(sample.arrays["dynamic_world"]).tolist())
    assert codes <= {c.code for c in DYNAMIC_WORLD.classes} | {0}
    water_raw = (raw == 1).mean()
    assert (
        abs(
            (sample.arrays["dynamic_world"][0] == DYNAMIC_WORLD.class_by_name("water").code).mean()
            - water_raw
        )
        < 0.15
    )
    elevation, slope = sample.arrays["dem"]
    np.testing.assert_allclose(slope, slope_degrees(elevation, 10.0))
    assert np.nanmin(slope) >= 0 and np.nanmax(slope) < 60


def test_worldcover_from_geographic_coordinates_onto_utm(worldcover_dir: Path) -> None:
    path = next(worldcover_dir.glob("*.tif"))
    with rasterio.open(path) as ds:
        raw = ds.read(1)
        centre_lon, centre_lat = (
            (ds.bounds.left + ds.bounds.right) / 2,
            (ds.bounds.bottom + ds.bounds.top) / 2,
        )
    sample = align(
        AnchorRequest("stp", [LayerRef("esa_worldcover", str(path))], lat=centre_lat, lon=centre_lon)
    )
    assert sample.metadata["crs"] == "EPSG:32632"
    out = sample.arrays["esa_worldcover"]
    assert out.shape == (1, 128, 128) and out.dtype == np.uint8
    assert set(np.unique(out).tolist()) <= {10, 20, 30, 40, 50, 60, 80, 90, 95}
    indices = ESA_WORLDCOVER.codes_to_indices(out)
    assert indices.min() >= 0 and indices.max() <= 10
    # the footprint's class mix resembles the same area cut from the source raster
    rows = slice(512 - 70, 512 + 70)
    src = np.bincount(raw[rows, rows].ravel(), minlength=101)[[10, 20, 30, 40, 50, 60, 80, 90, 95]]
    dst = np.bincount(out.ravel(), minlength=101)[[10, 20, 30, 40, 50, 60, 80, 90, 95]]
    assert np.abs(src / src.sum() - dst / dst.sum()).max() < 0.1


def test_grid_helpers() -> None:
    assert utm_crs(57.2, 9.8).to_epsg() == 32632 and utm_crs(-25.3, -48.1).to_epsg() == 32722
    grid = anchor_grid(57.2, 9.8, AlignConfig(size_px=16))
    assert (grid.width, grid.height) == (16, 16) and grid.transform.c % 10 == 0
    assert grid.with_gsd(1.0).width == 160
    assert parse_datetime("2021-07-23T13:22:41.000000000").isoformat() == "2021-07-23T13:22:41+00:00"
    assert parse_datetime("2020:01:02 03:04:05").day == 2
    with pytest.raises(ValueError, match="expected an ISO 8601"):
        parse_datetime("yesterday")
    with pytest.raises(ValueError, match="size_px must be at least 8"):
        AlignConfig(size_px=2)


def test_temporal_rule_rejects_sentinel1_outside_the_window(terramind_dir: Path) -> None:
    request = _request(terramind_dir, "637U_59R_1_3")
    s1 = request.layers[1]
    request.layers[1] = LayerRef(s1.modality, s1.path, bands=s1.bands, datetime="2017-12-30T05:32:30Z")
    with pytest.raises(QuarantineError, match="expected sentinel1 within 15 days") as err:
        align(request)
    assert err.value.reason == "date_outside_window"
    sample = align(request, AlignConfig(max_offset_days=90))
    assert sample.metadata["s1_offset_days"] == pytest.approx(60.78, abs=0.01)


def test_naip_gets_the_same_footprint_at_1m(terramind_dir: Path, tmp_path: Path) -> None:
    tile = "637U_59R_1_3"
    with rasterio.open(terramind_dir / "S2L2A" / f"{tile}.tif") as ds:
        left, top = ds.transform.c + 80 * 10, ds.transform.f - 80 * 10  # on the S2 lattice, inside the tile
    y, x = np.mgrid[0:640, 0:640]
    naip = np.stack([(x + 2 * y) % 4000, (3 * x) % 4000, y % 4000]).astype(np.uint16) + 1
    path = tmp_path / "naip.tif"
    profile = {"driver": "GTiff", "width": 640, "height": 640, "count": 3, "dtype": "uint16", "nodata": 0,
               "crs": "EPSG:32632", "transform": Affine(1.0, 0, left, 0, -1.0, top)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(naip)
    request = _request(terramind_dir, tile)
    request.layers.append(LayerRef("naip", str(path), bands=("R", "G", "B")))
    request.lat, request.lon = None, None
    sample = align(request, AlignConfig(size_px=32))
    out = sample.arrays["naip"]
    assert out.shape == (3, 320, 320) and out.dtype == np.uint16 and sample.bands["naip"] == ("R", "G", "B")
    assert sample.arrays["sentinel2"].shape == (12, 32, 32)
    col = round(sample.metadata["bounds"][0] - left)
    row = round(top - sample.metadata["bounds"][3])
    np.testing.assert_array_equal(out, naip[:, row : row + 320, col : col + 320])


def test_class_map_source_code_zero_is_a_class_and_unmapped_codes_become_nodata(tmp_path: Path) -> None:
    codes = np.zeros((1, 40, 40), dtype=np.uint8)
    codes[0, :, 20:] = 5  # not in the map
    path = tmp_path / "lc.tif"
    profile = {"driver": "GTiff", "width": 40, "height": 40, "count": 1, "dtype": "uint8",
               "crs": "EPSG:32632", "transform": Affine(10.0, 0, 550000.0, 0, -10.0, 6343000.0)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(codes)
    layer = LayerRef("dynamic_world", str(path), class_map=parse_class_map("0:water,1:trees", DYNAMIC_WORLD))
    sample = align(AnchorRequest("lc", [layer]), AlignConfig(size_px=16))
    out = sample.arrays["dynamic_world"][0]
    water = DYNAMIC_WORLD.class_by_name("water").code
    assert set(np.unique(out).tolist()) == {water, DYNAMIC_WORLD.nodata}
    assert (out == water).mean() == pytest.approx(0.5, abs=0.07)


def test_band_subsets_one_file_per_band_and_unusable_band_sets(terramind_dir: Path, tmp_path: Path) -> None:
    tile = "637U_59R_1_3"
    with rasterio.open(terramind_dir / "S2L2A" / f"{tile}.tif") as src:
        profile, data = {**src.profile, "count": 1}, src.read()
    layers = []
    for name in ("B08", "B04"):  # one file per band, given in non-canonical order
        path = tmp_path / f"{name}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data[list(SENTINEL2_BANDS).index(name)][None])
        layers.append(LayerRef("sentinel2_l2a", str(path), bands=(name,)))
    sample = align(AnchorRequest("rn", layers))
    assert sample.bands["sentinel2"] == ("B04", "B08")  # registry order, by name
    assert sample.metadata["cloud_cover"] is None and sample.metadata["cloud_cover_source"] == "unavailable"
    only_b10 = [LayerRef("sentinel2_l1c", layers[0].path, bands=("B10",))]
    with pytest.raises(QuarantineError, match="expected at least one stored sentinel2 band") as err:
        align(AnchorRequest("b10", only_b10))
    assert err.value.reason == "band_count_mismatch"


# -- Sentinel-2 radiometric harmonisation (baseline >= 04.00 carries +1000 DN) -------------------------------
_HARMONISE_TILE = "282D_485L_3_3"  # a real TerraMesh L1C sample whose pixels carry the +1000 offset


def _baseline_pair(terramind: Path, tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """The real L1C sample as a 2025 product (+1000 in the pixels) and the same surface as a 2019 product
    of baseline 02.12 (offset-free DN, as such products were written), plus the offset-free truth."""
    src_path = terramind / "S2L1C" / f"{_HARMONISE_TILE}.tif"
    with rasterio.open(src_path) as src:
        raw, profile = src.read(), src.profile
    assert float(np.median(raw[10])) >= 1000 and raw.min() > 1000  # the sample really carries the offset
    old = tmp_path / "s2_2019_baseline_02.12.tif"
    with rasterio.open(old, "w", **profile) as dst:
        dst.write((raw - 1000).astype(profile["dtype"]))
    return src_path, old, (raw - 1000).astype(np.float32)


def _s2_only(path: Path, when: str, props: dict) -> AnchorRequest:
    return AnchorRequest(
        _HARMONISE_TILE,
        [LayerRef("sentinel2_l1c", str(path), datetime=when, properties={"cloud_cover": "1.0", **props})],
    )


NEW_BASELINE_METADATA = {
    "stac raster:bands": {"s2:processing_baseline": "05.11", "raster:offset": -0.1, "raster:scale": 0.0001},
    "earth search flag": {"earthsearch:boa_offset_applied": True},
    "processing baseline": {"s2:processing_baseline": "05.09"},
    "manifest column": {"radiometric_offset": "1000"},
    "product metadata": {"BOA_ADD_OFFSET": "-1000"},
}


@pytest.mark.parametrize("where", sorted(NEW_BASELINE_METADATA))
def test_the_same_surface_from_2019_and_2025_gives_the_same_harmonised_pixels(
    terramind_dir: Path, tmp_path: Path, where: str
) -> None:
    new, old, truth = _baseline_pair(terramind_dir, tmp_path)
    s2019 = align(_s2_only(old, "2019-01-01T10:00:00Z", {"s2:processing_baseline": "02.12"}))
    s2025 = align(_s2_only(new, "2025-07-31T10:00:00Z", NEW_BASELINE_METADATA[where]))
    np.testing.assert_array_equal(s2019.arrays["sentinel2"], s2025.arrays["sentinel2"])
    assert (s2019.metadata["s2_offset_removed"], s2025.metadata["s2_offset_removed"]) == (0.0, 1000.0)
    assert s2019.metadata["s2_offset_source"] == "processing_baseline"
    assert s2019.metadata["s2_processing_baseline"] == "02.12"
    assert s2025.metadata["s2_radiometric_offset"] == 0.0
    # and the stored values are the offset-free reflectance x 10000 of the file's own pixels, integral
    with rasterio.open(new) as ds:
        col = round((s2025.metadata["bounds"][0] - ds.transform.c) / 10)
        row = round((ds.transform.f - s2025.metadata["bounds"][3]) / 10)
    keep = [i for i in range(13) if i != 10]  # B10 is dropped by name
    np.testing.assert_array_equal(s2025.arrays["sentinel2"], truth[keep, row : row + 128, col : col + 128])


def test_harmonisation_happens_before_resampling(terramind_dir: Path, tmp_path: Path) -> None:
    """At 15 m both baselines are resampled; removing the offset first keeps them identical (and integral)."""
    new, old, _ = _baseline_pair(terramind_dir, tmp_path)
    config = AlignConfig(gsd=15.0, size_px=85)
    s2019 = align(_s2_only(old, "2019-01-01T10:00:00Z", {"s2:processing_baseline": "02.12"}), config)
    s2025 = align(_s2_only(new, "2025-07-31T10:00:00Z", {"s2:processing_baseline": "05.11"}), config)
    np.testing.assert_array_equal(s2019.arrays["sentinel2"], s2025.arrays["sentinel2"])
    values = s2025.arrays["sentinel2"]
    assert np.array_equal(values, np.rint(values)) and values.min() >= 1


def test_unharmonised_baselines_would_differ_by_the_offset(terramind_dir: Path, tmp_path: Path) -> None:
    """The check above can fail: with the 2025 offset left unsaid (an explicit 0), the pixels differ by 1000."""
    new, old, _ = _baseline_pair(terramind_dir, tmp_path)
    s2019 = align(_s2_only(old, "2019-01-01T10:00:00Z", {"s2:processing_baseline": "02.12"}))
    wrong = align(_s2_only(new, "2025-07-31T10:00:00Z", {"radiometric_offset": "0"}))
    assert np.median(wrong.arrays["sentinel2"] - s2019.arrays["sentinel2"]) == 1000.0


def test_contradicting_offsets_and_bad_values_are_quarantined(terramind_dir: Path, tmp_path: Path) -> None:
    new, _, _ = _baseline_pair(terramind_dir, tmp_path)
    with pytest.raises(QuarantineError) as err:
        align(_s2_only(new, "2025-07-31T10:00:00Z", {"s2:processing_baseline": "n/a"}))
    assert err.value.reason == "bad_metadata" and "'n/a'" in str(err.value)
    request = _s2_only(new, "2025-07-31T10:00:00Z", {"radiometric_offset": "1000"})
    request.layers.append(LayerRef("sentinel2_l1c", str(new), bands=SENTINEL2_ALL_BANDS,
                                   properties={"s2:processing_baseline": "02.12"}))  # fmt: skip
    with pytest.raises(QuarantineError, match="one radiometric offset"):
        align(request)
