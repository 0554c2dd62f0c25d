"""`geomeld pretrain` on a dataset built from the real TerraMesh samples: the release folder (weights, code,
processor, card; no pickles) apart from the resumable checkpoints, and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _build_helpers import TERRAMIND_IDS, terramind_rows, write_manifest
from transformers import AutoImageProcessor, AutoModel, AutoProcessor, TrainerCallback

from dataset_scripts.build import BuildOptions, build
from modeling_geomeld import GeoMeldImageProcessor, GeoMeldModel, GeoMeldProcessor
from modeling_geomeld.hub import foreign_files, read_card
from modeling_geomeld.training.pretraining import pretrain

SMALL = {"encoder_config": {"image_size": 64}}


@pytest.fixture(scope="module")
def dataset(terramind_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pretrain")
    rows = [r for t in TERRAMIND_IDS for r in terramind_rows(terramind_dir, t)]
    manifest = write_manifest(rows, tmp / "manifest.csv")
    build(f"manifest:{manifest}", tmp / "ds", BuildOptions(workers=0, progress=False))
    return tmp / "ds"


class StopAt(TrainerCallback):
    """Stops training after `step` as a kill would, once that step's checkpoint is written."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.step:
            control.should_training_stop = True


def _run(dataset: Path, out: Path, **kwargs: Any) -> dict[str, Any]:
    torch.set_num_threads(2)
    return pretrain(
        str(dataset), str(out), preset="tiny", max_steps=4, batch_size=2, save_steps=2, logging_steps=1,
        config_overrides=SMALL, init_text_from_minilm=False, **kwargs,
    )  # fmt: skip


def test_pretrain_writes_a_loadable_release_and_resume_matches(dataset: Path, tmp_path: Path) -> None:
    full = _run(dataset, tmp_path / "full")
    assert full["global_step"] == 4
    parts = full["history"][-1]
    assert {"loss", "mpmae_loss", "jepa_loss", "mpmae/sentinel2", "mpmae/sentinel1", "mpmae/dynamic_world"} <= set(parts)

    out = full["release"]
    assert out == tmp_path / "full" / "release"
    # optimizer, scheduler and RNG state stay with the resumable checkpoints, apart from the release
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert (tmp_path / "full" / "checkpoints" / "checkpoint-4" / "optimizer.pt").is_file()
    assert all(p.is_file() and p.suffix in {".safetensors", ".json", ".md", ".py", ".txt", ".png", ".csv"} for p in out.rglob("*"))
    assert foreign_files(out) == [] and (out / "model.safetensors").is_file()
    meta, body = read_card(out) or ({}, "")
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-feature-extraction"  # no ITC here
    assert meta["geomeld"] == {"kind": "pretrained", "pipeline_check": True, "objectives": ["MP-MAE", "JEPA"], "data": "ds", "steps": 4, "preset": "tiny"}
    assert meta["license"] == "other" and "datasets" not in meta and "model-index" not in meta  # no evaluation was run
    assert "**Pipeline check, not a model.**" in body and "pretrained with MP-MAE, JEPA on `ds` for 4 steps" in body
    assert str(tmp_path) not in (out / "README.md").read_text() and "![training losses by optimiser step](loss.png)" in body
    assert (out / "log.csv").is_file() and (out / "loss.png").is_file()
    model = AutoModel.from_pretrained(out, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    assert isinstance(model, GeoMeldModel) and isinstance(processor, GeoMeldProcessor)
    assert isinstance(AutoImageProcessor.from_pretrained(out, trust_remote_code=True), GeoMeldImageProcessor)

    killed = _run(dataset, tmp_path / "resumed", callbacks=[StopAt(2)])
    assert killed["global_step"] == 2
    resumed = _run(dataset, tmp_path / "resumed", resume=True)
    assert resumed["global_step"] == 4
    assert resumed["history"][-1]["loss"] == pytest.approx(parts["loss"], abs=1e-4)


def test_build_with_captions_stage(terramind_dir: Path, tmp_path: Path) -> None:
    """The captioning stage of the build fills every row's caption with verified text."""
    from datasets import load_dataset

    rows = [r for t in TERRAMIND_IDS for r in terramind_rows(terramind_dir, t)]
    manifest = write_manifest(rows, tmp_path / "manifest.csv")
    build(f"manifest:{manifest}", tmp_path / "ds", BuildOptions(workers=0, progress=False, caption=True))
    ds = load_dataset(str(tmp_path / "ds"))
    captions = {r["tile_id"]: r["caption"] for split in ds.values() for r in split}
    assert len(captions) == 5 and all(len(c) > 20 for c in captions.values())
    assert any(w in captions["609U_541L_3_0"].lower() for w in ("snow", "ice"))


def test_same_named_dataset_folders_never_share_a_cache(terramind_dir: Path, tmp_path: Path) -> None:
    """datasets 5 caches local folders by name and configs; load_geomeld keys the cache by content."""
    from dataset_scripts.loading import load_geomeld

    ids = {}
    for name, tiles in (("a", TERRAMIND_IDS[:2]), ("b", TERRAMIND_IDS[2:])):
        rows = [r for t in tiles for r in terramind_rows(terramind_dir, t)]
        manifest = write_manifest(rows, tmp_path / f"{name}.csv")
        build(f"manifest:{manifest}", tmp_path / name / "dataset", BuildOptions(workers=0, progress=False))
        ds = load_geomeld(tmp_path / name / "dataset", cache_dir=tmp_path / "cache")
        ids[name] = {r["tile_id"] for split in ds.values() for r in split}
    assert ids["a"] == set(TERRAMIND_IDS[:2]) and ids["b"] == set(TERRAMIND_IDS[2:])
