"""The build end to end: Dask, quarantine corpus, resume byte for byte, load_dataset round trip, stats, card."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from _build_helpers import TERRAMIND_IDS, failing_writes, terramind_rows, write_manifest

import dataset_scripts.build as build_module
from dataset_scripts.align import AlignConfig, align
from dataset_scripts.build import BuildError, BuildOptions, build
from dataset_scripts.loading import band_names, decode_batch, decode_row
from dataset_scripts.sources.manifest import ManifestSource
from dataset_scripts.types import QuarantineError
from modeling_geomeld.cli import main

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from make_corrupt_corpus import EXPECTED, write_corpus

FAST = BuildOptions(workers=0, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.parts[len(root.parts)] in ("data", ".geomeld_build", "build_manifest.json")}  # fmt: skip


@pytest.fixture(scope="module")
def manifest(terramind_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [r for tile in TERRAMIND_IDS for r in terramind_rows(terramind_dir, tile)]
    rows += terramind_rows(terramind_dir, "637U_59R_1_3", product="l1c", anchor_id="637U_59R_1_3_l1c")
    return write_manifest(rows, tmp_path_factory.mktemp("manifest") / "manifest.jsonl")


@pytest.fixture(scope="module")
def dask_build(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted build on a local Dask cluster (one thread worker: the test machine is shared)."""
    out = tmp_path_factory.mktemp("built")
    options = BuildOptions(
        workers=1, processes=False, shard_size=2, progress=False, split_fractions=(0.5, 0.25, 0.25)
    )
    report = build(f"manifest:{manifest}", out, options)
    assert (report.tried, report.built, report.quarantined) == (6, 6, {})
    return out


