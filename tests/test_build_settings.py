"""Every build option takes effect or is refused (issue 19): dataset_scripts/settings.py and its wiring."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fixtures.make_stac_catalog import make_catalog

from dataset_scripts.align import AlignConfig
from dataset_scripts.build import BUILD_DIR, BuildOptions, build
from dataset_scripts.errors import UsageError
from dataset_scripts.settings import (
    SOURCE_OPTIONS,
    OptionSpec,
    coerce,
    parse_option_pairs,
    resolve_source_options,
)
from dataset_scripts.sources.stac import PUBLIC_PROFILES, SIGNERS, StacSource
from modeling_geomeld.cli import main

#: the fixture catalog's layers whose constant pixels are valid values (its class maps hold no real codes)
ALIGNABLE = "sentinel2_l2a,sentinel1,dem"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_catalog(tmp_path_factory.mktemp("stac"))


def test_option_table_matches_the_stac_source_signature():
    params = inspect.signature(StacSource.__init__).parameters
    declared = {o.name: o for o in SOURCE_OPTIONS["stac"]}
    assert set(declared) == set(params) - {"self", "location", "strict"}
    for name, spec in declared.items():
        if not spec.required:
            assert params[name].default == spec.default, name
    assert set(declared["profile"].choices) == set(PUBLIC_PROFILES)
    assert set(declared["sign"].choices) == set(SIGNERS)


def test_values_are_parsed_by_declared_type(catalog):
    anchors = str(catalog.parent / "anchors.csv")
    parsed = parse_option_pairs(
        "stac",
        [
            ("anchors", anchors),
            ("modalities", "sentinel2_l2a, dem"),
            ("collections", "dem:cop-dem-glo-30,canopy_height:chm"),
            ("assets", '{"canopy_height": {"data": "height"}}'),
            ("max_items", "50"),
            ("timeout_s", "2.5"),
            ("s2_product", "l1c"),
        ],
    )
    assert parsed == {
        "anchors": Path(anchors),
        "modalities": ["sentinel2_l2a", "dem"],
        "collections": {"dem": "cop-dem-glo-30", "canopy_height": "chm"},
        "assets": {"canopy_height": {"data": "height"}},
        "max_items": 50,
        "timeout_s": 2.5,
        "s2_product": "l1c",
    }
    assert parse_option_pairs("stac", [("collections", '{"dem": "x"}')]) == {"collections": {"dem": "x"}}
    flag = OptionSpec("flag", "bool", False, "a boolean option")
    assert [coerce(flag, v) for v in ("true", "no", "1", "off", True)] == [True, False, True, False, True]


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("colour", "red")], "source 'stac' has no option 'colour'; it knows ['anchors', 'profile'"),
        ([("max_items", "many")], "option max_items: expected an integer, found 'many'"),
        ([("max_items", "0")], "expected a positive number"),
        ([("timeout_s", "nan")], "expected a positive number"),
        ([("profile", "nasa")], "expected one of ['earth-search', 'planetary-computer']"),
        ([("anchors", "/nowhere/anchors.csv")], "expected an existing file"),
        ([("collections", "dem")], "KEY:VALUE pairs"),
        ([("assets", "{not json")], "expected JSON"),
        ([("assets", "[1, 2]")], "a JSON object"),
        ([("max_cloud_cover", "30")], "set by the build flag --max-cloud-cover"),
        ([("window_days", "3")], "set by the build flag --max-offset-days"),
        ([("footprint_m", "640")], "set by the build flag --size-px x --gsd"),
        ([("datetime", "a/b"), ("datetime", "c/d")], "given twice"),
    ],
)
def test_bad_options_are_refused_by_name(pairs, message):
    with pytest.raises(UsageError) as err:
        parse_option_pairs("stac", pairs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_sources_without_options_refuse_any():
    for kind in ("manifest", "geomeld-release"):
        with pytest.raises(
            UsageError, match=f"source '{kind}' has no option 'anchors'; it takes no --option"
        ):
            parse_option_pairs(kind, [("anchors", "x.csv")])


def test_flags_reach_the_source_and_contradictions_are_refused(catalog):
    options = BuildOptions(align=AlignConfig(size_px=64, gsd=20.0, max_cloud_cover=30.0, max_offset_days=5.0))
    anchors = catalog.parent / "anchors.csv"
    resolved = resolve_source_options(f"stac:{catalog}", options, {"anchors": str(anchors)})
    assert (resolved["max_cloud_cover"], resolved["window_days"], resolved["footprint_m"]) == (
        30.0,
        5.0,
        1280.0,
    )
    assert resolved["max_items"] == 200 and resolved["anchors"] == anchors  # defaults, typed
    same = resolve_source_options(f"stac:{catalog}", options, {"anchors": anchors, "max_cloud_cover": 30})
    assert same == resolved
    with pytest.raises(UsageError, match=r"contradicts the build's --max-cloud-cover \(30.0\)"):
        resolve_source_options(f"stac:{catalog}", options, {"anchors": anchors, "max_cloud_cover": 10.0})
    with pytest.raises(UsageError, match="option anchors is required"):
        resolve_source_options(f"stac:{catalog}", options, {})


def _cli(catalog: Path, out: Path, *extra: str) -> int:
    return main(
        ["build", "--source", f"stac:{catalog}", "--out", str(out), "--workers", "0", "--no-progress",
         "--option", f"anchors={catalog.parent / 'anchors.csv'}", *extra]
        + ([] if any(e.startswith("modalities=") for e in extra) else ["--option", f"modalities={ALIGNABLE}"])
    )  # fmt: skip


def _rows(out: Path) -> dict[str, dict]:
    table = pq.ParquetDataset(sorted((out / "data").rglob("*.parquet"))).read(
        columns=["tile_id", "modalities", "metadata"]
    )
    return {r["tile_id"]: r for r in table.to_pylist()}


def test_list_option_on_the_command_line_restricts_the_layers(catalog, tmp_path):
    """`--option modalities=sentinel2_l2a` was iterated character by character (KeyError 's')."""
    assert _cli(catalog, tmp_path / "all") == 0
    assert _cli(catalog, tmp_path / "s2", "--option", "modalities=sentinel2_l2a") == 0
    assert "sentinel1" in _rows(tmp_path / "all")["A"]["modalities"]
    assert _rows(tmp_path / "s2")["A"]["modalities"] == ["sentinel2"]
    report = json.loads((tmp_path / "s2" / "build_report.json").read_text())
    assert "modalities=['sentinel2_l2a']" in report["source"]


def test_max_offset_days_reaches_the_source_window(catalog, tmp_path):
    # anchor A's Sentinel-1 scenes lie +2 d (ascending) and -10 d (descending) from its S2 scene
    assert _cli(catalog, tmp_path / "wide") == 0
    assert _cli(catalog, tmp_path / "o", "--max-offset-days", "5") == 0
    report = json.loads((tmp_path / "o" / "build_report.json").read_text())
    assert "window_days=5.0" in report["source"]

    def s1_bands(out: Path) -> set[str]:
        table = pq.ParquetDataset(sorted((out / "data").rglob("*.parquet"))).read(
            columns=["tile_id", "sentinel1_bands"]
        )
        return set(next(r for r in table.to_pylist() if r["tile_id"] == "A")["sentinel1_bands"])

    assert {"VV_asc", "VV_des"} <= s1_bands(tmp_path / "wide")
    assert "VV_asc" in s1_bands(tmp_path / "o") and not any(
        b.endswith("_des") for b in s1_bands(tmp_path / "o")
    )


def test_grid_flags_set_the_searched_footprint(catalog, tmp_path):
    assert _cli(catalog, tmp_path / "o", "--size-px", "64", "--gsd", "10") == 0
    report = json.loads((tmp_path / "o" / "build_report.json").read_text())
    assert "footprint_m=640.0" in report["source"]
    plan = json.loads((tmp_path / "o" / BUILD_DIR / "plan.json").read_text())
    assert plan["source_options"]["footprint_m"] == "640.0"  # the resolved values decide a resume


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--option", "colour=red"), "has no option 'colour'"),
        (("--option", "modalities=s2"), "stac source: unknown modality 's2'"),
        (("--option", "max_cloud_cover=30"), "use that flag instead"),
        (("--max-cloud-cover", "200"), "max_cloud_cover is a percentage in [0, 100], found 200.0"),
        (("--shard-size", "0"), "shard_size must be at least 1"),
    ],
)
def test_refusals_are_one_line_with_exit_code_2(catalog, tmp_path, capsys, extra, message):
    assert _cli(catalog, tmp_path / "o", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_build_help_lists_each_sources_options(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    out = capsys.readouterr().out
    assert "source options (--option KEY=VALUE" in out
    for kind, specs in SOURCE_OPTIONS.items():
        assert f"  {kind}:" in out
        for spec in specs:
            assert f"    {spec.name} (" in out
    assert "max_cloud_cover (float): set by --max-cloud-cover" in out


def test_library_build_resolves_the_same_way(catalog, tmp_path):
    """build() without the CLI: the aligner's limit reaches the source, so C's 10 % scene is taken at 50."""
    options = BuildOptions(workers=0, progress=False, align=AlignConfig(max_cloud_cover=50.0))
    anchors = str(catalog.parent / "anchors.csv")
    report = build(f"stac:{catalog}", tmp_path / "o", options, anchors=anchors, modalities=["sentinel2_l2a"])
    assert report.built == 3 and report.quarantined == {}
    with pytest.raises(UsageError, match="has no option 'anchor'"):
        build(f"stac:{catalog}", tmp_path / "p", options, anchor="x.csv")
