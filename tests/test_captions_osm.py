"""The release's osm_tags in every accepted shape, refusals with a reason, and the facts they become."""

from __future__ import annotations

import json

import pytest

from dataset_scripts.captions.orchestrator import build_fact_sheet
from dataset_scripts.captions.osm import OsmTagError, parse_osm_tags
from dataset_scripts.captions.verifier import Verifier

FLAT = {("highway", "motorway"), ("leisure", "marina")}


@pytest.mark.parametrize(
    "value",
    [
        {"highway": "motorway", "leisure": "marina"},  # the release fixture's shape
        ["highway=motorway", "leisure=marina"],
        {"1km": ["highway=motorway"], "5km": {"leisure": "marina"}},
        {"highway": ["motorway"], "leisure": "Marina"},
        json.dumps({"100m": {"highway": "motorway"}, "1km": ["leisure=marina", "highway=motorway"]}),
        json.dumps(["highway=motorway", "leisure=marina"]).encode(),
    ],
)
def test_accepted_shapes_give_the_same_tags(value: object) -> None:
    assert set(parse_osm_tags(value).tags) == FLAT


def test_scales_are_kept() -> None:
    tags = parse_osm_tags({"1km": ["highway=motorway"], "5km": {"highway": "motorway"}})
    assert tags.tags[("highway", "motorway")] == ("1km", "5km")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (42, "found int"),
        ("{not json", "expected JSON text"),
        ('"motorway"', "inside the JSON text"),
        (["motorway"], "'key=value' strings"),
        ([{"highway": "motorway"}], "'key=value' strings"),
        ({"1km": {"highway": {"deep": 1}}}, "tag value string"),
    ],
)
def test_other_shapes_are_refused_with_what_was_expected(value: object, message: str) -> None:
    with pytest.raises(OsmTagError, match=message):
        parse_osm_tags(value)


def test_tags_become_facts_the_verifier_reads() -> None:
    signals = {"place": {"country": "Italy", "country_code": "IT"}}
    sheet = build_fact_sheet("t", signals, {"lat": 43.7, "lon": 10.3, "osm_tags": ["leisure=marina"]})
    assert sheet.value("osm.tag.leisure=marina") is True and sheet.value("osm.tag_count") == 1
    verifier = Verifier(sheet)
    assert verifier.verify("A marina in Italy.").accepted
    motorway = verifier.verify("A motorway in Italy.")
    assert not motorway.accepted and [c.verdict for c in motorway.claims if c.kind == "osm"] == [
        "contradicted"
    ]
    untagged = Verifier(build_fact_sheet("u", signals, {"lat": 43.7}))
    assert [c.verdict for c in untagged.verify("A marina in Italy.").claims if c.kind == "osm"] == [
        "unverifiable"
    ]
    # the feature words are read before land cover: a solar farm is not farmland
    solar = Verifier(build_fact_sheet("s", signals, {"osm_tags": {"plant:source": "solar"}}))
    assert [c.kind for c in solar.verify("A solar farm in Italy.").claims] == ["place", "osm"]


def test_dataset_rows_carry_the_writers_osm_tags_column_into_the_metadata() -> None:
    from dataset_scripts.captions.dataset_io import row_to_sample

    tags = json.dumps({"1km": ["leisure=marina"]})
    row = row_to_sample({"tile_id": "t", "signals": "{}", "metadata": "{}", "lat": 43.7, "osm_tags": tags})
    assert row.metadata["osm_tags"] == tags
    sheet = build_fact_sheet(row.tile_id, row.signals, row.metadata)
    assert sheet.value("osm.tag.leisure=marina") is True
    absent = row_to_sample(
        {"tile_id": "u", "signals": "{}", "metadata": "{}"}
    )  # a dataset built before the column
    assert "osm_tags" not in absent.metadata and not build_fact_sheet("u", {}, absent.metadata).with_prefix(
        "osm."
    )
