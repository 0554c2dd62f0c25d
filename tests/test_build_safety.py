"""Builds that stay correct against hostile situations: one bad anchor, a reused --out, a killed build,
two builds in same-named folders, bit rot, truncated files. Plain ``datasets.load_dataset`` is the reference
for what a user sees."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from _build_helpers import failing_writes

import dataset_scripts.build as build_module
from dataset_scripts.build import BUILD_DIR, BuildError, BuildOptions, build
from dataset_scripts.errors import UsageError
from dataset_scripts.integrity import MANIFEST_NAME, verify
from dataset_scripts.loading import ShardReadError, decode_row, iter_shard_batches, load_geomeld
from dataset_scripts.types import QuarantineError
from modeling_geomeld.cli import main

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from make_corrupt_corpus import write_corpus

FAST = BuildOptions(workers=0, progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus")).parent


def _manifest(corpus: Path, path: Path, ids: list[str], extra: list[str] = ()) -> Path:
    """A manifest of ``ids`` (copies of the corpus's clean anchor) plus corpus anchors ``extra`` as they are."""
    with (corpus / "manifest.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = [{**r, "anchor_id": i, "path": str(corpus / r["path"])} for i in ids for r in rows if r["anchor_id"] == "good"]
    out += [{**r, "path": str(corpus / r["path"])} for r in rows if r["anchor_id"] in extra]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(out)
    return path


def _tiles(ds: object) -> list[str]:
    return sorted(t for split in ds.values() for t in split["tile_id"])  # type: ignore[attr-defined]


def test_an_exception_on_one_anchor_quarantines_it_alone_also_on_resume(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = [f"g{i}" for i in range(5)]
    manifest = _manifest(corpus, tmp_path / "m.csv", good, ["offset_na"])
    options = BuildOptions(workers=0, progress=False, shard_size=8)  # all six anchors in one shard
    real_write = build_module.write_shard
    monkeypatch.setattr(build_module, "write_shard", failing_writes(real_write, None))  # the first run dies
    with pytest.raises(BuildError, match="1 shard"):
        build(f"manifest:{manifest}", tmp_path / "out", options)
    monkeypatch.setattr(build_module, "write_shard", real_write)
    report = build(f"manifest:{manifest}", tmp_path / "out", BuildOptions(**{**options.__dict__, "resume": True}))
    assert report.built == 5 and report.quarantined == {"internal": 1}
    (record,) = report.quarantined_anchors
    assert record["anchor_id"] == "offset_na"
    assert record["message"] == "internal: ValueError: could not convert string to float: 'n/a'"
    assert record["file"].endswith("offset_na_s2.tif")
    assert _tiles(load_geomeld(tmp_path / "out", cache_dir=str(tmp_path / "cache"))) == good
    with pytest.raises(QuarantineError, match="internal: ValueError: could not convert"):  # strict stops at it
        build(f"manifest:{manifest}", tmp_path / "strict", BuildOptions(workers=0, progress=False, strict=True))


def test_a_non_empty_out_is_refused_and_overwrite_keeps_nothing_of_the_old_build(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("someone else's folder")
    manifest = _manifest(corpus, tmp_path / "m.csv", [f"a{i}" for i in range(5)])
    args = ["build", "--source", f"manifest:{manifest}", "--out", str(out), "--workers", "0", "--no-progress"]
    assert main(args) == 2
    assert "expected an empty or new folder, found 1 entries (notes.txt)" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 2 and "not a GeoMeld build" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--shard-size", "2"]) == 0 and not (out / "notes.txt").exists()
    assert main(args) == 2  # a finished build is not overwritten by accident either
    smaller = _manifest(corpus, tmp_path / "small.csv", ["b0"])
    report = build(f"manifest:{smaller}", out, BuildOptions(workers=0, progress=False, overwrite=True))
    assert report.built == 1
    assert _tiles(load_geomeld(out, cache_dir=str(tmp_path / "cache"))) == ["b0"]  # no row of the 5-anchor build
    assert len(list((out / "data").rglob("*.parquet"))) == 1
    assert sorted(p.name for p in (out / BUILD_DIR).iterdir()) == ["plan.json", "shard-00000.json"]
    with pytest.raises(UsageError, match=r"either resume .* or overwrite"):
        BuildOptions(resume=True, overwrite=True)


def test_an_unfinished_build_is_refused_by_the_loader_unless_partial_is_asked(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasets import load_dataset

    manifest = _manifest(corpus, tmp_path / "m.csv", [f"p{i}" for i in range(4)])
    real_write = build_module.write_shard
    monkeypatch.setattr(build_module, "write_shard", failing_writes(real_write, 1))
    out = tmp_path / "out"
    with pytest.raises(BuildError):
        build(f"manifest:{manifest}", out, BuildOptions(workers=0, progress=False, shard_size=2))
    with pytest.raises(UsageError, match=rf"expected a completed build \(its marker {MANIFEST_NAME}.*1 finished shard"):
        load_geomeld(out)
    partial = load_geomeld(out, partial=True, cache_dir=str(tmp_path / "cache"))
    assert _tiles(partial) == ["p0", "p1"]
    # plain load_dataset finds no data either (the staging folder is hidden), instead of a JSON split
    with pytest.raises(Exception, match=r"(?i)no .*data files|doesn't contain any data files|empty"):
        load_dataset(str(out.resolve()), cache_dir=str(tmp_path / "cache2"))
    plan_only = tmp_path / "plan_only"
    (plan_only / BUILD_DIR).mkdir(parents=True)
    shutil.copy(out / BUILD_DIR / "plan.json", plan_only / BUILD_DIR / "plan.json")
    with pytest.raises(UsageError, match="a build plan and 0 finished shard"):
        load_geomeld(plan_only)
    with pytest.raises(UsageError, match="no build of `geomeld build`"):
        load_geomeld(tmp_path)


def test_plain_load_dataset_of_two_builds_in_same_named_folders_returns_each_its_rows(
    corpus: Path, tmp_path: Path
) -> None:
    from datasets import load_dataset

    cache = str(tmp_path / "cache")
    seen = []
    for name, ids in (("first", ["x0", "x1"]), ("second", ["y0"])):
        manifest = _manifest(corpus, tmp_path / f"{name}.csv", ids)
        report = build(f"manifest:{manifest}", tmp_path / name / "dataset", FAST)
        card = (tmp_path / name / "dataset" / "README.md").read_text()
        assert f"-*-{report.fingerprint}.parquet" in card
        seen.append(_tiles(load_dataset(str((tmp_path / name / "dataset").resolve()), cache_dir=cache)))
    assert seen == [["x0", "x1"], ["y0"]]


def _raster_chunk(path: Path) -> tuple[int, int]:
    """(start, length) of the sentinel2 column chunk of row group 0 in the file."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.row_group(0).column(i).path_in_schema for i in range(meta.num_columns)]
    column = meta.row_group(0).column(names.index("sentinel2"))
    start = column.dictionary_page_offset or column.data_page_offset
    return start, column.total_compressed_size


def test_bit_flips_in_raster_pages_fail_the_read_and_verify_names_the_file(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    manifest = _manifest(corpus, tmp_path / "m.csv", ["r0", "r1"])
    out = tmp_path / "out"
    build(f"manifest:{manifest}", out, FAST)
    (shard,) = sorted((out / "data").rglob("*.parquet"))
    assert main(["verify", str(out)]) == 0 and "1 data files match" in capsys.readouterr().out
    clean = shard.read_bytes()
    start, length = _raster_chunk(shard)
    rng = np.random.default_rng(0)
    flips = rng.integers(start + length // 10, start + length, 20)  # past the page header, inside the pages
    caught = 0
    for offset in flips:
        broken = bytearray(clean)
        broken[int(offset)] ^= 1 << int(rng.integers(0, 8))
        shard.write_bytes(bytes(broken))
        with pytest.raises(ShardReadError) as err:
            for _ in iter_shard_batches(shard):
                pass
        assert str(shard) in str(err.value) and "row group 0 (tiles r0..r1)" in str(err.value)
        caught += 1
    assert caught == 20
    assert main(["verify", str(out)]) == 1
    assert f"corrupted 1 ({shard.relative_to(out).as_posix()})" in capsys.readouterr().err
    with pytest.raises(ShardReadError, match=str(shard)):  # the loader names the file too
        load_geomeld(out, cache_dir=str(tmp_path / "cache"))
    shard.write_bytes(clean)
    report = verify(out)
    assert report.ok and report.checked == 1


def test_reader_errors_name_the_file_and_the_tile(corpus: Path, tmp_path: Path) -> None:
    manifest = _manifest(corpus, tmp_path / "m.csv", ["t0"])
    out = tmp_path / "out"
    build(f"manifest:{manifest}", out, FAST)
    (shard,) = sorted((out / "data").rglob("*.parquet"))
    row = pq.read_table(shard).to_pylist()[0]
    short = {**row, "sentinel2": row["sentinel2"][:-7]}
    with pytest.raises(ValueError, match=r"tile 't0', layer sentinel2: expected \d+ bytes .*\(short or corrupted"):
        decode_row(short)
    shard.write_bytes(shard.read_bytes()[:-100])  # the footer gone: "Parquet magic bytes not found"
    with pytest.raises(ShardReadError, match=rf"GeoMeld shard {shard}: expected a Parquet file"):
        load_geomeld(out)
    assert json.loads((out / MANIFEST_NAME).read_text())["files"]


def test_the_card_is_hub_metadata_for_the_products_it_holds_without_local_paths(corpus: Path, tmp_path: Path) -> None:
    from huggingface_hub import DatasetCard

    manifest = _manifest(corpus, tmp_path / "m.csv", ["c0", "c1"])
    out = tmp_path / "out"
    build(f"manifest:{manifest}", out, BuildOptions(workers=0, progress=False, caption=True))
    text = (out / "README.md").read_text(encoding="utf-8")
    card = DatasetCard(text)  # the Hub's own parser of the YAML header
    data = card.data.to_dict()
    assert data["license"] == "other" and data["license_name"] == "copernicus-sentinel-data-terms"
    assert data["license_link"].startswith("https://")
    assert [p["layer"] for p in data["product_licenses"]] == ["sentinel2", "sentinel1"]  # only what it holds
    assert data["size_categories"] == ["n<1K"] and data["language"] == ["en"] and data["pretty_name"] == "GeoMeld"
    assert "image-to-text" in data["task_categories"] and len(data["source_datasets"]) == 2
    assert "arXiv:2604.10591" in text and "Contains modified Copernicus Sentinel data" in text
    assert 'load_dataset("geomeld"' in text
    assert str(tmp_path) not in card.text and "/tmp" not in card.text  # no local paths in the body
    assert "ESA WorldCover" not in card.text  # no product the build does not contain


def test_a_shard_rewritten_in_place_keeps_the_manifest_true(corpus: Path, tmp_path: Path) -> None:
    """What `geomeld caption` does: read a finished shard's rows, change captions, write it back."""
    from dataset_scripts.writer import write_shard

    manifest = _manifest(corpus, tmp_path / "m.csv", ["w0"])
    out = tmp_path / "out"
    build(f"manifest:{manifest}", out, FAST)
    (shard,) = sorted((out / "data").rglob("*.parquet"))
    rows = [{**r, "caption": "A field in Denmark."} for r in pq.read_table(shard).to_pylist()]
    before = json.loads((out / MANIFEST_NAME).read_text())["files"]
    write_shard(rows, shard)
    after = json.loads((out / MANIFEST_NAME).read_text())["files"]
    assert before.keys() == after.keys() and before != after
    assert verify(out).ok and main(["verify", str(out)]) == 0


def test_the_pixel_budget_is_configurable_and_checked_before_reading(corpus: Path) -> None:
    from dataset_scripts.align import AlignConfig, align
    from dataset_scripts.sources.manifest import ManifestSource

    (anchor,) = [a for a in ManifestSource(str(corpus / "manifest.csv")).anchors() if a.anchor_id == "good"]
    assert align(anchor).arrays["sentinel2"].shape == (12, 128, 128)  # within the default budget
    with pytest.raises(QuarantineError, match=r"at most 1,000 values .* 12 x 132 x 132") as err:
        align(anchor, AlignConfig(max_read_values=1000))
    assert err.value.reason == "pixel_budget"
