"""Fine-tuning on the real land-cover maps of the TerraMesh samples, whole locations held out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dataset_scripts.tasks import TERRAMIND_TEST_LOCATIONS, majority_baseline, terramind_landcover
from modeling_geomeld import GeoMeldConfig, GeoMeldForSemanticSegmentation, GeoMeldImageProcessor
from modeling_geomeld.training.finetune_cli import score_fn
from modeling_geomeld.training.finetuning import run_seeds


@pytest.fixture(scope="module")
def task(terramind_dir: Path):  # type: ignore[no-untyped-def]
    processor = GeoMeldImageProcessor.from_model_config(GeoMeldConfig.from_preset("tiny"), crop_size=None)
    return terramind_landcover(terramind_dir, processor)


def test_task_holds_out_whole_locations(task) -> None:  # type: ignore[no-untyped-def]
    assert len(task.train) == 27 and len(task.test) == 18  # 3 + 2 locations x 9 crops of 64 px
    assert set(TERRAMIND_TEST_LOCATIONS).isdisjoint({"282D_485L_3_3", "433D_629L_3_1", "609U_541L_3_0"})
    test_classes = set(task.test.labels.unique().tolist()) - {-1}
    train_classes = set(task.train.labels.unique().tolist()) - {-1}
    assert test_classes <= train_classes  # every held-out class was seen in training


@pytest.mark.parametrize("mode", ["linear", "lora"])
def test_segmentation_head_learns_beyond_the_majority_class(task, mode: str) -> None:  # type: ignore[no-untyped-def]
    torch.set_num_threads(2)
    score = score_fn(task)
    baseline = score(majority_baseline(task), task.test.labels)
    id2label = dict(enumerate(task.label_names))

    def build() -> GeoMeldForSemanticSegmentation:
        cfg = GeoMeldConfig.from_preset("tiny", id2label=id2label, label2id={v: k for k, v in id2label.items()})
        return GeoMeldForSemanticSegmentation(cfg)

    result = run_seeds(build, mode, task.train, task.test, score, seeds=[0], steps=40, batch_size=8, lr=3e-3)  # type: ignore[arg-type]
    run = result["per_seed"][0]
    assert run["final_loss"] < run["first_loss"]
    assert run["miou"] > baseline["miou"], (run, baseline)
    assert run["pixel_accuracy"] > baseline["pixel_accuracy"]
    if mode == "lora":
        assert run["trainable_share"] < 0.5
