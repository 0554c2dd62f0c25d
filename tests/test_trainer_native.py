"""The stock `transformers.Trainer` (no subclass) trains, evaluates and predicts with GeoMeld's task heads on
real TerraMesh crops, through the exported collators: from a `datasets.Dataset`, from a built GeoMeld
dataset's rows, and from processed `TaskData` rows; FLOP counting on dict inputs; layer-wise lr decay groups
in the Trainer's optimizer; the collators' handling of absent modalities and of bad bands and labels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _tiny import tiny_config
from transformers import AutoImageProcessor, Trainer, TrainingArguments

from dataset_scripts.terramind import S2L2A_BANDS, read_all, split_into_crops
from modeling_geomeld import (
    GeoMeldForImageClassification,
    GeoMeldForSemanticSegmentation,
    GeoMeldImageProcessor,
)
from modeling_geomeld.modalities import get_modality
from modeling_geomeld.training.collators import (
    ClassificationCollator,
    GeoMeldDataCollator,
    PixelValues,
    SegmentationCollator,
)
from modeling_geomeld.training.finetuning import TaskData, finetune_trainer, llrd_param_groups, prepare_model

CROP = 32  # two 16 px patches a side: the smallest grid the tiny encoder takes
TILES = ["282D_485L_3_3", "38D_378R_2_3", "637U_59R_1_3"]  # Brazil, Tanzania, Denmark


def _config(**overrides: Any) -> Any:
    inputs = {"sentinel2": list(S2L2A_BANDS), "sentinel1": ["VV", "VH"]}
    return tiny_config(encoder_config={"input_modalities": inputs, "image_size": CROP}, **overrides)


@pytest.fixture(scope="module")
def crops(terramind_dir: Path) -> dict[str, Any]:
    """Real 32 px crops (4 per location) of S2 L2A and S1 with their Dynamic World land cover as labels:
    per-pixel classes, the majority class and the classes covering >= 10 % of the crop."""
    data = read_all(terramind_dir, TILES)
    dw = get_modality("dynamic_world")
    pick = np.concatenate([np.arange(4) * 12 + 49 * i for i in range(len(TILES))])  # spread over each tile
    s2 = split_into_crops(data["sentinel2_l2a"], CROP)[pick]
    s1 = split_into_crops(data["sentinel1"], CROP)[pick].astype(np.float32)
    seg = dw.codes_to_indices(split_into_crops(data["dynamic_world"], CROP)[pick, 0])
    counts = np.stack([np.bincount(s[s >= 0], minlength=dw.num_classes) for s in seg])
    return {
        "s2": s2, "s1": s1, "seg": seg, "majority": counts.argmax(1),
        "present": (counts / counts.sum(1, keepdims=True) >= 0.1).astype(np.int64), "num_classes": dw.num_classes,
    }  # fmt: skip


def _dataset(crops: dict[str, Any], label: str) -> Any:
    """A `datasets.Dataset` as a user writes one: a column per modality, its band names, a label column."""
    from datasets import Dataset

    n = len(crops["s2"])
    return Dataset.from_dict(
        {
            "sample_name": [f"crop-{i}" for i in range(n)],
            "sentinel2": list(crops["s2"]),
            "sentinel2_bands": [list(S2L2A_BANDS)] * n,
            "sentinel1": list(crops["s1"]),
            "sentinel1_bands": [["VV", "VH"]] * n,
            "label": list(crops[label]),
        }
    ).with_format("numpy")


def _args(tmp_path: Path, steps: int = 3, **kwargs: Any) -> TrainingArguments:
    """What a user passes the stock Trainer for GeoMeld rows (remove_unused_columns=False: the modality
    columns are not forward arguments)."""
    settings: dict[str, Any] = {
        "output_dir": str(tmp_path), "max_steps": steps, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
        "learning_rate": 3e-3, "logging_steps": 1, "report_to": "none", "save_strategy": "no",
        "remove_unused_columns": False, "use_cpu": True, "seed": 0, "disable_tqdm": True,
    }  # fmt: skip
    return TrainingArguments(**{**settings, **kwargs})


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if n in before and not torch.equal(before[n], p.detach())}


def _processor(config: Any) -> GeoMeldImageProcessor:
    return GeoMeldImageProcessor.from_model_config(config, crop_size=None)


@pytest.mark.parametrize("multi", [False, True], ids=["single-label", "multi-label"])
def test_stock_trainer_trains_classification_on_a_datasets_dataset(
    crops: dict[str, Any], tmp_path: Path, multi: bool
) -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    extra = {"problem_type": "multi_label_classification"} if multi else {}
    model = GeoMeldForImageClassification(_config(num_labels=crops["num_classes"], **extra))
    processor = _processor(model.config)
    ds = _dataset(crops, "present" if multi else "majority")
    collator = ClassificationCollator.for_model(model, processor)
    assert collator.multi_label is multi
    before = _snapshot(model)
    trainer = Trainer(
        model=model, args=_args(tmp_path), train_dataset=ds, eval_dataset=ds, data_collator=collator
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert {"classifier.weight", "geomeld.encoder.stems.sentinel2.conv.weight"} <= _changed(before, model)
    assert trainer.state.total_flos > 0  # the Trainer's FLOP bookkeeping ran on the dict inputs
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"])
    out = trainer.predict(ds)
    assert out.predictions.shape == (len(ds), crops["num_classes"])
    expected = crops["present"] if multi else crops["majority"]
    assert np.array_equal(out.label_ids, expected)  # the collator's labels, in dataset order


def test_stock_trainer_trains_segmentation_and_its_loss_falls(crops: dict[str, Any], tmp_path: Path) -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = GeoMeldForSemanticSegmentation(_config(num_labels=crops["num_classes"]))
    ds = _dataset(crops, "seg").select(range(4))  # one batch, seen every step: its loss must fall
    before = _snapshot(model)
    trainer = Trainer(
        model=model, args=_args(tmp_path, steps=4, learning_rate=1e-2), train_dataset=ds, eval_dataset=ds,
        data_collator=SegmentationCollator.for_model(model, _processor(model.config)),
    )  # fmt: skip
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    assert "decode_head.classifier.weight" in _changed(before, model)
    out = trainer.predict(ds)
    assert out.predictions.shape == (4, crops["num_classes"], CROP, CROP)
    assert np.array_equal(out.label_ids, np.where(crops["seg"][:4] < 0, -1, crops["seg"][:4]))
    assert math.isfinite(trainer.evaluate()["eval_loss"])


def test_floating_point_ops_on_dict_inputs(crops: dict[str, Any], tmp_path: Path) -> None:
    """The stock Trainer's estimate reads `inputs["pixel_values"].numel()`; the model's own estimate (which
    `GeoMeldTrainer` uses) counts the same pixels: B x H x W per modality."""
    from modeling_geomeld.training.pretraining import GeoMeldTrainer

    model = GeoMeldForImageClassification(_config(num_labels=3))
    batch = ClassificationCollator(_processor(model.config))(
        [{"sentinel2": crops["s2"][i], "sentinel1": crops["s1"][i], "label": 1} for i in range(2)]
    )
    assert isinstance(batch["pixel_values"], PixelValues)
    expected = 6 * (2 * 2 * CROP * CROP) * model.num_parameters(exclude_embeddings=True)
    stock = Trainer(model=model, args=_args(tmp_path)).floating_point_ops(batch)
    assert isinstance(stock, int) and stock == expected > 0
    assert model.floating_point_ops(batch) == expected
    plain = {
        **batch,
        "pixel_values": dict(batch["pixel_values"]),
    }  # a dict built by hand, not by the collator
    assert model.floating_point_ops(plain) == expected
    assert GeoMeldTrainer(model=model, args=_args(tmp_path)).floating_point_ops(plain) == expected


def test_segmentation_from_a_built_geomeld_dataset(terramind_dir: Path, tmp_path: Path) -> None:
    """Rows of `load_geomeld` (layer bytes + shapes + band names) train a segmentation head on the built
    dataset's own Dynamic World layer as labels."""
    from _build_helpers import terramind_rows, write_manifest

    from dataset_scripts.build import BuildOptions, build
    from dataset_scripts.loading import load_geomeld

    rows = [r for t in TILES[:2] for r in terramind_rows(terramind_dir, t)]
    build(
        f"manifest:{write_manifest(rows, tmp_path / 'm.csv')}",
        tmp_path / "ds",
        BuildOptions(workers=0, progress=False),
    )
    ds = load_geomeld(tmp_path / "ds", split="train")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    dw = get_modality("dynamic_world")
    cfg = tiny_config(
        num_labels=dw.num_classes, encoder_config={"image_size": 128}
    )  # S2, S1 and DEM with slope
    model = GeoMeldForSemanticSegmentation(cfg)
    collator = SegmentationCollator.for_model(model, _processor(cfg), label_layer="dynamic_world")
    batch = collator([ds[0]])
    assert set(batch["pixel_values"]) == {"sentinel2", "sentinel1", "dem"}
    assert batch["labels"].shape == (1, 128, 128) and batch["labels"].dtype == torch.long
    assert set(batch["labels"].unique().tolist()) - {-1} <= set(range(dw.num_classes))
    before = _snapshot(model)
    trainer = Trainer(model=model, args=_args(tmp_path / "out", steps=1, per_device_train_batch_size=1), train_dataset=ds, data_collator=collator)  # fmt: skip
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["loss"]) and _changed(before, model)


