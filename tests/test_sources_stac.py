"""The STAC source on a static catalog of real local COGs (tests/fixtures/make_stac_catalog.py): no network."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pystac
import pytest
import rasterio
from fixtures.make_stac_catalog import ANCHORS, EXPECTED, make_catalog, pixel_value, stored_value
from fixtures.stac_api import StacApiServer
from rasterio.warp import transform

from dataset_scripts.sources import open_source
from dataset_scripts.sources.stac import (
    PUBLIC_PROFILES,
    StacSource,
    footprint_bbox,
    read_anchor_list,
)
from dataset_scripts.types import AnchorRequest, LayerRef, QuarantineError
from modeling_geomeld.modalities import DYNAMIC_WORLD, get_modality


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_catalog(tmp_path_factory.mktemp("stac"))


@pytest.fixture(scope="module")
def requests(catalog: Path) -> dict[str, AnchorRequest]:
    source = open_source(f"stac:{catalog}", anchors=catalog.parent / "anchors.csv")
    return {r.anchor_id: r for r in source.anchors()}


def _by_modality(request: AnchorRequest) -> dict[str, list[LayerRef]]:
    out: dict[str, list[LayerRef]] = defaultdict(list)
    for ref in request.layers:
        out[ref.modality].append(ref)
    return out


def _items(refs: list[LayerRef]) -> set[str]:
    return {r.properties["stac:item"] for r in refs}


def test_s2_is_the_least_cloudy_covering_scene_under_10_percent_in_the_window(requests):
    a = _by_modality(requests["A"])["sentinel2_l2a"]
    # 0.1 % does not cover the footprint, 0.5 % is outside +-15 days, 10 % is not under 10 %
    assert _items(a) == {EXPECTED["A"]["sentinel2_l2a"]}
    assert {r.properties["eo:cloud_cover"] for r in a} == {2.0}
    assert [r.bands for r in a] == [(b,) for b in get_modality("sentinel2").default_bands]
    assert all(r.datetime.startswith("2021-06-18") for r in a)


def test_s2_without_anchor_date_searches_the_datetime_range(requests):
    b = _by_modality(requests["B"])["sentinel2_l2a"]
    # the 1 % scene is from 2016, outside 2017-2022; the scene without eo:cloud_cover loses to 9 %
    assert _items(b) == {EXPECTED["B"]["sentinel2_l2a"]}
    assert requests["B"].lat == pytest.approx(ANCHORS["B"][0])
    assert requests["B"].lon == pytest.approx(ANCHORS["B"][1])


def test_anchor_with_only_cloudy_scenes_is_quarantined_and_iteration_goes_on(catalog):
    source = StacSource(str(catalog), anchors=catalog.parent / "anchors.csv")
    ids = [r.anchor_id for r in source.anchors()]
    assert ids == ["A", "B"]
    [record] = source.quarantined
    assert (record.anchor_id, record.reason) == ("C", "no_clear_scene")
    assert "[10.0, 55.0]" in record.message


def test_strict_raises_the_first_quarantine(catalog):
    source = StacSource(str(catalog), anchors=catalog.parent / "anchors.csv", strict=True)
    with pytest.raises(QuarantineError) as err:
        list(source.anchors())
    assert err.value.reason == "no_clear_scene"


def test_cloud_threshold_is_strict_and_configurable(catalog):
    loose = StacSource(str(catalog), anchors=catalog.parent / "anchors.csv", max_cloud_cover=50.0)
    by_id = {r.anchor_id: r for r in loose.anchors()}
    assert _items(_by_modality(by_id["C"])["sentinel2_l2a"]) == {"s2-C-20210612"}  # 10 % < 50 %
    tight = StacSource(str(catalog), anchors=catalog.parent / "anchors.csv", max_cloud_cover=2.0)
    kept = {r.anchor_id: r for r in tight.anchors()}
    assert "A" not in kept  # its best scene has exactly 2 %, which is not under 2 %
    # B falls back to the scene without cloud metadata and says so, for the builder's cloud detector
    b = _by_modality(kept["B"])["sentinel2_l2a"]
    assert _items(b) == {"s2-B-20200105"}
    assert {r.properties["eo:cloud_cover"] for r in b} == {None}


def test_s1_takes_the_closest_scene_per_orbit_and_names_orbit_bands(requests):
    s1 = _by_modality(requests["A"])["sentinel1"]
    assert {r.properties["sat:orbit_state"]: r.properties["stac:item"] for r in s1} == EXPECTED["A"][
        "sentinel1"
    ]
    assert sorted(r.bands for r in s1) == [("VH_asc",), ("VH_des",), ("VV_asc",), ("VV_des",)]
    assert {r.properties["offset_days"] for r in s1} == {2.0, -10.0}
    assert all(r.properties["value_scale"] == "linear" for r in s1)


def test_s1_without_orbit_direction_keeps_plain_polarisations(requests):
    s1 = _by_modality(requests["B"])["sentinel1"]
    assert _items(s1) == {EXPECTED["B"]["sentinel1"][""]}  # the +31 d scene is outside +-15 d
    assert sorted(r.bands for r in s1) == [("VH",), ("VV",)]
    assert all("sat:orbit_state" not in r.properties for r in s1)


def test_window_days_is_configurable(catalog):
    source = StacSource(str(catalog), anchors=catalog.parent / "anchors.csv", window_days=1.0)
    a = _by_modality(next(iter(source.anchors())))
    assert "sentinel1" not in a  # the closest S1 scenes are 2 and 10 days away: absent, not zero-filled
    assert _items(a["dynamic_world"]) == {"lulc-A-2021"}  # an annual map covering the S2 date still counts


def test_static_and_annual_layers(requests):
    a = _by_modality(requests["A"])
    assert _items(a["esa_worldcover"]) == {EXPECTED["A"]["esa_worldcover"]}
    assert _items(a["dem"]) == {EXPECTED["A"]["dem"]}
    # the 2020 land-cover map ends more than 15 days before the 2021-06-18 scene
    [lulc] = a["dynamic_world"]
    assert lulc.properties["stac:item"] == EXPECTED["A"]["dynamic_world"]
    assert lulc.datetime.startswith("2021-06-18")  # the interval's moment closest to S2: offset 0
    assert lulc.class_map is not None
    assert lulc.class_map[1] == DYNAMIC_WORLD.class_by_name("water").code
    assert lulc.class_map[10] == DYNAMIC_WORLD.nodata  # Esri clouds
    assert _items(_by_modality(requests["B"])["esa_worldcover"]) == {EXPECTED["B"]["esa_worldcover"]}
    assert "naip" not in _by_modality(requests["B"])  # NAIP only exists in the US (and anchor A here)


def _value_at_anchor(path: str, band_index: int, lat: float, lon: float) -> float:
    with rasterio.open(path) as ds:
        assert ds.crs is not None and ds.crs.to_epsg() in (4326, 32632, 32734)
        (x,), (y,) = transform("EPSG:4326", ds.crs, [lon], [lat])
        row, col = ds.index(x, y)
        return float(ds.read(band_index + 1)[row, col])


def test_layer_refs_point_at_openable_cogs_with_bands_in_file_order(requests):
    """Every href opens with rasterio, and band i of the file holds the band the ref names at i."""
    for anchor_id, request in requests.items():
        lat, lon, _ = ANCHORS[anchor_id]
        for ref in request.layers:
            assert Path(ref.path).is_absolute()
            with rasterio.open(ref.path) as ds:
                assert ds.count == len(ref.bands)
            item = ref.properties["stac:item"]
            for i, band in enumerate(ref.bands):
                file_band = band.split("_")[0] if ref.modality == "sentinel1" else band
                assert _value_at_anchor(ref.path, i, lat, lon) == pytest.approx(stored_value(item, file_band)), (item, band)
    naip = _by_modality(requests["A"])["naip"]
    assert [r.bands for r in naip] == [("R", "G", "B", "NIR")]


def test_assets_and_modalities_override_the_profile(catalog):
    source = StacSource(
        str(catalog),
        anchors=catalog.parent / "anchors.csv",
        modalities=["sentinel2_l2a"],
        assets={"sentinel2_l2a": {"B8A": "B8A", "B08": ["B08"]}},
    )
    a = next(iter(source.anchors()))
    assert [(r.properties["stac:asset"], r.bands) for r in a.layers] == [("B8A", ("B8A",)), ("B08", ("B08",))]
    lat, lon, _ = ANCHORS["A"]
    values = [_value_at_anchor(r.path, 0, lat, lon) for r in a.layers]
    assert values == [pixel_value("s2-A-20210618", "B8A"), pixel_value("s2-A-20210618", "B08")]
    assert values[0] != values[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"assets": {"sentinel2_l2a": {"B08": "B8"}}}, "bands ['B8']"),
        ({"modalities": ["sentinel1"]}, "exactly one Sentinel-2 layer"),
        ({"modalities": ["sentinel2_l2a", "canopy_height"]}, "no layer 'canopy_height'"),
        ({"s2_product": "l3"}, "'l2a' or 'l1c'"),
        ({"profile": "nasa"}, "profile must be one of"),
        ({"datetime": "2020"}, "START/END"),
        ({"max_cloud_cover": -1.0}, "positive"),
    ],
)
def test_bad_configuration_names_what_was_expected(catalog, options, message):
    with pytest.raises(ValueError) as err:
        StacSource(str(catalog), anchors=catalog.parent / "anchors.csv", **options)
    assert message in str(err.value)


def test_a_layer_missing_from_the_profile_can_be_added(catalog):
    source = StacSource(
        str(catalog),
        anchors=catalog.parent / "anchors.csv",
        modalities=["sentinel2_l2a"],
        collections={"canopy_height": "cop-dem-glo-30"},  # any covering collection stands in here
        assets={"canopy_height": {"data": "height"}},
    )
    a = _by_modality(next(iter(source.anchors())))
    assert [r.bands for r in a["canopy_height"]] == [("height",)]


def test_public_profiles_name_real_registry_bands():
    for profile in PUBLIC_PROFILES.values():
        assert profile.url.startswith("https://")
        s2 = [layer for layer in profile.layers if layer.modality.startswith("sentinel2_")]
        assert s2 and all(len(layer.assets) >= 12 for layer in s2)
        for layer in profile.layers:
            names = get_modality(layer.modality).band_names
            assert all(b in names for _, bands in layer.assets for b in bands)


def test_anchor_list_csv_and_jsonl(tmp_path):
    jsonl = tmp_path / "anchors.jsonl"
    jsonl.write_text(
        json.dumps({"anchor_id": "x", "lat": 1.5, "lon": 2.5, "date": "2020-05-01T12:00:00Z"}) + "\n"
        + json.dumps({"anchor_id": "y", "lat": -1, "lon": 3}) + "\n"
    )  # fmt: skip
    x, y = read_anchor_list(jsonl)
    assert (x.anchor_id, x.lat, x.date.isoformat()) == ("x", 1.5, "2020-05-01T12:00:00+00:00")
    assert y.date is None
    bad = tmp_path / "bad.csv"
    bad.write_text("anchor_id,lat,lon\na,95,10\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: expected lat in \[-90, 90\]"):
        read_anchor_list(bad)
    bad.write_text("anchor_id,lat\na,45\n")
    with pytest.raises(ValueError, match=r"missing \['lon'\]"):
        read_anchor_list(bad)


@pytest.mark.parametrize(("lat", "lon"), [(46.52, 6.63), (-33.92, 18.42), (69.0, -50.0)])
def test_footprint_is_1280_m_square(lat, lon):
    west, south, east, north = footprint_bbox(lat, lon, 1280.0)
    assert west < lon < east and south < lat < north
    height_m = (north - south) * 111_320.0
    # the UTM square is rotated against the meridians by the grid convergence (up to ~2 deg here), so its
    # WGS 84 bounds are taller than 1280 m by up to 1280 * (cos + sin - 1)
    assert 1275.0 < height_m < 1330.0


def test_stac_api_search_gives_the_same_requests_as_the_static_catalog(catalog, requests):
    root = pystac.Catalog.from_file(str(catalog))
    root.make_all_asset_hrefs_absolute()
    items = [item.to_dict() for item in root.get_items(recursive=True)]
    with StacApiServer(items, page_size=3) as server:
        source = StacSource(server.url, anchors=catalog.parent / "anchors.csv", timeout_s=10.0)
        assert "STAC API" in source.describe()
        by_api = {r.anchor_id: r for r in source.anchors()}
    assert {a: [(r.modality, r.bands, r.path) for r in req.layers] for a, req in by_api.items()} == {
        a: [(r.modality, r.bands, r.path) for r in req.layers] for a, req in requests.items()
    }
    assert [q.anchor_id for q in source.quarantined] == ["C"]
    s2_search = next(p for m, p in server.searches if p["collections"] == ["sentinel-2-l2a"])
    west, south, east, north = s2_search["bbox"]
    lat, lon, _ = ANCHORS["A"]
    assert west < lon < east and south < lat < north
    assert s2_search["datetime"].startswith("2021-05-31")  # anchor A's date minus 15 days
