"""Signals: the exact schema captioning codes against, plausible values on real samples, geomorphons."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from _build_helpers import LULC_TO_DYNAMIC_WORLD, s2_datetime

from dataset_scripts.align import align
from dataset_scripts.signals import LANDFORMS, compute_signals, geomorphons, place, season
from dataset_scripts.types import AlignedSample, AnchorRequest, LayerRef
from modeling_geomeld.modalities import DYNAMIC_WORLD, ESA_WORLDCOVER, parse_class_map

SCHEMA = {
    "spectral": {"ndvi_mean", "ndvi_p10", "ndvi_p90", "ndwi_mean", "mndwi_mean", "ndbi_mean", "ndsi_mean"},
    "water": {"detected", "percentage", "source"},
    "terrain": {"elevation_min", "elevation_mean", "elevation_max", "relief", "slope_mean", "terrain_class", "geomorphon_fractions"},
    "canopy": {"height_mean", "height_p90", "cover_fraction"},
    "sar": {"vv_mean_db", "vh_mean_db", "vv_minus_vh_db", "vv_std_db", "water_fraction"},
    "spectral_cover": {"snow", "water", "vegetation", "bare", "built", "other", "valid_fraction"},
    "place": {"country", "country_code", "region", "nearest_place", "distance_km"},
    "date": {"datetime", "month", "season", "s1_offset_days", "dynamic_world_offset_days"},
}  # fmt: skip
TOP = {*SCHEMA, "worldcover_fractions", "dynamic_world_fractions", "snow_fraction", "cloud_fraction", "notes"}


def _sample(terramind: Path, tile: str) -> AlignedSample:
    return align(
        AnchorRequest(
            tile,
            [
                LayerRef("sentinel2_l2a", str(terramind / "S2L2A" / f"{tile}.tif"), datetime=s2_datetime(terramind, tile)),
                LayerRef("sentinel1", str(terramind / "S1RTC" / f"{tile}.tif"), bands=("VV", "VH")),
                LayerRef("dem", str(terramind / "DEM" / f"{tile}.tif"), bands=("elevation",)),
                LayerRef("dynamic_world", str(terramind / "LULC" / f"{tile}.tif"),
                         class_map=parse_class_map(LULC_TO_DYNAMIC_WORLD, DYNAMIC_WORLD)),
            ],
        )
    )  # fmt: skip


@pytest.fixture(scope="module")
def signals(terramind_dir: Path) -> dict[str, dict]:
    tiles = ("282D_485L_3_3", "38D_378R_2_3", "609U_541L_3_0", "637U_59R_1_3")
    return {tile: compute_signals(_sample(terramind_dir, tile)) for tile in tiles}


def test_schema_is_exact_and_json_serialisable(signals: dict[str, dict]) -> None:
    for sig in signals.values():
        assert set(sig) == TOP
        for group, keys in SCHEMA.items():
            assert sig[group] is None or set(sig[group]) == keys, group
        assert sig["canopy"] is None and sig["worldcover_fractions"] is None  # layers absent
        assert set(sig["dynamic_world_fractions"]) == set(DYNAMIC_WORLD.class_names)
        assert set(sig["terrain"]["geomorphon_fractions"]) == set(LANDFORMS)
        assert json.loads(json.dumps(sig, allow_nan=False)) == sig


def test_values_are_plausible_per_location(signals: dict[str, dict]) -> None:
    brazil, tanzania, hudson, denmark = (
        signals[t] for t in ("282D_485L_3_3", "38D_378R_2_3", "609U_541L_3_0", "637U_59R_1_3")
    )
    for sig in signals.values():
        s = sig["spectral"]
        assert -1 <= s["ndvi_p10"] <= s["ndvi_mean"] <= s["ndvi_p90"] <= 1
        assert math.isclose(sum(sig["dynamic_world_fractions"].values()), 1.0, abs_tol=1e-3)
        assert 0 <= sig["water"]["percentage"] <= 100 and sig["water"]["source"] == "dynamic_world"
        t = sig["terrain"]
        assert t["elevation_min"] <= t["elevation_mean"] <= t["elevation_max"] and t["relief"] >= 0
        assert 0 <= t["slope_mean"] < 45 and t["terrain_class"] in LANDFORMS
        assert -30 < sig["sar"]["vh_mean_db"] < sig["sar"]["vv_mean_db"] < 5
    assert brazil["water"]["detected"] and 40 < brazil["water"]["percentage"] < 65  # sea and lagoon
    assert brazil["terrain"]["elevation_min"] <= 1 and brazil["terrain"]["terrain_class"] == "flat"
    assert brazil["date"]["season"] == "winter"  # July in the southern hemisphere
    assert tanzania["date"]["season"] is None  # tropics
    assert 1000 < tanzania["terrain"]["elevation_mean"] < 1400  # the Lake Victoria plateau
    assert (
        hudson["snow_fraction"] > 0.9
        and hudson["spectral"]["ndsi_mean"] > 0.4
        and hudson["date"]["season"] == "winter"
    )
    assert denmark["spectral"]["ndvi_mean"] > 0.5 and denmark["dynamic_world_fractions"]["crops"] > 0.8
    assert denmark["date"] == {"datetime": "2017-10-30T10:41:51Z", "month": 10, "season": "autumn",
                               "s1_offset_days": -0.215, "dynamic_world_offset_days": 0.0}  # fmt: skip
    assert [signals[t]["place"]["country_code"] for t in signals] == ["BR", "TZ", "CA", "DK"]
    assert denmark["place"]["distance_km"] < 30 and denmark["place"]["region"] == "North Denmark"


def _sample_of(
    arrays: dict[str, np.ndarray], bands: dict[str, tuple[str, ...]], **meta: object
) -> AlignedSample:
    return AlignedSample(
        "t", arrays, bands, {"lat": 45.0, "lon": 7.0, "datetime": "2021-01-15T10:00:00Z", "gsd": 10.0, **meta}
    )


def test_fallbacks_without_land_cover_layers() -> None:
    rng = np.random.default_rng(0)
    s2 = rng.uniform(500, 3000, (12, 32, 32)).astype(np.float32)
    names = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    s2[2, :, :16], s2[10, :, :16], s2[7, :, :16] = (
        800,
        100,
        300,
    )  # water on the left half: MNDWI > 0, dark NIR
    s2[2, :, 16:], s2[10, :, 16:] = 600, 2500  # land on the right half
    canopy = np.stack([np.full((32, 32), 12.0, dtype=np.float32), np.ones((32, 32), dtype=np.float32)])
    canopy[0, :8] = 1.0
    wc = np.full((1, 32, 32), 80, dtype=np.uint8)
    wc[0, :, 16:] = 10
    sig = compute_signals(
        _sample_of(
            {"sentinel2": s2, "canopy_height": canopy},
            {"sentinel2": names, "canopy_height": ("height", "std")},
        )
    )
    assert sig["water"]["source"] == "mndwi" and sig["water"]["percentage"] == pytest.approx(50, abs=1)
    assert sig["canopy"] == {"height_mean": pytest.approx(9.25), "height_p90": 12.0, "cover_fraction": 0.75}
    assert sig["terrain"] is None and sig["sar"] is None and sig["dynamic_world_fractions"] is None
    assert sig["date"]["season"] == "winter" and sig["place"]["country_code"] == "IT"
    sig = compute_signals(_sample_of({"esa_worldcover": wc}, {"esa_worldcover": ("class",)}))
    assert sig["water"] == {"detected": True, "percentage": 50.0, "source": "esa_worldcover"}
    assert sig["worldcover_fractions"]["tree cover"] == 0.5 and set(sig["worldcover_fractions"]) == set(
        ESA_WORLDCOVER.class_names
    )
    assert sig["spectral"] is None and sig["snow_fraction"] is None


@pytest.mark.parametrize(
    ("surface", "landform"),
    [
        (lambda y, x: 0 * x, "flat"),
        (lambda y, x: -np.hypot(y, x), "summit"),  # a cone: the centre is higher than all 8 directions
        (lambda y, x: np.hypot(y, x), "depression"),
        (lambda y, x: 0.3 * x, "slope"),
        (lambda y, x: -np.abs(x), "ridge"),
        (lambda y, x: np.abs(x), "valley"),
    ],
)
def test_geomorphons_of_textbook_surfaces(surface: object, landform: str) -> None:
    y, x = np.mgrid[-20:21, -20:21].astype(float) * 10.0
    forms = geomorphons(surface(y, x), gsd=10.0, search_m=100.0)
    assert LANDFORMS[forms[20, 20] - 1] == landform


def test_geomorphons_mark_missing_elevation() -> None:
    z = np.zeros((9, 9))
    z[4, 4] = np.nan
    forms = geomorphons(z, gsd=10.0, search_m=30.0)
    assert forms[4, 4] == 0 and (forms[forms > 0] == 1).all()


def test_season_by_hemisphere_and_place_lookup() -> None:
    assert [season(m, 50.0) for m in (1, 4, 7, 10)] == ["winter", "spring", "summer", "autumn"]
    assert [season(m, -50.0) for m in (1, 4, 7, 10)] == ["summer", "autumn", "winter", "spring"]
    assert season(7, 10.0) is None
    hit = place(55.6761, 12.5683)
    assert hit["country_code"] == "DK" and hit["nearest_place"] == "Copenhagen" and hit["distance_km"] < 5


def test_snow_is_not_water_without_land_cover(terramind_dir: Path) -> None:
    """Snow shares MNDWI's signature; with only Sentinel-2 the snowy Hudson Bay tile must not read as a lake."""
    sample = _sample(terramind_dir, "609U_541L_3_0")
    sample.arrays.pop("dynamic_world")
    sample.bands.pop("dynamic_world")
    sig = compute_signals(sample)
    assert sig["water"]["source"] == "mndwi"
    assert sig["water"]["percentage"] < 5.0 and sig["snow_fraction"] > 0.9


