"""Downstream heads and training modes: shapes, Auto loading from a pretraining checkpoint, linear probe,
layer-wise lr decay, PEFT LoRA (adapter save / load / merge), IQM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _tiny import BATCH, IMAGE, inputs, tiny_config
from transformers import AutoModelForImageClassification, AutoModelForSemanticSegmentation

from modeling_geomeld import (
    GeoMeldForImageClassification,
    GeoMeldForPreTraining,
    GeoMeldForSemanticSegmentation,
)
from modeling_geomeld.training.finetuning import (
    TaskData,
    encoder_layer_id,
    interquartile_mean,
    llrd_param_groups,
    predict,
    prepare_model,
    summarise,
    train,
    trainable_share,
)


@pytest.mark.parametrize("subset", [["sentinel2"], ["sentinel1"], ["sentinel2", "sentinel1", "dem"]])
def test_head_shapes_for_input_subsets_and_sizes(subset: list[str]) -> None:
    seg = GeoMeldForSemanticSegmentation(tiny_config(num_labels=5)).eval()
    clf = GeoMeldForImageClassification(tiny_config(num_labels=3)).eval()
    for size in (IMAGE, 64):
        x = inputs(subset, size=size)
        assert seg(x).logits.shape == (BATCH, 5, size, size)
        assert clf(x).logits.shape == (BATCH, 3)


def test_losses_single_multi_label_and_segmentation() -> None:
    x = inputs(["sentinel2"], batch=4)
    clf = GeoMeldForImageClassification(tiny_config(num_labels=3, label_smoothing=0.1))
    out = clf(x, labels=torch.tensor([0, 2, 1, 1]))
    ref = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2, 1, 1]), label_smoothing=0.1)
    assert torch.allclose(out.loss, ref)
    multi = GeoMeldForImageClassification(tiny_config(num_labels=3, problem_type="multi_label_classification"))
    y = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    out = multi(x, labels=y)
    assert torch.allclose(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, y.float()))
    with pytest.raises(ValueError, match="multi-hot"):
        multi(x, labels=torch.tensor([0, 1, 2, 0]))
    seg = GeoMeldForSemanticSegmentation(tiny_config(num_labels=4))
    labels = torch.full((4, IMAGE, IMAGE), -1)
    labels[:, :10] = 2
    out = seg(x, labels=labels)
    ref = torch.nn.functional.cross_entropy(out.logits[:, :, :10], labels[:, :10])
    assert torch.allclose(out.loss, ref, atol=1e-6)  # no-data pixels (-1) are ignored


def test_task_models_load_encoder_from_a_pretraining_checkpoint(tmp_path: Path) -> None:
    pre = GeoMeldForPreTraining(tiny_config())
    pre.save_pretrained(tmp_path)
    seg, info = AutoModelForSemanticSegmentation.from_pretrained(tmp_path, num_labels=6, output_loading_info=True)
    clf = AutoModelForImageClassification.from_pretrained(tmp_path, num_labels=6)
    assert isinstance(seg, GeoMeldForSemanticSegmentation) and isinstance(clf, GeoMeldForImageClassification)
    assert not info["unexpected_keys"]  # text tower, decoders, predictor, EMA ignored cleanly
    assert all(k.startswith("decode_head.") for k in info["missing_keys"])  # only the new head is new
    reused = seg.geomeld.encoder.state_dict()
    assert all(torch.equal(v, reused[k]) for k, v in pre.geomeld.encoder.state_dict().items())
    assert torch.isfinite(seg(inputs(["sentinel2"], batch=2)).logits).all()


def _task(n: int = 6) -> TaskData:
    x = inputs(["sentinel2"], batch=n)
    labels = (x["sentinel2"][:, 3] > 0).long()  # a learnable per-pixel rule
    return TaskData(pixel_values=x, labels=labels)


def test_linear_probe_trains_only_the_head() -> None:
    model, groups = prepare_model(GeoMeldForSemanticSegmentation(tiny_config(num_labels=2)), "linear", lr=1e-3)
    before = {k: v.clone() for k, v in model.geomeld.encoder.state_dict().items()}
    losses = train(model, groups, _task(), steps=20, batch_size=4, seed=0)
    assert losses[-1] < losses[0]
    after = model.geomeld.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for p in model.geomeld.parameters())


def test_train_is_the_stock_trainer_seeded_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train` runs `transformers.Trainer`: the same seed gives the same losses on CPU, another seed other
    batches; no output folder, checkpoint or log is left behind (in the working directory either)."""
    monkeypatch.chdir(tmp_path)
    runs = {}
    for key, seed in (("a", 0), ("b", 0), ("c", 1)):
        torch.manual_seed(0)  # the same initial weights: only the run's seed differs
        model, groups = prepare_model(GeoMeldForImageClassification(tiny_config(num_labels=2)), "linear", lr=1e-2)
        data = _task(8)
        data.labels = data.labels[:, 0, 0]  # one class per sample
        runs[key] = train(model, groups, data, steps=3, batch_size=4, seed=seed)
    assert len(runs["a"]) == 3 and runs["a"] == runs["b"] and runs["a"] != runs["c"]
    assert not list(tmp_path.iterdir())


