"""The Space through its HTTP API (`gradio_client`) on loopback, and under a mixed load of 30 concurrent clients.

Every endpoint's last output is the one status area: a summary of the success, or the user's mistake
starting with the warning mark (never an exception toast), replaced by the next success.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from space_app.loadtest import ERROR_MARK, run_load


@pytest.fixture(scope="module")
def client(space_server: str) -> Client:
    return Client(space_server, verbose=False)


def search(client: Client, query: str, k: int = 6, regions: list[str] | None = None, bbox: str = "", start: str = "", end: str = "") -> tuple:
    return client.predict(query, k, regions or [], bbox, start, end, api_name="/search")


def to_text(client: Client, source: str, upload: object, subset: str, tile: str, k: int, product: str = "Sentinel-2 L2A") -> tuple:
    return client.predict(source, upload, product, subset, tile, k, api_name="/image_to_text")


def test_api_names(client: Client) -> None:
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/search", "/sample", "/image_to_text"} <= set(endpoints)


def test_text_to_image_gallery(client: Client) -> None:
    gallery, status = search(client, "lush fields on a flat plain", k=6)
    assert len(gallery) == 6 and "6 matches" in status
    for item in gallery:
        assert Path(item["image"]).is_file()
        score, place, day = item["caption"].split(" · ")
        assert -1 <= float(score) <= 1 and place and len(day) == 10
    scores = [float(item["caption"].split(" · ")[0]) for item in gallery]
    assert scores == sorted(scores, reverse=True)


def test_filters_through_the_api(client: Client) -> None:
    gallery, _ = search(client, "farmland", k=8, regions=["DK"])
    assert len(gallery) == 4 and all("Denmark" in item["caption"] for item in gallery)
    gallery, status = search(client, "farmland", start="2035-01-01")
    assert gallery == [] and "No sample matches" in status


@pytest.mark.parametrize(
    ("query", "bbox", "message"),
    [
        ("   ", "", "type a description"),
        ("coast", "north of here", "four numbers"),
        ("coast", "0, -95, 10, 10", "latitude within -90..90"),
        ("coast", "-200, 0, 10, 10", "longitude within -180..180"),
        ("coast", "nan, 0, 10, 10", "expected finite numbers"),
        ("coast", "0, 20, 10, 10", "min_lat <= max_lat"),
    ],
)
def test_mistakes_go_to_the_status_area_once_and_the_next_success_clears_them(client: Client, query: str, bbox: str, message: str) -> None:
    gallery, status = search(client, query, bbox=bbox)
    assert status.startswith(ERROR_MARK) and message in status and status.count(ERROR_MARK) == 1
    gallery, status = search(client, "coast", k=3)
    assert len(gallery) == 3 and not status.startswith(ERROR_MARK) and "3 matches" in status


def test_sample_panel(client: Client) -> None:
    tile, caption, panels, legend, facts, location, status = client.predict("609U_541L_3_0_1", api_name="/sample")
    assert tile == "609U_541L_3_0_1" and "609U_541L_3_0_1" in caption and "609U_541L_3_0_1" in status
    labels = [p["caption"] for p in panels]
    assert "Sentinel-2 true colour" in labels and "Sentinel-1 VV/VH" in labels and "DEM hillshade" in labels
    assert "Dynamic World" in legend
    # colour bars with value range and unit for the DEM and each S1 channel
    assert "DEM elevation" in legend and " m</span>" in legend and "Sentinel-1 VV" in legend and " dB</span>" in legend
    assert facts["headers"] == ["claim", "verdict", "fact", "why"] and facts["data"]
    assert Path(location).is_file()
    *_, status = client.predict("not-a-tile", api_name="/sample")
    assert status.startswith(ERROR_MARK) and "no sample with tile id" in status


def test_image_to_text_from_a_selected_sample_and_an_upload(client: Client, space_assets: dict, terramind_dir: Path, tmp_path: Path) -> None:
    table, similar, query_image, _, status = to_text(client, "selected sample", None, "Sentinel-1 only", "38D_378R_2_3_0", 4)
    assert len(table["data"]) == 4 and len(similar) == 4 and "Sentinel-1 only" in status
    assert all(len(row[2]) > 20 for row in table["data"])

    uploads = space_assets["root"] / "gradio-uploads"
    upload = handle_file(str(terramind_dir / "S2L2A" / "433D_629L_3_1.tif"))
    table, similar, query_image, cleared, status = to_text(client, "uploaded GeoTIFF", upload, "Sentinel-2 only", "", 3)
    assert len(table["data"]) == 3 and "433D_629L_3_1.tif" in status and Path(query_image).is_file()
    assert cleared is None  # the upload field is emptied ...
    assert not list(uploads.rglob("433D_629L_3_1.tif"))  # ... and the file is gone from the server

    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    *_, status = to_text(client, "uploaded GeoTIFF", handle_file(str(text)), "all inputs", "", 3)
    assert status.startswith(ERROR_MARK) and "not a GeoTIFF" in status
    assert not list(uploads.rglob("notes.txt"))  # refused uploads are deleted too
    *_, status = to_text(client, "uploaded GeoTIFF", None, "all inputs", "", 3)
    assert "upload a Sentinel-2 or Sentinel-1 GeoTIFF first" in status
    with pytest.raises(AppError, match="not in the list of choices"):  # Gradio checks a choice before the app runs
        to_text(client, "selected sample", None, "radar please", "38D_378R_2_3_0", 3)
    gallery, status = search(client, "coast", k=2)
    assert len(gallery) == 2 and not status.startswith(ERROR_MARK)


def test_thirty_clients_ten_mixed_requests_each(space_server: str, tmp_path: Path) -> None:
    report = run_load(space_server, clients=30, queries_per_client=10, k=8)
    summary = report.to_dict()
    (tmp_path / "load.json").write_text(json.dumps(summary, indent=2))
    print(f"\nload: {summary['requests']} requests {summary['answered_by_kind']}, p50 {summary['p50_s']:.3f} s, p95 {summary['p95_s']:.3f} s, errors {summary['errors']}")
    assert summary["errors"] == 0, summary["first_errors"]
    assert summary["requests"] == 300 and summary["p50_s"] <= summary["p95_s"]
    assert set(summary["answered_by_kind"]) == {"search", "sample", "image_to_text", "bad_query"}
