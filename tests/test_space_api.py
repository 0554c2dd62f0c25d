"""The Space through its HTTP API (`gradio_client`) on loopback, and under load from 20 concurrent clients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from space_app.loadtest import run_load


@pytest.fixture(scope="module")
def client(space_server: str) -> Client:
    return Client(space_server, verbose=False)


def search(client: Client, query: str, k: int = 6, regions: list[str] | None = None, bbox: str = "", start: str = "", end: str = "") -> tuple:
    return client.predict(query, k, regions or [], bbox, start, end, api_name="/search")


def test_api_names(client: Client) -> None:
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/search", "/sample", "/image_to_text"} <= set(endpoints)


def test_text_to_image_gallery(client: Client) -> None:
    gallery, status = search(client, "lush fields on a flat plain", k=6)
    assert len(gallery) == 6 and "6 matches" in status
    for item in gallery:
        assert Path(item["image"]).is_file()
        score, place, day = item["caption"].split(" · ")
        assert 0 < float(score) <= 1 and place and len(day) == 10
    scores = [float(item["caption"].split(" · ")[0]) for item in gallery]
    assert scores == sorted(scores, reverse=True)


def test_filters_through_the_api(client: Client) -> None:
    gallery, _ = search(client, "farmland", k=8, regions=["DK"])
    assert len(gallery) == 4 and all("Denmark" in item["caption"] for item in gallery)
    gallery, status = search(client, "farmland", start="2035-01-01")
    assert gallery == [] and "No sample matches" in status


def test_bad_queries_get_a_message_and_the_app_keeps_serving(client: Client) -> None:
    with pytest.raises(AppError, match="type a description"):
        search(client, "   ")
    with pytest.raises(AppError, match="four numbers"):
        search(client, "coast", bbox="north of here")
    gallery, _ = search(client, "coast", k=3)
    assert len(gallery) == 3


def test_sample_panel(client: Client) -> None:
    tile, caption, panels, legend, facts, location = client.predict("609U_541L_3_0_1", api_name="/sample")
    assert tile == "609U_541L_3_0_1" and "609U_541L_3_0_1" in caption
    labels = [p["caption"] for p in panels]
    assert "Sentinel-2 true colour" in labels and "Sentinel-1 VV/VH" in labels and "DEM hillshade" in labels
    assert "Dynamic World" in legend
    assert facts["headers"] == ["claim", "verdict", "fact", "why"] and facts["data"]
    assert Path(location).is_file()
    with pytest.raises(AppError, match="no sample with tile id"):
        client.predict("not-a-tile", api_name="/sample")


def test_image_to_text_from_a_selected_sample_and_an_upload(client: Client, terramind_dir: Path, tmp_path: Path) -> None:
    table, similar, query_image, status = client.predict(
        "selected sample", None, "Sentinel-2 L2A", "Sentinel-1 only", "38D_378R_2_3_0", 4, api_name="/image_to_text"
    )
    assert len(table["data"]) == 4 and len(similar) == 4 and "Sentinel-1 only" in status
    assert all(len(row[2]) > 20 for row in table["data"])

    upload = handle_file(str(terramind_dir / "S2L2A" / "433D_629L_3_1.tif"))
    table, similar, query_image, status = client.predict(
        "uploaded GeoTIFF", upload, "Sentinel-2 L2A", "Sentinel-2 only", "", 3, api_name="/image_to_text"
    )
    assert len(table["data"]) == 3 and "433D_629L_3_1.tif" in status and Path(query_image).is_file()

    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(AppError, match="not a GeoTIFF"):
        client.predict("uploaded GeoTIFF", handle_file(str(text)), "Sentinel-2 L2A", "all inputs", "", 3, api_name="/image_to_text")
    with pytest.raises(AppError, match="upload a Sentinel-2 or Sentinel-1 GeoTIFF first"):
        client.predict("uploaded GeoTIFF", None, "Sentinel-2 L2A", "all inputs", "", 3, api_name="/image_to_text")
    gallery, _ = search(client, "coast", k=2)
    assert len(gallery) == 2


def test_twenty_concurrent_clients(space_server: str, tmp_path: Path) -> None:
    report = run_load(space_server, clients=20, queries_per_client=10, k=8)
    summary = report.to_dict()
    (tmp_path / "load.json").write_text(json.dumps(summary, indent=2))
    print(f"\nload: {summary['requests']} requests, p50 {summary['p50_s']:.3f} s, p95 {summary['p95_s']:.3f} s, errors {summary['errors']}")
    assert summary["errors"] == 0, summary["first_errors"]
    assert summary["requests"] == 200 and summary["p50_s"] <= summary["p95_s"]
