"""Downstream tasks as in-memory `TaskData` splits for `geomeld finetune`.

* `terramind-landcover`: per-pixel land cover (Dynamic World classes) from Sentinel-2 L2A on the real
  TerraMesh samples, cut into non-overlapping crops; whole locations are held out for testing.
* `geobench:<task>`: a GEO-Bench v1.0 task read by `dataset_scripts.geobench` (data root from
  `--data-root` or `GEO_BENCH_DIR`).
* `labels:<manifest>`: the user's own labelled GeoTIFFs (`dataset_scripts.labels`), built through the builder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from modeling_geomeld.modalities import get_modality
from modeling_geomeld.training.finetuning import TaskData

#: locations held out of training in `terramind-landcover` (whole locations, never neighbouring crops)
# Tanzania (grass, crops) and Denmark (crops, grass, trees, built): every test class occurs in training
# (Brazil, Chile, Hudson Bay), so the split measures transfer to new places, not unseen classes
TERRAMIND_TEST_LOCATIONS = ("38D_378R_2_3", "637U_59R_1_3")


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
    #: a "#rrggbb" colour per label (None where the class list gives none); None when the task has no colours
    label_colors: list[str | None] | None = None


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


def geobench_task(
    name: str, processor: Any, root: str | Path | None = None, partition: str = "default", test_split: str = "test"
) -> Task:
    """A GEO-Bench v1.0 task as `Task`: the modalities the model takes, by band name, through the processor
    (registry statistics; B10 dropped by name for 12-band models). Root from `root` or `GEO_BENCH_DIR`."""
    from .geobench import GeoBenchTask

    gb = GeoBenchTask.open(name, root)
    preset = gb.preset
    served = [m for m in gb.bands if m in processor.input_modalities]
    if not served:
        raise ValueError(
            f"{preset.name} provides {list(gb.bands)} but the model takes {list(processor.input_modalities)}; "
            "fine-tune a model configured with the task's modalities"
        )
    splits = {}
    for split in ("train", test_split):
        samples = list(gb.iter_samples(split, partition))
        if not samples:
            raise ValueError(f"{preset.name}/{partition} has no {split} samples")
        images = {m: np.stack([s[m] for s in samples]) for m in served}
        pixel_values, valid = _process(processor, images, {m: list(gb.bands[m]) for m in served})
        labels = torch.as_tensor(np.stack([np.asarray(s["label"]) for s in samples]))
        if preset.label_kind != "multi_label":
            labels = labels.long()
        splits[split] = TaskData(pixel_values, labels, valid)
    kinds = {"segmentation": "segmentation", "single_label": "single_label", "multi_label": "multi_label"}
    metric = {"mean_iou": "miou"}.get(preset.metric, preset.metric)
    return Task(
        name=f"geobench:{preset.name}",
        kind=kinds[preset.label_kind],  # type: ignore[arg-type]
        metric=metric,
        num_labels=preset.num_classes,
        label_names=list(gb.label_names),  # task_specs.pkl's class names, read statically
        train=splits["train"],
        test=splits[test_split],
        input_modalities={m: list(gb.bands[m]) for m in served},
        description=f"GEO-Bench {preset.name} ({preset.label_kind}, {preset.num_classes} classes, partition {partition})",
    )


def labels_task(
    path: str | Path,
    processor: Any,
    *,
    classes: str | Path | None = None,
    out: str | Path | None = None,
    progress: bool = False,
) -> Task:
    """A task from the user's labelled manifest (:mod:`dataset_scripts.labels`), built through the real builder
    into ``out`` (default: a hidden folder beside the manifest), split by the manifest's `split` column or by
    spatial blocks. Writes ``labels_report.json`` (splits, blocks, class counts, quarantined anchors) into ``out``."""
    import json

    from modeling_geomeld.modalities import reorder_bands, resolve

    from .errors import UsageError
    from .labels import build_labelled, class_counts, read_labelled_manifest

    manifest = read_labelled_manifest(path, classes)
    root = Path(out) if out is not None else manifest.path.parent / f".geomeld-labels-{manifest.path.stem}"
    samples = build_labelled(manifest, root, progress=progress)
    if not samples.anchor_ids:
        reasons = "; ".join(q["message"] for q in samples.quarantined[:3])
        raise UsageError(f"labelled manifest {manifest.path}: expected usable samples, found every anchor quarantined ({reasons})")
    keys = set.intersection(*(set(im) for im in samples.images))
    served = sorted(k for k in keys if resolve(k)[0].name in processor.input_modalities)
    if not served:
        raise UsageError(
            f"labelled manifest {manifest.path}: the samples hold {sorted(keys)} but the model takes "
            f"{list(processor.input_modalities)}; fine-tune a model configured with the manifest's modalities"
        )
    names = {k: list(samples.bands[0][k]) for k in served}
    n = len(manifest.classes)
    splits: dict[str, TaskData] = {}
    for split in ("train", "test"):
        index = [i for i, s in enumerate(samples.splits) if s == split]
        if not index:
            raise UsageError(
                f"labelled manifest {manifest.path}: expected {split} samples, found none "
                f"(splits: {dict(zip(*np.unique(samples.splits, return_counts=True), strict=True))})"
            )
        images = {
            k: np.stack([reorder_bands(samples.images[i][k], samples.bands[i][k], names[k], modality=k) for i in index])
            for k in served
        }
        pixel_values, valid = _process(processor, images, names)
        if manifest.kind == "segmentation":
            labels = torch.from_numpy(np.stack([samples.labels[i] for i in index]))
            grid = next(iter(pixel_values.values())).shape[-2:]
            if tuple(labels.shape[-2:]) != tuple(grid):
                raise ValueError(f"label maps are {tuple(labels.shape[-2:])} px but the processor returned {tuple(grid)} px")
        elif manifest.kind == "multi_label":
            labels = torch.zeros(len(index), n)
            for row, i in enumerate(index):
                labels[row, samples.labels[i]] = 1.0
        else:
            labels = torch.tensor([samples.labels[i][0] for i in index], dtype=torch.long)
        splits[split] = TaskData(pixel_values, labels, valid)
    counts = class_counts(samples.labels, manifest.kind, n)
    report = {
        "manifest": str(manifest.path), "kind": manifest.kind, "classes": list(manifest.classes.names),
        "class_counts": counts, "splits": dict(zip(samples.anchor_ids, samples.splits, strict=True)),
        "blocks": {a: list(b) for a, b in samples.blocks.items()},
        "block_size_m": None if manifest.splits else manifest.settings.block_size_m,
        "quarantined": samples.quarantined,
    }  # fmt: skip
    (root / "labels_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    how = "the manifest's split column" if manifest.splits else f"spatial blocks of {manifest.settings.block_size_m:g} m"
    return Task(
        name=f"labels:{manifest.path.name}",
        kind=manifest.kind,
        metric={"segmentation": "miou", "single_label": "accuracy", "multi_label": "micro_f1"}[manifest.kind],
        num_labels=n,
        label_names=list(manifest.classes.names),
        label_colors=list(manifest.classes.colors) if any(manifest.classes.colors) else None,
        train=splits["train"],
        test=splits["test"],
        input_modalities={resolve(k)[0].name: names[k] for k in served},
        description=(
            f"{manifest.kind} on {manifest.path.name}: {len(samples.anchor_ids)} samples built, "
            f"{len(samples.quarantined)} quarantined (see {root / 'labels_report.json'}), split by {how}"
        ),
    )