def test_layer_wise_lr_decay() -> None:
    cfg = tiny_config(num_labels=2)
    depths = cfg.encoder_config.depths  # [1, 2, 1, 1]
    assert encoder_layer_id("geomeld.encoder.stems.sentinel2.conv.weight", depths) == 0
    assert encoder_layer_id("geomeld.encoder.stages.1.1.dwconv.weight", depths) == 3
    assert encoder_layer_id("geomeld.encoder.downsamples.2.conv.weight", depths) == 4
    assert encoder_layer_id("geomeld.encoder.norm.weight", depths) == 6
    model = GeoMeldForImageClassification(cfg)
    groups = llrd_param_groups(model, lr=1.0, layer_decay=0.5, weight_decay=0.05)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr_of[id(model.classifier.weight)] == 1.0
    assert lr_of[id(model.geomeld.encoder.stems["sentinel2"].conv.weight)] == pytest.approx(0.5**6)
    assert lr_of[id(model.geomeld.encoder.stages[1][1].pwconv1.weight)] == pytest.approx(0.5**3)
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert wd_of[id(model.classifier.bias)] == 0.0 and wd_of[id(model.classifier.weight)] == 0.05


def test_lora_adapter_save_load_and_merge(tmp_path: Path) -> None:
    from peft import PeftModel

    torch.manual_seed(0)
    model, groups = prepare_model(GeoMeldForSemanticSegmentation(tiny_config(num_labels=2)), "lora", lr=3e-3, lora_rank=4)
    trainable, total, share = trainable_share(model)
    assert 0 < trainable < total and 0 < share < 0.5
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("pwconv1.lora_A" in n for n in names) and any("decode_head" in n for n in names)
    assert not any("dwconv" in n for n in names)
    train(model, groups, _task(), steps=10, batch_size=4, seed=0)
    data = _task(3)
    expected = predict(model, data)
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    torch.manual_seed(0)
    base = GeoMeldForSemanticSegmentation(tiny_config(num_labels=2))
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert torch.allclose(predict(loaded, data), expected, atol=1e-6)
    merged = loaded.merge_and_unload()
    assert isinstance(merged, GeoMeldForSemanticSegmentation)
    assert torch.allclose(predict(merged, data), expected, atol=1e-4)


def test_interquartile_mean_and_summary() -> None:
    assert interquartile_mean([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert interquartile_mean([100, 1, 2, 3]) == pytest.approx(2.5)  # the outlier seed is trimmed
    # n = 5: the middle half spans 1.25..3.75 of the sorted values -> weights 0.75, 1, 0.75 on 2, 3, 4
    assert interquartile_mean([5, 1, 4, 2, 3]) == pytest.approx((0.75 * 2 + 3 + 0.75 * 4) / 2.5)
    s = summarise([0.5, 0.7])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1414, abs=1e-3)
    with pytest.raises(ValueError):
        interquartile_mean([])


def test_finetune_command_on_a_geobench_fixture(tmp_path: Path) -> None:
    """`geomeld finetune --task geobench:...` end to end on a GEO-Bench-layout fixture: table and JSON out."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    from make_geobench import make_geobench

    from modeling_geomeld.cli import main

    root = make_geobench(tmp_path / "geobench", size=32)
    out = tmp_path / "out"
    # the fixture's bands hold 100 (B01) .. 1200 (B12): far below the registry's L2A means, and said so
    with pytest.warns(UserWarning, match=r"bands lie far from the checkpoint's statistics.*sentinel2/B01 mean 1\d\d"):
        code = main(
            ["finetune", "--task", "geobench:m-bigearthnet", "--data-root", str(root), "--mode", "linear",
             "--seeds", "0", "1", "--steps", "3", "--batch-size", "2", "--out", str(out)]
        )  # fmt: skip
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert result["statistics"]["choice"] == "checkpoint" and result["statistics"]["stats"] == {}
    assert result["trainer"].startswith("transformers.Trainer ")  # the stock Trainer ran every seed
    assert "registry defaults" in result["statistics"]["source"]
    assert {s["band"] for s in result["statistics"]["far_from_checkpoint"]} >= {"B01", "B02"}
    summary = result["modes"]["linear"]["summary"]["micro_f1"]
    assert 0.0 <= summary["mean"] <= 1.0 and summary["n"] == 2.0
    assert [r["seed"] for r in result["modes"]["linear"]["per_seed"]] == [0, 1]


def test_finetune_with_the_tasks_own_statistics_records_the_choice(tmp_path: Path) -> None:
    """`--stats task` normalises with the GEO-Bench task's band_stats.json, by band name, and results.json
    records the choice, the file and the numbers."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    from make_geobench import band_value, make_geobench

    from modeling_geomeld.cli import main

    root = make_geobench(tmp_path / "geobench", size=32)
    out = tmp_path / "out"
    code = main(
        ["finetune", "--task", "geobench:m-bigearthnet", "--data-root", str(root), "--mode", "linear", "--stats",
         "task", "--seeds", "0", "--steps", "2", "--batch-size", "2", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "results.json").read_text())["statistics"]
    assert record["choice"] == "task" and record["source"].endswith("m-bigearthnet/band_stats.json (the GEO-Bench task's own)")
    b08 = record["stats"]["sentinel2"]["B08"]
    assert b08 == [band_value("08 - NIR") + 0.25, pytest.approx(0.5 + 800 / 1000)]
    assert record["stats"]["sentinel2"]["B8A"][0] == band_value("08A - Vegetation Red Edge") + 0.25