@pytest.mark.parametrize("task", ["m-bigearthnet", "m-cashew-plant"])
def test_stock_trainer_on_a_geobench_task_dataset(tmp_path: Path, task: str) -> None:
    """`GeoBenchTask.dataset` rows (plain lists, as datasets returns them unformatted) with the task's band
    names: multi-label BigEarthNet and cashew-plant segmentation, whose B10 the 12-band model drops by name."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    from make_geobench import make_geobench

    from dataset_scripts.geobench import GeoBenchTask

    gb = GeoBenchTask.open(task, make_geobench(tmp_path / "geobench", size=CROP))
    ds = gb.dataset("train", cache_dir=str(tmp_path / "cache"))
    torch.manual_seed(0)
    n = gb.preset.num_classes
    if gb.preset.label_kind == "segmentation":
        model: Any = GeoMeldForSemanticSegmentation(_config(num_labels=n))
        collator: Any = SegmentationCollator.for_model(model, _processor(model.config), band_names=gb.bands)
    else:
        model = GeoMeldForImageClassification(
            _config(num_labels=n, problem_type="multi_label_classification")
        )
        collator = ClassificationCollator.for_model(model, _processor(model.config), band_names=gb.bands)
    trainer = Trainer(
        model=model, args=_args(tmp_path / "out", steps=1), train_dataset=ds, data_collator=collator
    )
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["loss"])
    labels = collator([ds[0], ds[1]])["labels"]
    assert labels.dtype == (torch.long if gb.preset.label_kind == "segmentation" else torch.float32)


def test_finetune_trainer_hands_the_llrd_groups_to_the_trainer(crops: dict[str, Any], tmp_path: Path) -> None:
    """`geomeld finetune --mode full`'s optimizer: every layer-wise decayed lr reaches the Trainer's AdamW and
    the schedule scales them all alike; the saved folder carries the processor."""
    torch.manual_seed(0)
    model = GeoMeldForImageClassification(_config(num_labels=crops["num_classes"]))
    processor = _processor(model.config)
    batch = ClassificationCollator(processor)(
        [{"sentinel2": crops["s2"][i], "label": int(crops["majority"][i])} for i in range(8)]
    )
    data = TaskData(dict(batch["pixel_values"]), batch["labels"], batch["valid_mask"])
    model, groups = prepare_model(model, "full", lr=1e-3, layer_decay=0.5)
    expected = sorted(g["lr"] for g in llrd_param_groups(model, 1e-3, 0.5, 0.05))
    trainer = finetune_trainer(
        model,
        groups,
        data,
        steps=4,
        batch_size=4,
        seed=0,
        output_dir=tmp_path,
        warmup_steps=0,
        processor=processor,
    )
    trainer.train()
    optimizer = trainer.optimizer
    assert sorted(g["initial_lr"] for g in optimizer.param_groups) == pytest.approx(expected)
    assert len(set(expected)) == 7  # 0.5^6 (stems) .. 0.5^0 (final norm and the head) ...
    factors = {round(g["lr"] / g["initial_lr"], 9) for g in optimizer.param_groups}
    assert len(factors) == 1 and 0 <= factors.pop() < 1  # ... one cosine factor for all of them
    lr_of = {id(p): g["initial_lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lr_of[id(model.classifier.weight)] == pytest.approx(1e-3)
    assert lr_of[id(model.geomeld.encoder.stems["sentinel2"].conv.weight)] == pytest.approx(1e-3 * 0.5**6)
    trainer.save_model(str(tmp_path / "saved"))
    reloaded = AutoImageProcessor.from_pretrained(tmp_path / "saved", trust_remote_code=True)
    assert reloaded.input_modalities == processor.input_modalities
    assert not list(tmp_path.glob("checkpoint-*"))  # no checkpoints unless asked


def test_geomeld_trainer_runs_a_classification_step(crops: dict[str, Any], tmp_path: Path) -> None:
    """The pretraining Trainer no longer reads MP-MAE fields from outputs that have none."""
    from modeling_geomeld.training.pretraining import GeoMeldTrainer

    torch.manual_seed(0)
    model = GeoMeldForImageClassification(_config(num_labels=crops["num_classes"]))
    trainer = GeoMeldTrainer(
        model=model, args=_args(tmp_path, steps=1), train_dataset=_dataset(crops, "majority"),
        data_collator=ClassificationCollator.for_model(model, _processor(model.config)),
    )  # fmt: skip
    trainer.train()
    logged = trainer.state.log_history[0]
    assert math.isfinite(logged["loss"]) and not any(k.startswith("mpmae") for k in logged)


# ---------------------------------------------------------------------------------------------------------
# the collators on their own


def test_absent_modality_is_zeros_with_a_false_mask(crops: dict[str, Any]) -> None:
    processor = _processor(_config())
    rows = [
        {"sentinel2": crops["s2"][0], "sentinel1": crops["s1"][0], "label": 2},
        {"sentinel2": crops["s2"][1], "sentinel1": None, "label": 0},  # a null column, as datasets gives it
        {"sentinel2": crops["s2"][2], "label": 1},  # no column at all
    ]
    batch = ClassificationCollator(processor, num_labels=4)(rows)
    s1, mask = batch["pixel_values"]["sentinel1"], batch["valid_mask"]["sentinel1"]
    assert s1.shape == (3, 2, CROP, CROP) and mask.shape == (3, CROP, CROP) and mask.dtype == torch.bool
    assert mask[0].all() and not mask[1:].any() and torch.equal(s1[1:], torch.zeros(2, 2, CROP, CROP))
    alone = processor({"sentinel1": crops["s1"][0]}, band_names={"sentinel1": ["VV", "VH"]})
    assert torch.equal(
        s1[0], alone["pixel_values"]["sentinel1"][0]
    )  # the processor's normalisation, unchanged
    assert torch.equal(batch["labels"], torch.tensor([2, 0, 1]))
    out = GeoMeldForImageClassification(_config(num_labels=4)).eval()(**batch)
    assert torch.isfinite(out.logits).all()


def test_band_names_are_read_by_name(crops: dict[str, Any]) -> None:
    """A file in another band order gives the same batch when its band names say so."""
    processor = _processor(_config())
    order = np.arange(12)[::-1]
    reversed_bands = [S2L2A_BANDS[i] for i in order]
    a = GeoMeldDataCollator(processor)(
        [{"sentinel2": crops["s2"][0], "sentinel2_bands": ",".join(S2L2A_BANDS)}]
    )
    b = GeoMeldDataCollator(processor, band_names={"sentinel2": reversed_bands})(
        [{"sentinel2": crops["s2"][0][order]}]
    )
    assert torch.equal(a["pixel_values"]["sentinel2"], b["pixel_values"]["sentinel2"]) and "labels" not in a


def test_wrong_band_name_and_missing_modality_say_what_was_expected(crops: dict[str, Any]) -> None:
    processor = _processor(_config())
    bands = ["B8" if b == "B08" else b for b in S2L2A_BANDS]
    with pytest.raises(
        ValueError,
        match=r"row 0 \(crop-0\): sentinel2 input lacks bands \['B08'\]; expected \['B01'.*received \['B01'.*'B8'",
    ):
        ClassificationCollator(processor)(
            [{"sample_name": "crop-0", "sentinel2": crops["s2"][0], "sentinel2_bands": bands, "label": 0}]
        )
    with pytest.raises(
        ValueError,
        match=r"expected at least one of the model's input modalities \['sentinel2', 'sentinel1'\], found keys \['label'\].*remove_unused_columns=False",
    ):
        ClassificationCollator(processor)([{"label": 0}])


def test_wrong_label_types_say_what_was_expected(crops: dict[str, Any]) -> None:
    processor = _processor(_config())
    row = {"sentinel2": crops["s2"][0]}
    with pytest.raises(ValueError, match=r"row 0: expected an integer class index, found float64 1\.5"):
        ClassificationCollator(processor)([{**row, "label": 1.5}])
    with pytest.raises(ValueError, match=r"expected a class index in 0\.\.3, found 7"):
        ClassificationCollator(processor, num_labels=4)([{**row, "label": 7}])
    with pytest.raises(ValueError, match=r"found an array of shape \(4,\).*multi_label=True"):
        ClassificationCollator(processor, num_labels=4)([{**row, "label": [0, 1, 1, 0]}])
    with pytest.raises(ValueError, match=r"expected a multi-hot vector of 4 0/1 values .*found shape \(3,\)"):
        ClassificationCollator(processor, num_labels=4, multi_label=True)([{**row, "label": [0, 1, 1]}])
    with pytest.raises(
        ValueError, match=r"label 'forest' is not a known class name; expected one of \['crops', 'water'\]"
    ):
        ClassificationCollator(processor, label2id={"water": 0, "crops": 1})([{**row, "label": "forest"}])
    named = ClassificationCollator(
        processor, num_labels=2, multi_label=True, label2id={"water": 0, "crops": 1}
    )
    assert named([{**row, "label": ["crops"]}])["labels"].tolist() == [[0.0, 1.0]]
    with pytest.raises(
        ValueError, match=r"expected integer class indices \(H, W\) as the label, found dtype float32"
    ):
        SegmentationCollator(processor)([{**row, "label": crops["seg"][0].astype(np.float32)}])
    with pytest.raises(
        ValueError, match=r"expected a label of the image\'s grid \(processed: 32x32\), found shape \(16, 16\)"
    ):
        SegmentationCollator(processor)([{**row, "label": crops["seg"][0][:16, :16]}])
    with pytest.raises(
        ValueError, match=r"expected class indices 0\.\.1 \(negative or -1 = unknown\), found \d"
    ):
        SegmentationCollator(processor, num_labels=2)([{**row, "label": np.full((CROP, CROP), 5)}])


def test_task_data_rows_collate_like_default_collate(crops: dict[str, Any]) -> None:
    """`TaskData` rows are plain nested dicts of tensors: torch's `default_collate` and the collator stack
    them alike, with no processor involved."""
    from torch.utils.data import default_collate

    batch = ClassificationCollator(_processor(_config()))(
        [{"sentinel2": crops["s2"][i], "label": int(crops["majority"][i])} for i in range(3)]
    )
    data = TaskData(dict(batch["pixel_values"]), batch["labels"], batch["valid_mask"])
    rows = [data[i] for i in range(3)]
    ours, torch_batch = ClassificationCollator(None)(rows), default_collate(rows)
    assert torch.equal(ours["labels"], torch_batch["labels"])
    for key in ("pixel_values", "valid_mask"):
        assert ours[key].keys() == torch_batch[key].keys()
        assert all(torch.equal(ours[key][m], torch_batch[key][m]) for m in ours[key])


def test_segmentation_labels_follow_the_processors_padding(crops: dict[str, Any]) -> None:
    """A tile whose side is not a patch multiple is padded by the processor (bottom/right, no-data); its
    label is padded alike with the ignore index, so loss and metrics never see the padding."""
    processor = _processor(_config())
    patch = processor.patch_size
    side = CROP - patch // 2  # not a multiple of the patch
    row = {"sentinel2": crops["s2"][0][:, :side, :side], "label": crops["seg"][0][:side, :side]}
    batch = SegmentationCollator(processor)([row])
    labels = batch["labels"][0]
    assert tuple(labels.shape) == (CROP, CROP) == tuple(batch["valid_mask"]["sentinel2"].shape[-2:])
    assert (labels[side:] == -1).all() and (labels[:, side:] == -1).all()
    expected = torch.from_numpy(crops["seg"][0][:side, :side].astype(np.int64))
    assert torch.equal(labels[:side, :side], torch.where(expected < 0, -1, expected))
    assert not batch["valid_mask"]["sentinel2"][0, side:].any()


def test_a_label_layer_without_registry_classes_needs_its_codes() -> None:
    """The generic `label` layer (classes per task) maps through `label_codes`; without them it is refused, since
    every pixel would be unknown and the loss zero."""
    processor = _processor(tiny_config())
    with pytest.raises(ValueError, match="declares no classes"):
        SegmentationCollator(processor, label_layer="label")
    with pytest.raises(ValueError, match="expected 3 codes"):
        SegmentationCollator(processor, num_labels=3, label_layer="label", label_codes=[1, 2])
    with pytest.raises(ValueError, match="expected label_layer too"):
        SegmentationCollator(processor, label_codes=[1, 2])
    collator = SegmentationCollator(processor, num_labels=3, label_layer="label", label_codes=[1, 2, 4])
    codes = np.array([[1, 2], [4, 0]], dtype=np.uint8)
    assert collator.code_lut is not None
    assert collator.code_lut[codes].tolist() == [[0, 1], [2, -1]]


def test_segmentation_labels_follow_the_processors_random_crops(crops: dict[str, Any]) -> None:
    """Training crops (`crop_size`, `crop_mode="random"`): each row's label is cut where its image was (the
    processor's own report), so two rows of one batch with different offsets keep image and label together.
    They were refused ("labels are not resampled"), leaving segmentation without the crops training sets."""
    processor = GeoMeldImageProcessor.from_model_config(_config(), crop_size=16, crop_mode="random")
    rows = [{"sentinel2": crops["s2"][i], "label": crops["seg"][i]} for i in range(2)]
    torch.manual_seed(3)
    batch = SegmentationCollator(processor)(rows)
    torch.manual_seed(3)  # the collator draws each row's crop seed from torch's RNG, in row order
    for i, row in enumerate(rows):
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        alone = processor({"sentinel2": row["sentinel2"]}, band_names={"sentinel2": list(S2L2A_BANDS)}, seed=seed)
        (crop,) = [t for t in alone["transforms"] if t["op"] == "crop"]
        torch.testing.assert_close(batch["pixel_values"]["sentinel2"][i], alone["pixel_values"]["sentinel2"][0])
        expected = row["label"][crop["y0"] : crop["y0"] + 16, crop["x0"] : crop["x0"] + 16].astype(np.int64)
        assert torch.equal(batch["labels"][i], torch.from_numpy(np.where(expected < 0, -1, expected)))
    assert tuple(batch["labels"].shape) == (2, 16, 16)