def test_shards_hold_typed_filter_columns_and_raw_layers(dask_build: Path) -> None:
    shards = sorted((dask_build / "data").rglob("*.parquet"))
    assert shards and all(p.parent.name == "non_naip" for p in shards)
    meta = pq.ParquetFile(shards[0]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    table = pq.read_table(
        shards, columns=["tile_id", "lat", "lon", "datetime", "split", "s2_product", "caption"]
    )
    assert sorted(table["tile_id"].to_pylist()) == sorted([*TERRAMIND_IDS, "637U_59R_1_3_l1c"])
    assert set(table["s2_product"].to_pylist()) == {"l1c", "l2a"} and set(table["caption"].to_pylist()) == {
        ""
    }
    # a user filters by place and date without touching imagery
    north = table.filter((table["lat"].to_numpy() > 50) & (np.array(table["datetime"].to_pylist()) >= "2018"))
    assert north["tile_id"].to_pylist() == ["609U_541L_3_0"]
    report = json.loads((dask_build / "build_report.json").read_text())
    assert report["shards_written"] == 3 and sum(report["rows"].values()) == 6


def test_the_same_inputs_give_byte_identical_shards_and_resume_finishes_an_interrupted_build(
    manifest: Path, dask_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = BuildOptions(
        workers=1, processes=False, shard_size=2, progress=False, split_fractions=(0.5, 0.25, 0.25)
    )
    real_write = build_module.write_shard
    monkeypatch.setattr(build_module, "write_shard", failing_writes(real_write, 1))
    with pytest.raises(BuildError, match="1 shard\\(s\\) failed; rerun with --resume"):
        build(f"manifest:{manifest}", tmp_path, options)
    assert (
        not build_module.marker_path(tmp_path, 1).exists() and build_module.marker_path(tmp_path, 2).exists()
    )
    monkeypatch.setattr(build_module, "write_shard", real_write)
    # what a killed process leaves behind: a half-written temporary file, which the resumed build removes
    stale = tmp_path / ".geomeld_build" / "data" / "non_naip" / ".train-00001.parquet.tmp"
    stale.write_bytes(b"PAR1 half a shard")
    report = build(f"manifest:{manifest}", tmp_path, BuildOptions(**{**options.__dict__, "resume": True}))
    assert (report.shards_resumed, report.shards_written, report.built) == (2, 1, 6)
    assert _files(tmp_path) == _files(dask_build) and not stale.exists()
    with pytest.raises(ValueError, match=r"cannot resume .* found \['shard_size'\] changed"):
        build(
            f"manifest:{manifest}",
            tmp_path,
            BuildOptions(**{**options.__dict__, "resume": True, "shard_size": 3}),
        )


def test_load_dataset_map_style_streaming_and_node_split(
    dask_build: Path, manifest: Path, tmp_path: Path
) -> None:
    from datasets import load_dataset
    from datasets.distributed import split_dataset_by_node

    card = (dask_build / "README.md").read_text()
    assert (
        "config_name: default" in card and "config_name: non_naip" in card and "config_name: naip" not in card
    )
    ds = load_dataset(str(dask_build), cache_dir=str(tmp_path / "cache"))
    total = sum(len(ds[s]) for s in ds)
    assert total == 6 and set(ds) <= {"train", "validation", "test"}
    split = next(iter(ds))
    row = ds[split][0]
    arrays = decode_row(row)
    expected = align(
        next(a for a in ManifestSource(str(manifest)).anchors() if a.anchor_id == row["tile_id"])
    )
    assert set(arrays) == set(expected.arrays)
    for name, array in arrays.items():
        # native storage (writer.STORAGE): S2 rounds to whole DN, float16 layers within their stated error
        tolerance = {"sentinel2": 0.5, "sentinel1": 2**-6, "dem": 2.0, "canopy_height": 2**-5}.get(name, 0)
        np.testing.assert_allclose(array, expected.arrays[name], rtol=0, atol=tolerance)
        assert band_names(row)[name] == list(expected.bands[name])
    assert decode_row(row, ["dynamic_world"], class_indices=True)["dynamic_world"].max() <= 8
    batch = ds[split].with_transform(decode_batch)[:2]
    assert (
        batch["sentinel2"][0].shape == (12, 128, 128)
        and batch["naip"][0] is None
        and "sentinel2_shape" not in batch
    )
    stream = load_dataset(str(dask_build), split=split, streaming=True)
    streamed = {r["tile_id"]: decode_row(r) for r in stream}
    assert set(streamed) == set(ds[split]["tile_id"])
    np.testing.assert_array_equal(streamed[row["tile_id"]]["sentinel2"], arrays["sentinel2"])
    ranks = [{r["tile_id"] for r in split_dataset_by_node(stream, rank=k, world_size=2)} for k in range(2)]
    assert not ranks[0] & ranks[1] and ranks[0] | ranks[1] == set(streamed)
    signals = json.loads(row["signals"])
    assert signals["place"]["country_code"] == row["country_code"]


def test_stats_keep_l1c_and_l2a_apart_and_land_in_the_card(dask_build: Path, terramind_dir: Path) -> None:
    assert main(["stats", str(dask_build), "--split", "all"]) == 0
    stats = json.loads((dask_build / "stats.json").read_text())
    assert stats["samples"] == 6
    assert set(stats["bands"]) == {"sentinel2_l1c", "sentinel2_l2a", "sentinel1", "dem"}
    assert "B10" not in stats["bands"]["sentinel2_l1c"]
    # the L1C statistics are those of the one Danish L1C scene alone, not pooled with the five L2A scenes
    with rasterio.open(terramind_dir / "S2L1C" / "637U_59R_1_3.tif") as ds:
        raw_l1c = ds.read(2).astype(float)[48:176, 48:176].mean()
    assert stats["bands"]["sentinel2_l1c"]["B02"]["mean"] == pytest.approx(raw_l1c, rel=1e-4)
    assert stats["bands"]["sentinel2_l1c"]["B02"]["pixels"] == 128 * 128
    assert stats["bands"]["sentinel2_l2a"]["B02"]["pixels"] == 5 * 128 * 128
    assert -25 < stats["bands"]["sentinel1"]["VH"]["mean"] < -10
    assert abs(sum(stats["classes"]["dynamic_world"].values()) - 1) < 1e-3
    card = (dask_build / "README.md").read_text()
    assert "**sentinel2_l1c**" in card and "CC-BY-4.0" in card and "Copernicus" in card
    assert main(["card", str(dask_build)]) == 0


def test_corrupt_corpus_is_quarantined_with_each_reason(tmp_path: Path) -> None:
    manifest = write_corpus(tmp_path / "corpus")
    report = build(f"manifest:{manifest}", tmp_path / "out", FAST)
    got = {r["anchor_id"]: r["reason"] for r in report.quarantined_anchors}
    assert got == {k: v for k, v in EXPECTED.items() if v is not None}
    assert report.built == 1 and report.tried == len(EXPECTED)
    assert f"quarantined {len(EXPECTED) - 1}" in report.summary() and "corrupt_file 2" in report.summary()
    messages = {r["anchor_id"]: r["message"] for r in report.quarantined_anchors}
    assert (
        "expected 3 bands as the manifest names" in messages["band_mismatch"]
        and "found 12" in messages["band_mismatch"]
    )
    assert (tmp_path / "corpus" / "huge_dem.tif").stat().st_size < 300_000  # declares 150000^2 px
    assert "61.0 GiB of float32" in messages["huge_dem"] and "refused before reading" in messages["huge_dem"]
    assert "most often -32768" in messages["s2_fill"] and "linear power" in messages["s1_linear"]
    on_disk = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert on_disk["quarantined"]["corrupt_file"] == 2


def test_strict_stops_at_the_first_bad_input_and_empty_builds_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    manifest = write_corpus(tmp_path / "corpus")
    with pytest.raises(QuarantineError):
        build(
            f"manifest:{manifest}", tmp_path / "strict", BuildOptions(workers=0, progress=False, strict=True)
        )
    bad_only = tmp_path / "bad.csv"
    bad_only.write_text("anchor_id,modality,path\nx,sentinel2_l2a,corpus/garbage_s2.tif\n")
    code = main(
        [
            "build",
            "--source",
            f"manifest:{bad_only}",
            "--out",
            str(tmp_path / "empty"),
            "--workers",
            "0",
            "--no-progress",
        ]
    )
    assert code == 1 and "nothing was built" in capsys.readouterr().err
    assert (
        main(
            [
                "build",
                "--source",
                f"manifest:{manifest}",
                "--out",
                str(tmp_path / "s"),
                "--workers",
                "0",
                "--strict",
                "--no-progress",
            ]
        )
        == 1
    )


def test_cli_help_and_grid_options(
    tmp_path: Path, capsys: pytest.CaptureFixture, terramind_dir: Path
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["build", "--help"])
    assert exit_.value.code == 0 and "--resume" in capsys.readouterr().out
    manifest = write_manifest(terramind_rows(terramind_dir, "637U_59R_1_3"), tmp_path / "m.csv")
    args = [
        "build",
        "--source",
        f"manifest:{manifest}",
        "--out",
        str(tmp_path / "o"),
        "--workers",
        "0",
        "--size-px",
        "32",
        "--no-progress",
    ]
    assert main(args) == 0 and "built 1" in capsys.readouterr().out
    row = pq.read_table(next((tmp_path / "o" / "data").rglob("*.parquet"))).to_pylist()[0]
    assert row["sentinel2_shape"] == [12, 32, 32]
    with pytest.raises(ValueError, match="size_px must be at least 8"):
        AlignConfig(size_px=4)


def test_a_build_from_the_release_format_fills_the_naip_config(tmp_path: Path) -> None:
    from datasets import load_dataset
    from make_release import make_release

    release = make_release(tmp_path / "release", 8)
    # the fixture's planes hold per-band id constants (S1 ~183 "dB"), not physical values: no range check here
    report = build(f"geomeld-release:{release}", tmp_path / "out", BuildOptions(workers=0, progress=False, check_ranges=False))
    assert report.built >= 1 and set(report.quarantined) <= {"corrupt_file", "band_count_mismatch"}
    card = (tmp_path / "out" / "README.md").read_text()
    assert "config_name: naip" in card
    naip = load_dataset(str(tmp_path / "out"), "naip", cache_dir=str(tmp_path / "cache"))
    row = naip[next(iter(naip))][0]
    arrays = decode_row(row)
    assert arrays["naip"].dtype == np.uint16 and arrays["naip"].shape[1] == 10 * arrays["sentinel2"].shape[1]
    assert row["has_naip"] and "naip" in row["modalities"]


def test_an_existing_scheduler_runs_the_build_and_stays_up(tmp_path: Path, terramind_dir: Path) -> None:
    from distributed import Client, LocalCluster

    manifest = write_manifest(terramind_rows(terramind_dir, "38D_378R_2_3"), tmp_path / "m.csv")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        options = BuildOptions(scheduler=cluster.scheduler_address, progress=False)
        report = build(f"manifest:{manifest}", tmp_path / "out", options)
        assert report.built == 1
        with Client(cluster.scheduler_address) as client:  # the builder closed its client, not the cluster
            assert client.submit(sum, [1, 2]).result() == 3
