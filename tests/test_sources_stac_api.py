"""The STAC source on real recorded STAC items through a loopback STAC API (tests/fixtures/stac_api.py).

Also the build flags that reach the source (issue 19): ``--max-cloud-cover`` on the real 26 % item.
"""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
from conftest import SHARED_DATA
from fixtures.stac_api import (
    ES_ANCHORS,
    ES_FILE,
    PC_ANCHORS,
    PC_FILE,
    StacApiServer,
    load_items,
    materialise,
    planetary_computer_extras,
    snapped_anchor,
)

from dataset_scripts.align import AlignConfig, align
from dataset_scripts.build import BUILD_DIR
from dataset_scripts.sources.stac import StacSource, covers, footprint_bbox
from dataset_scripts.types import AnchorRequest
from modeling_geomeld.cli import main

STAC_DIR = SHARED_DATA / "stac"


def _setup(name: str, anchors: Any, root: Path, terramind: Path) -> tuple[list[dict], Path, dict]:
    if not (STAC_DIR / name).is_file():
        pytest.skip(f"recorded STAC items not found at {STAC_DIR} (set GEOMELD_SHARED_DATA)")
    items = load_items(STAC_DIR, name)
    by_id = {i["id"]: i for i in items}
    covering = {}
    for anchor in anchors:
        lat, lon, _, _ = snapped_anchor(by_id[anchor.item], anchor.approx)
        bbox = footprint_bbox(lat, lon, 1280.0)
        covering[anchor.anchor_id] = [i["id"] for i in items if covers(pystac.Item.from_dict(i), bbox)]
        assert anchor.item in covering[anchor.anchor_id]
    where = materialise(items, anchors, terramind, root / "data", covering)
    path = root / "anchors.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["anchor_id", "lat", "lon", "date"])
        for anchor in anchors:
            writer.writerow(
                [
                    anchor.anchor_id,
                    repr(where[anchor.anchor_id][0]),
                    repr(where[anchor.anchor_id][1]),
                    anchor.date,
                ]
            )
    return items, path, covering


