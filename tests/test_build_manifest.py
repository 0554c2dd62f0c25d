"""The manifest source: CSV / JSON Lines rows grouped into anchors, relative paths, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from _build_helpers import write_manifest

from dataset_scripts.sources import open_source
from dataset_scripts.sources.manifest import ManifestSource, canonical_bands
from dataset_scripts.types import QuarantineError


def _rows() -> list[dict]:
    return [
        {"anchor_id": "a", "modality": "sentinel2_l2a", "path": "s2/a.tif", "datetime": "2021-07-23T13:22:41Z"},
        {"anchor_id": "a", "modality": "sentinel1", "path": "s1/a.tif", "bands": "VV,VH"},
        {"anchor_id": "b", "modality": "dynamic_world", "path": "/abs/lulc.tif", "class_map": "1:water,2:trees,8:nodata",
         "lat": "57.2", "lon": "9.8"},
        {"anchor_id": "a", "modality": "dem", "path": "dem.tif", "bands": "elevation"},
    ]  # fmt: skip


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_rows_group_into_anchors_with_paths_relative_to_the_manifest(tmp_path: Path, suffix: str) -> None:
    manifest = write_manifest(_rows(), tmp_path / f"m{suffix}")
    source = open_source(f"manifest:{manifest}")
    anchors = {a.anchor_id: a for a in source.anchors()}
    assert list(anchors) == ["a", "b"]
    a = anchors["a"]
    assert [layer.modality for layer in a.layers] == ["sentinel2_l2a", "sentinel1", "dem"]
    assert a.layers[0].path == str(tmp_path / "s2" / "a.tif")
    assert a.layers[0].bands is None and a.layers[0].datetime == "2021-07-23T13:22:41Z"
    assert a.layers[1].bands == ("VV", "VH")
    assert (a.lat, a.lon) == (None, None)
    b = anchors["b"]
    assert b.layers[0].path == "/abs/lulc.tif"
    assert b.layers[0].class_map == {1: 1, 2: 2, 8: 0}  # Dynamic World codes are index + 1, 0 = no data
    assert (b.lat, b.lon) == (57.2, 9.8)
    assert source.quarantined == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"modality": "sentinel3"}, "unknown modality 'sentinel3'"),
        ({"bands": "VV,XX"}, "unknown sentinel1 bands ['XX']"),
        ({"bands": "VV,VV"}, "band names must be unique"),
        ({"modality": "dynamic_world", "bands": "", "class_map": "1:lake"}, "has no class 'lake'"),
        ({"modality": "dynamic_world", "bands": "", "class_map": "one:water"}, "is not an integer"),
        ({"modality": "dem", "class_map": "1:water"}, "needs a categorical target"),
        ({"lat": "91"}, "lat must lie in [-90.0, 90.0]"),
        ({"lon": "east"}, "lon must be a number"),
        ({"path": ""}, "missing ['path']"),
    ],
)
def test_bad_manifest_rows_raise_value_errors_naming_the_line(
    tmp_path: Path, change: dict, message: str
) -> None:
    row = {"anchor_id": "a", "modality": "sentinel1", "path": "s1.tif", "bands": "VV,VH", **change}
    manifest = write_manifest([row], tmp_path / "m.csv")
    with pytest.raises(ValueError, match=r"m\.csv line 2") as err:
        ManifestSource(str(manifest))
    assert message in str(err.value)


def test_manifest_format_and_header_errors(tmp_path: Path) -> None:
    (tmp_path / "m.txt").write_text("anchor_id,modality,path\n")
    with pytest.raises(ValueError, match=r"must end in \.csv, \.jsonl"):
        ManifestSource(str(tmp_path / "m.txt"))
    (tmp_path / "h.csv").write_text("anchor,modality,path\nx,dem,a.tif\n")
    with pytest.raises(ValueError, match=r"missing \['anchor_id'\]"):
        ManifestSource(str(tmp_path / "h.csv"))
    (tmp_path / "j.jsonl").write_text('{"anchor_id": "a", "modality": "dem", "path": "d.tif"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"j\.jsonl line 2: expected a JSON object, found list"):
        ManifestSource(str(tmp_path / "j.jsonl"))
    with pytest.raises(ValueError, match="does not exist"):
        ManifestSource(str(tmp_path / "absent.csv"))


def test_an_id_naming_two_anchors_is_quarantined_as_duplicate(tmp_path: Path) -> None:
    rows = [
        {"anchor_id": "a", "modality": "sentinel2_l2a", "path": "one.tif"},
        {"anchor_id": "a", "modality": "sentinel2_l1c", "path": "two.tif"},  # both give every S2 band
        {"anchor_id": "b", "modality": "dem", "path": "d.tif", "lat": "1", "lon": "2"},
        {"anchor_id": "b", "modality": "sentinel1", "path": "s.tif", "lat": "1.5", "lon": "2"},
        {
            "anchor_id": "c",
            "modality": "sentinel2_l2a",
            "path": "b02.tif",
            "bands": "B02",
        },  # one file per band: fine
        {"anchor_id": "c", "modality": "sentinel2_l2a", "path": "b03.tif", "bands": "B03"},
    ]
    source = ManifestSource(str(write_manifest(rows, tmp_path / "m.jsonl")))
    assert [a.anchor_id for a in source.anchors()] == ["c"]
    assert [(r.anchor_id, r.reason) for r in source.quarantined] == [
        ("a", "duplicate_anchor"),
        ("b", "duplicate_anchor"),
    ]
    assert "expected each sentinel2 band once per anchor id" in source.quarantined[0].message
    strict = ManifestSource(str(tmp_path / "m.jsonl"), strict=True)
    with pytest.raises(QuarantineError, match="the id names two anchors"):
        list(strict.anchors())


def test_canonical_band_orders() -> None:
    assert canonical_bands("sentinel2_l1c", 13)[10] == "B10"
    assert canonical_bands("sentinel2_l2a", 12)[8] == "B8A"
    assert canonical_bands("dem", 1) == ("elevation",)
    assert canonical_bands("sentinel1", 2) == ("VV", "VH")
    assert canonical_bands("sentinel2_l2a", 5) is None


def test_the_generic_label_layer_keeps_its_codes(tmp_path: Path) -> None:
    rows = [
        {"anchor_id": "a", "modality": "label", "path": "mask.tif"},
        {"anchor_id": "b", "modality": "label", "path": "mask.tif", "class_map": "0:0,1:1,9:nodata"},
    ]
    anchors = {a.anchor_id: a for a in ManifestSource(str(write_manifest(rows, tmp_path / "m.csv"))).anchors()}
    assert anchors["a"].layers[0].class_map == {c: c for c in range(255)}  # 255 is the label layer's no-data
    assert anchors["b"].layers[0].class_map == {0: 0, 1: 1, 9: 255}