def test_spectral_cover_on_real_samples_agrees_with_the_land_cover_layer(signals: dict[str, dict]) -> None:
    """Literature thresholds on real S2 L2A against the tiles' own LULC (Dynamic World classes)."""
    hudson, denmark = signals["609U_541L_3_0"], signals["637U_59R_1_3"]
    assert (
        hudson["spectral_cover"]["snow"] > 0.95 and hudson["dynamic_world_fractions"]["snow and ice"] > 0.95
    )
    dw = denmark["dynamic_world_fractions"]
    assert denmark["spectral_cover"]["vegetation"] > 0.9 and dw["crops"] + dw["grass"] + dw["trees"] > 0.9
    for sig in signals.values():
        cover = sig["spectral_cover"]
        assert sum(
            cover[k] for k in ("snow", "water", "vegetation", "bare", "built", "other")
        ) == pytest.approx(1, abs=1e-3)
        assert cover["valid_fraction"] == 1.0 and sig["notes"] == []
        assert 0 <= sig["sar"]["water_fraction"] <= 1 and sig["sar"]["vv_std_db"] > 1.0  # speckle at least


def test_all_nan_indices_leave_the_spectral_groups_empty_with_a_note() -> None:
    names = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    s2 = np.full((12, 16, 16), np.nan, dtype=np.float32)
    sig = compute_signals(_sample_of({"sentinel2": s2}, {"sentinel2": names}))
    assert sig["spectral"] is None and sig["spectral_cover"] is None
    assert sig["water"] is None and sig["snow_fraction"] is None  # not 0 %: nothing was measured
    assert any("no pixel with finite" in n for n in sig["notes"]) and any(
        "all indices are NaN" in n for n in sig["notes"]
    )
    assert json.loads(json.dumps(sig, allow_nan=False)) == sig