@pytest.fixture(scope="module")
def pc(tmp_path_factory: pytest.TempPathFactory, terramind_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pc")
    items, anchors, covering = _setup(PC_FILE, PC_ANCHORS, root, terramind_dir)
    s2 = next(i for i in items if i["id"] == PC_ANCHORS[0].item)
    _, _, x, y = snapped_anchor(s2, PC_ANCHORS[0].approx)
    extras, values = planetary_computer_extras(s2, (x, y), root / "data")
    return {"items": items + extras, "anchors": anchors, "covering": covering, "values": values, "root": root}


@pytest.fixture(scope="module")
def es(tmp_path_factory: pytest.TempPathFactory, terramind_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("es")
    items, anchors, covering = _setup(ES_FILE, ES_ANCHORS, root, terramind_dir)
    return {"items": items, "anchors": anchors, "covering": covering, "root": root}


def _requests(api: dict[str, Any], **options: Any) -> tuple[dict[str, AnchorRequest], StacSource, list]:
    with StacApiServer(api["items"], page_size=2) as server:
        source = StacSource(server.url, anchors=api["anchors"], timeout_s=10.0, **options)
        requests = {r.anchor_id: r for r in source.anchors()}
    return requests, source, server.searches


def _by(request: AnchorRequest, modality: str) -> list:
    return [r for r in request.layers if r.modality == modality]


def test_least_cloudy_covering_item_and_planetary_computer_asset_keys(pc):
    requests, _, searches = _requests(pc, max_cloud_cover=50.0)
    s2 = _by(requests["kamchatka"], "sentinel2_l2a")
    # four real items cover the anchor, at 46.5, 52.4, 52.6 and 58.1 %: the least cloudy wins
    assert len(pc["covering"]["kamchatka"]) == 4
    assert {r.properties["stac:item"] for r in s2} == {PC_ANCHORS[0].item}
    assert {r.properties["eo:cloud_cover"] for r in s2} == {46.546018}
    assert [r.properties["stac:asset"] for r in s2][:4] == ["B01", "B02", "B03", "B04"]
    assert {r.properties["s2:processing_baseline"] for r in s2} == {"02.12"}
    # the server pages 2 items at a time: the 4 covering items took several POST pages
    s2_posts = [p for m, p in searches if m == "POST" and p.get("collections") == ["sentinel-2-l2a"]]
    assert len(s2_posts) >= 2 and any("token" in p for p in s2_posts)


def test_s1_and_land_cover_within_15_days_through_the_api(pc):
    requests, _, _ = _requests(pc, max_cloud_cover=50.0)
    s1 = _by(requests["kamchatka"], "sentinel1")
    picked = {r.properties["sat:orbit_state"]: r.properties["offset_days"] for r in s1}
    assert picked == {"ascending": 4.0, "descending": -12.0}  # +24 and -22 d are outside +-15 d
    [lulc] = _by(requests["kamchatka"], "dynamic_world")
    assert lulc.properties["stac:item"].endswith("-2019")
    narrow, _, _ = _requests(pc, max_cloud_cover=50.0, window_days=10.0)
    assert {r.properties["sat:orbit_state"] for r in _by(narrow["kamchatka"], "sentinel1")} == {"ascending"}


def test_earth_search_asset_keys_and_offset_metadata(es):
    requests, source, _ = _requests(es, profile="earth-search", max_cloud_cover=40.0)
    s2 = _by(requests["ceara"], "sentinel2_l2a")
    assert {r.properties["stac:item"] for r in s2} == {"S2B_24MVV_20250731_0_L2A"}  # 34.8 % beats 56.8 %
    assert [r.properties["stac:asset"] for r in s2][:4] == ["coastal", "blue", "green", "red"]
    assert [r.bands for r in s2][:4] == [("B01",), ("B02",), ("B03",), ("B04",)]
    assert {(r.properties["raster:offset"], r.properties["raster:scale"]) for r in s2} == {(-0.1, 0.0001)}
    assert {r.properties["earthsearch:boa_offset_applied"] for r in s2} == {True}
    assert "drake" in requests  # 26 % < 40 %
    assert "max_cloud_cover=40.0" in source.describe()


def test_both_apis_give_the_same_harmonised_pixels_for_the_same_surface(pc, es):
    """The surface is written offset-free into the 2019 (02.12) item and with +1000 into the 2025 (05.11) one."""
    pc_requests, _, _ = _requests(pc, max_cloud_cover=50.0, modalities=["sentinel2_l2a"])
    es_requests, _, _ = _requests(
        es, profile="earth-search", max_cloud_cover=40.0, modalities=["sentinel2_l2a"]
    )
    config = AlignConfig(max_cloud_cover=50.0)  # what --max-cloud-cover 50 gives the aligner
    old, new = align(pc_requests["kamchatka"], config), align(es_requests["ceara"], config)
    assert old.arrays["sentinel2"].shape == (12, 128, 128)
    assert np.isfinite(old.arrays["sentinel2"]).all()
    np.testing.assert_array_equal(old.arrays["sentinel2"], new.arrays["sentinel2"])
    assert (old.metadata["s2_offset_removed"], old.metadata["s2_offset_source"]) == (
        0.0,
        "processing_baseline",
    )
    assert (new.metadata["s2_offset_removed"], new.metadata["s2_offset_source"]) == (1000.0, "raster:bands")
    assert new.metadata["s2_processing_baseline"] == "05.11"


def test_get_search_pages_like_post(pc):
    from pystac_client import Client

    with StacApiServer(pc["items"], page_size=3) as server:
        client = Client.open(server.url)
        kwargs = {
            "collections": ["sentinel-2-l2a"],
            "bbox": [172.5, 56.7, 172.9, 56.9],
            "datetime": "2018-12-01/2019-02-01",
        }
        by_get = [i.id for i in client.search(method="GET", **kwargs).items()]
        by_post = [i.id for i in client.search(method="POST", **kwargs).items()]
        assert by_get == by_post and len(by_get) > 3
        none = list(
            client.search(
                method="GET", collections=["sentinel-2-l2a"], datetime="2020-01-01/2020-02-01"
            ).items()
        )
    assert none == []
    assert {m for m, _ in server.searches} == {"GET", "POST"}


def test_the_recorded_geometry_is_kept_and_tiles_are_sparse(pc):
    item = next(i for i in pc["items"] if i["id"] == PC_ANCHORS[0].item)
    import rasterio

    with rasterio.open(item["assets"]["B02"]["href"]) as ds:
        assert (ds.height, ds.width) == tuple(item["assets"]["B02"]["proj:shape"]) == (10980, 10980)
        assert list(ds.transform)[:6] == item["assets"]["B02"]["proj:transform"]
        assert ds.crs.to_epsg() == 32659 and ds.block_shapes[0] == (512, 512)
    assert Path(item["assets"]["B02"]["href"]).stat().st_size < 200_000  # 240 MB of pixels, kilobytes on disk


def _build(api: dict[str, Any], tmp_path: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    with StacApiServer(api["items"]) as server:
        rc = main(
            ["build", "--source", f"stac:{server.url}", "--out", str(tmp_path / "out"), "--workers", "0",
             "--no-progress", "--option", f"anchors={api['anchors']}", "--option", "profile=earth-search",
             "--option", "modalities=sentinel2_l2a", *flags]
        )  # fmt: skip
    out = tmp_path / "out"
    # a finished build reports at its top; one that built nothing leaves its report in the build folder
    report = out / "build_report.json" if rc == 0 else out / BUILD_DIR / "build_report.json"
    return rc, json.loads(report.read_text())


@pytest.mark.parametrize(("limit", "built"), [("30", {"drake"}), ("10", set()), ("40", {"ceara", "drake"})])
def test_max_cloud_cover_flag_reaches_the_stac_selection(es, tmp_path, limit, built):
    """The real 26 % item is taken at --max-cloud-cover 30 and refused at 10 (issue 19)."""
    rc, report = _build(es, tmp_path, "--max-cloud-cover", limit)
    assert f"max_cloud_cover={float(limit)}" in report["source"]
    refused = {r["anchor_id"] for r in report["quarantined_anchors"]}
    assert refused == {"ceara", "drake"} - built
    assert all(r["reason"] == "no_clear_scene" for r in report["quarantined_anchors"])
    assert report["built"] == len(built) and rc == (0 if built else 1)


def test_unreachable_api_fails_in_one_line(tmp_path, capsys, es):
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(["build", "--source", f"stac:http://127.0.0.1:{port}", "--out", str(tmp_path / "o"), "--workers", "0",
               "--no-progress", "--option", f"anchors={es['anchors']}"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"cannot open the STAC API at http://127.0.0.1:{port}" in err and "Traceback" not in err
