"""Downstream tasks as in-memory `TaskData` splits for `geomeld finetune`.

* `terramind-landcover`: per-pixel land cover (Dynamic World classes) from Sentinel-2 L2A on the real
  TerraMesh samples, cut into non-overlapping crops; whole locations are held out for testing.
* `geobench:<task>`: a GEO-Bench v1.0 task read by `dataset_scripts.geobench` (data root from
  `--data-root` or `GEO_BENCH_DIR`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from modeling_geomeld.finetuning import TaskData
from modeling_geomeld.modalities import get_modality

#: locations held out of training in `terramind-landcover` (whole locations, never neighbouring crops)
TERRAMIND_TEST_LOCATIONS = ("433D_629L_3_1", "637U_59R_1_3")  # Chile, Denmark


@dataclass
class Task:
    name: str
    kind: Literal["segmentation", "single_label", "multi_label"]
    metric: str
    num_labels: int
    label_names: list[str]
    train: TaskData
    test: TaskData
    input_modalities: dict[str, list[str]]
    description: str = ""


def _process(processor: Any, images: dict[str, np.ndarray], band_names: dict[str, list[str]]) -> tuple[dict, dict]:
    batch = processor(images, band_names=band_names)
    return batch["pixel_values"], batch["valid_mask"]


def terramind_landcover(root: str | Path, processor: Any, crop: int = 64) -> Task:
    """Land-cover segmentation on the five real locations: 3 for training, Chile and Denmark held out."""
    from .terramind import LOCATIONS, S2L2A_BANDS, read_all, split_into_crops

    dw = get_modality("dynamic_world")
    splits = {}
    for split, tiles in (
        ("train", [t for t in LOCATIONS if t not in TERRAMIND_TEST_LOCATIONS]),
        ("test", list(TERRAMIND_TEST_LOCATIONS)),
    ):
        data = read_all(root, tiles)
        s2 = split_into_crops(data["sentinel2_l2a"], crop)
        labels = dw.codes_to_indices(split_into_crops(data["dynamic_world"], crop)[:, 0])
        pixel_values, valid = _process(processor, {"sentinel2_l2a": s2}, {"sentinel2_l2a": list(S2L2A_BANDS)})
        splits[split] = TaskData(pixel_values, torch.from_numpy(labels), valid)
    return Task(
        name="terramind-landcover",
        kind="segmentation",
        metric="miou",
        num_labels=dw.num_classes,
        label_names=list(dw.class_names),
        train=splits["train"],
        test=splits["test"],
        input_modalities={"sentinel2": list(S2L2A_BANDS)},
        description=f"Dynamic World classes from S2 L2A, {crop} px crops; test locations {TERRAMIND_TEST_LOCATIONS}",
    )


def majority_baseline(task: Task) -> torch.Tensor:
    """Logits of the majority-class predictor (the training split's most frequent label), for the test split."""
    labels = task.train.labels
    if task.kind == "multi_label":
        prior = labels.float().mean(0)
        return torch.log(prior.clamp(1e-6, 1 - 1e-6) / (1 - prior).clamp(1e-6, 1)).expand(len(task.test), -1)
    known = labels[labels >= 0]
    majority = int(torch.bincount(known.flatten(), minlength=task.num_labels).argmax())
    shape = (len(task.test), task.num_labels, *task.test.labels.shape[1:])
    logits = torch.zeros(shape)
    logits[:, majority] = 1.0
    return logits
