"""Statistics travel with the data: `geomeld pretrain` on a dataset built from the real TerraMesh samples (L2A
and L1C locations) computes its `stats.json` when absent, and every checkpoint's and the release's processor
and the model card carry them with their source; `--resume` skips a truncated newest checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from _build_helpers import TERRAMIND_IDS, terramind_rows, write_manifest
from transformers import AutoProcessor

from dataset_scripts.build import BuildOptions, build
from modeling_geomeld import GeoMeldImageProcessor
from modeling_geomeld.hub.cards import public_text
from modeling_geomeld.modalities import SENTINEL2_BANDS
from modeling_geomeld.training.pretraining import pretrain
from modeling_geomeld.training.statistics import band_shifts, from_stats_json, statistics_markdown

SMALL = {"encoder_config": {"image_size": 64}}


@pytest.fixture(scope="module")
def dataset(terramind_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("stats")
    rows = [r for t in TERRAMIND_IDS for r in terramind_rows(terramind_dir, t)]
    rows += [r for t in TERRAMIND_IDS[:3] for r in terramind_rows(terramind_dir, t, product="l1c", anchor_id=f"{t}-l1c")]
    build(f"manifest:{write_manifest(rows, tmp / 'manifest.csv')}", tmp / "ds", BuildOptions(workers=0, progress=False))
    return tmp / "ds"


def _stats_of(folder: Path) -> tuple[dict, str | None]:
    config = json.loads((folder / "processor_config.json").read_text())
    config = config.get("image_processor", config)
    return config["stats"], config.get("stats_source")


def test_pretrain_writes_the_datasets_statistics_into_every_processor_and_the_card(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not (dataset / "stats.json").exists()
    torch.set_num_threads(2)
    out = tmp_path / "run"
    kwargs = dict(preset="tiny", batch_size=2, save_steps=1, logging_steps=1, config_overrides=SMALL, init_text_from_minilm=False)
    pretrain(str(dataset), str(out), max_steps=2, **kwargs)  # type: ignore[arg-type]

    table = json.loads((dataset / "stats.json").read_text())
    train_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in dataset.glob("data/*/train-*.parquet"))
    assert table["samples"] == train_rows == 6 and {"sentinel2_l1c", "sentinel2_l2a", "sentinel1", "dem"} <= set(table["bands"])
    expected, _ = from_stats_json(table)
    l2a, l1c = expected["sentinel2_l2a"], expected["sentinel2_l1c"]
    assert abs(l1c["B01"][0] - l2a["B01"][0]) > 100  # the two products' statistics are kept apart
    assert "**sentinel2_l1c**" in (dataset / "README.md").read_text()  # the dataset card was refreshed

    for folder in (out / "checkpoints" / "checkpoint-1", out / "checkpoints" / "checkpoint-2", out / "release"):
        stats, source = _stats_of(folder)
        assert stats == expected, folder
        assert source is not None and str((dataset / "stats.json").resolve()) in source and "6 train samples" in source
    released = AutoProcessor.from_pretrained(out / "release", trust_remote_code=True).image_processor
    assert released.crop_mode == "center" and released.stats == expected
    bands, mean, std = released.mean_std("sentinel2_l2a")
    assert bands == list(SENTINEL2_BANDS) and mean[0] == pytest.approx(l2a["B01"][0]) and std[0] == pytest.approx(l2a["B01"][1])

    card = (out / "release" / "README.md").read_text()
    assert "## Normalisation statistics" in card and public_text(released.stats_source) in card  # no local path in a card
    assert f"| B01 | {l2a['B01'][0]:.6g} | {l2a['B01'][1]:.6g} |" in card
    assert card.index("**sentinel2_l1c**") < card.index("**sentinel2_l2a**")

    # a crash left a truncated newest checkpoint: --resume takes checkpoint-1 and says why
    weights = out / "checkpoints" / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    capsys.readouterr()
    resumed = pretrain(str(dataset), str(out), max_steps=3, resume=True, **kwargs)  # type: ignore[arg-type]
    said = capsys.readouterr().err
    assert f"resuming from {out / 'checkpoints' / 'checkpoint-1'}" in said and "checkpoint-2 (model.safetensors: header says" in said
    assert resumed["global_step"] == 3


def test_fine_tuning_data_far_from_the_checkpoints_statistics_is_named(terramind_dir: Path) -> None:
    from dataset_scripts.terramind import S2L1C_BANDS, S2L2A_BANDS, read_all

    data = read_all(terramind_dir, list(TERRAMIND_IDS))
    l2a = data["sentinel2_l2a"].astype(np.float64)
    names = list(S2L2A_BANDS)
    stats = {"sentinel2_l2a": {b: [float(l2a[:, i].mean()), float(l2a[:, i].std())] for i, b in enumerate(names)}}
    checkpoint = GeoMeldImageProcessor(input_modalities={"sentinel2": []}, stats=stats, stats_source="test", crop_size=None)

    def shifts(key: str, array: np.ndarray, bands: list[str]) -> dict[str, float]:
        batch = checkpoint({key: array}, band_names={key: bands})
        found = band_shifts(batch["pixel_values"], batch["valid_mask"], checkpoint, checkpoint)
        return {s.band: s.ratio for s in found}

    assert shifts("sentinel2_l2a", data["sentinel2_l2a"], names) == {}  # its own data: nothing to say
    l1c = shifts("sentinel2_l2a", data["sentinel2_l1c"], list(S2L1C_BANDS))  # L1C fed as if it were L2A
    assert set(l1c) == {"B01", "B09"} and l1c["B01"] > 1.5 and l1c["B09"] < 0.67
    scaled = shifts("sentinel2_l2a", data["sentinel2_l2a"] / 10000.0, names)  # reflectance 0..1
    assert set(scaled) == set(names) and all(r < 1e-3 for r in scaled.values())
    text = statistics_markdown(checkpoint)
    assert "Source: test." in text and "**sentinel2_l2a**" in text


def test_finetune_statistics_from_a_built_dataset_are_its_stats_json(dataset: Path) -> None:
    from modeling_geomeld.training.finetune_setup import choose_statistics

    checkpoint = GeoMeldImageProcessor(input_modalities={"sentinel2": []}, crop_size=None)
    chosen = choose_statistics(f"dataset:{dataset}", "terramind-landcover", None, checkpoint)
    expected, _ = from_stats_json(json.loads((dataset / "stats.json").read_text()))
    assert chosen.choice == "dataset" and chosen.processor.stats == expected and checkpoint.stats == {}
    assert chosen.record()["source"].endswith("(6 train samples)")
