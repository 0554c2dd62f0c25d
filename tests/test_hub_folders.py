"""Every folder GeoMeld saves is a complete Hub folder: weights, code (auto_map), processor and a model card
whose metadata the Hub's own parser (`huggingface_hub.ModelCard.load`) reads back with pipeline_tag,
base_model (Hub ids only), library_name, a licence from the training data, datasets and model-index results
from the evaluation that was run. The stock loaders are the reference: transformers' Auto classes and
`peft.AutoPeftModel`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from _tiny import tiny_config
from huggingface_hub import ModelCard, metadata_load
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
)

from modeling_geomeld import (
    GeoMeldForImageClassification,
    GeoMeldForPreTraining,
    GeoMeldForSemanticSegmentation,
    GeoMeldImageProcessor,
    GeoMeldModel,
)
from modeling_geomeld.hub import (
    DataSource,
    Score,
    complete_adapter_folder,
    complete_folder,
    foreign_files,
    sources_for,
    write_model_card,
)
from modeling_geomeld.hub.cards import card_licence, hub_id_or_none, public_text
from modeling_geomeld.modalities import SENTINEL2_BANDS, get_modality
from modeling_geomeld.training.finetune_cli import save_adapter_and_merged
from modeling_geomeld.training.finetuning import prepare_model

S2_ONLY = {"encoder_config": {"input_modalities": {"sentinel2": list(SENTINEL2_BANDS)}}}
LABELS = {0: "tree cover", 1: "grassland", 2: "cropland"}


def _processor(config: Any) -> GeoMeldImageProcessor:
    return GeoMeldImageProcessor.from_model_config(config, crop_mode="random")


def _pixels(seed: int = 0, batch: int = 3) -> dict[str, torch.Tensor]:
    return {"sentinel2": torch.randn(batch, 12, 48, 48, generator=torch.Generator().manual_seed(seed))}


def _card(folder: Path) -> tuple[dict[str, Any], str, str]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    card = ModelCard.load(folder / "README.md")
    assert metadata_load(folder / "README.md") == card.data.to_dict()  # the Hub's two parsers agree
    return card.data.to_dict(), card.text, text


def _no_local_paths(folder: Path, tmp_path: Path) -> None:
    for name in ("README.md", "LICENSE.md"):
        if (folder / name).is_file():
            text = (folder / name).read_text(encoding="utf-8")
            assert str(tmp_path) not in text and str(tmp_path.resolve()) not in text and "/tmp/" not in text, name


def _with_labels(config_overrides: dict[str, Any]) -> Any:
    return tiny_config(id2label=LABELS, label2id={v: k for k, v in LABELS.items()}, **config_overrides)


def test_a_pretraining_release_is_complete_and_its_card_says_it_is_a_pipeline_check(tmp_path: Path) -> None:
    config = tiny_config()
    torch.manual_seed(0)
    model = GeoMeldForPreTraining(config)
    folder = tmp_path / "release"
    info = complete_folder(
        model, _processor(config), folder, datasets=[str(tmp_path / "outputs" / "dataset")], pipeline_check=True,
        pipeline_check_reason="random weights.", geomeld={"objectives": ["MP-MAE", "JEPA", "ITC"], "steps": 0},
    )  # fmt: skip
    assert foreign_files(folder) == []
    assert isinstance(AutoModel.from_pretrained(folder), GeoMeldModel)
    assert AutoConfig.from_pretrained(folder).auto_map["AutoModelForPreTraining"] == "modeling_geomeld.GeoMeldForPreTraining"
    processor = AutoImageProcessor.from_pretrained(folder)
    assert isinstance(processor, GeoMeldImageProcessor) and processor.crop_mode == "center"

    meta, body, _ = _card(folder)
    assert meta["pipeline_tag"] == "zero-shot-image-classification"  # trained with its text tower (ITC)
    assert meta["library_name"] == "transformers" and "base_model" not in meta and "datasets" not in meta
    assert "model-index" not in meta  # no evaluation was run
    assert meta["license"] == "other" and info.license == "other" and meta["license_link"] == "LICENSE.md"
    licences = (folder / "LICENSE.md").read_text()
    for name in ("sentinel2", "sentinel1", "dem", "esa_worldcover", "dynamic_world", "canopy_height"):
        mod = get_modality(name)
        assert mod.license in licences and mod.license in body, name  # each source named, no blanket licence
    assert meta["license"] != "apache-2.0"
    assert "pipeline-check" in meta["tags"] and meta["geomeld"]["pipeline_check"] is True
    assert "**Pipeline check, not a model.**" in body and "random weights." in body
    assert "`dataset`" in body and meta["geomeld"]["data"] == "dataset"
    _no_local_paths(folder, tmp_path)


def test_a_fine_tuned_classifier_card_has_base_model_results_and_the_datas_licence(tmp_path: Path) -> None:
    config = _with_labels(S2_ONLY)
    model = GeoMeldForImageClassification(config)
    folder = tmp_path / "classifier"
    results = [Score("accuracy", 0.71, "GEO-Bench m-eurosat", "test", seeds=(0, 1, 2), std=0.02, baseline=0.11, baseline_name="majority")]
    complete_folder(model, _processor(config), folder, base_model="someone/geomeld-fm-tiny", results=results, summary="Linear probe.")
    assert foreign_files(folder) == []
    loaded = AutoModelForImageClassification.from_pretrained(folder)
    assert isinstance(loaded, GeoMeldForImageClassification) and loaded.config.id2label == LABELS
    assert isinstance(AutoImageProcessor.from_pretrained(folder), GeoMeldImageProcessor)

    meta, body, _ = _card(folder)
    assert meta["pipeline_tag"] == "image-classification" and meta["base_model"] == "someone/geomeld-fm-tiny"
    s2 = get_modality("sentinel2")
    assert meta["license"] == "other" and meta["license_name"] == "copernicus-sentinel-data-terms"
    assert s2.license in body and "pipeline-check" not in meta["tags"] and "Pipeline check" not in body
    (entry,) = meta["model-index"]
    (result,) = entry["results"]
    assert entry["name"] == "GeoMeld-FM" and result["task"]["type"] == "image-classification"
    assert result["dataset"] == {"name": "GEO-Bench m-eurosat", "type": "geo-bench-m-eurosat", "split": "test"}
    assert result["metrics"] == [{"type": "accuracy", "value": 0.71, "args": {"seeds": [0, 1, 2], "std": 0.02}}]
    assert "| accuracy | 0.7100 ± 0.0200 | 0.1100 (majority) | GEO-Bench m-eurosat | test | 0, 1, 2 |" in body

    # a base model given as a local folder is no Hub id: omitted from the metadata, named by its last part
    local = tmp_path / "pretrained-run"
    local.mkdir()
    complete_folder(model, _processor(config), folder, base_model=str(local))
    meta, body, _ = _card(folder)
    assert "base_model" not in meta and "model-index" not in meta and "`pretrained-run`" in body
    _no_local_paths(folder, tmp_path)


def test_a_segmentation_model_on_sentinel2_and_worldcover_names_both_licences(tmp_path: Path) -> None:
    config = _with_labels(S2_ONLY)
    model = GeoMeldForSemanticSegmentation(config)
    folder = tmp_path / "segmentation"
    sources = sources_for(["sentinel2_l2a", "esa_worldcover"])
    score = Score("miou", 0.42, "WorldCover crops", "test", seeds=(0,))
    complete_folder(model, _processor(config), folder, training_data=sources, results=[score], pipeline_check=True,
                    pipeline_check_reason=f"trained for 3 steps in {tmp_path}.")  # fmt: skip
    assert isinstance(AutoModelForSemanticSegmentation.from_pretrained(folder), GeoMeldForSemanticSegmentation)
    assert isinstance(AutoImageProcessor.from_pretrained(folder), GeoMeldImageProcessor)
    meta, body, _ = _card(folder)
    assert meta["pipeline_tag"] == "image-segmentation"
    assert meta["license"] == "other" and meta["license_name"] == "copernicus-sentinel-data-terms-and-cc-by-4.0"
    licences = (folder / "LICENSE.md").read_text()
    for name in ("sentinel2", "esa_worldcover"):
        mod = get_modality(name)
        assert f"| {mod.source} | {mod.license} |" in licences and f"| {mod.source} | {mod.license} |" in body
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.42
    assert "**Pipeline check, not a model.**" in body and "trained for 3 steps in" in body
    _no_local_paths(folder, tmp_path)


def test_licences_and_ids_follow_the_hub_rules(tmp_path: Path) -> None:
    assert card_licence(sources_for(["esa_worldcover", "canopy_height"])) == {"license": "cc-by-4.0"}
    mixed = card_licence([DataSource("a", "CC-BY-4.0"), DataSource("b", "CDLA-Permissive-1.0")])
    assert mixed == {"license": "other", "license_name": "cc-by-4.0-and-cdla-permissive-1.0", "license_link": "LICENSE.md"}
    with pytest.raises(ValueError, match="training data's sources"):
        card_licence([])
    assert hub_id_or_none("org/model") == "org/model" and hub_id_or_none("outputs/demo/checkpoint") is None
    assert hub_id_or_none(str(tmp_path)) is None and hub_id_or_none("./x") is None and hub_id_or_none(None) is None
    assert public_text(f"stats from {tmp_path}/ds/stats.json (6 samples); see https://hf.co/a/b") == (
        "stats from stats.json (6 samples); see https://hf.co/a/b"
    )
    with pytest.raises(ValueError, match="kind must be one of"):
        write_model_card(tmp_path, kind="detection", training_data=sources_for(["sentinel2"]))  # type: ignore[arg-type]


def test_a_lora_adapter_loads_with_auto_peft_model_and_matches_the_merged_model(tmp_path: Path) -> None:
    from peft import AutoPeftModel, PeftModel

    torch.manual_seed(0)
    base_config = tiny_config(**S2_ONLY)
    base = tmp_path / "base"
    GeoMeldModel(base_config).save_pretrained(base)
    model = GeoMeldForImageClassification.from_pretrained(base, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    peft_model, _ = prepare_model(model, "lora", lr=1e-3)
    with torch.no_grad():  # a trained adapter: LoRA's B starts at zero, which would make the check vacuous
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "classifier" in name:
                p.normal_(std=0.2)
    peft_model.eval()
    pixels = _pixels()
    expected = peft_model(pixel_values=pixels).logits

    folder = tmp_path / "adapter"
    score = Score("accuracy", 0.5, "toy", "test", seeds=(0,))
    save_adapter_and_merged(peft_model, folder, processor=_processor(base_config), results=[score], pipeline_check=True)

    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    assert adapter_config["task_type"] is None  # PEFT's task types name text model classes only
    assert adapter_config["auto_mapping"] == {"base_model_class": "AutoModelForImageClassification", "parent_library": "transformers"}
    auto = AutoPeftModel.from_pretrained(folder, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}).eval()
    assert isinstance(auto, PeftModel)
    merged = AutoModelForImageClassification.from_pretrained(folder / "merged").eval()
    with torch.no_grad():
        got, merged_logits = auto(pixel_values=pixels).logits, merged(pixel_values=pixels).logits
    assert torch.allclose(got, expected, atol=1e-5) and torch.allclose(merged_logits, expected, atol=1e-5)

    two_lines = PeftModel.from_pretrained(
        AutoModelForImageClassification.from_pretrained(base, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}), folder
    ).eval()  # the card's alternative
    with torch.no_grad():
        assert torch.allclose(two_lines(pixel_values=pixels).logits, expected, atol=1e-5)

    meta, body, _ = _card(folder)
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "image-classification"
    assert "base_model" not in meta  # the base is a local folder here: never a path in the card
    assert "AutoPeftModel.from_pretrained(" in body and "PeftModel.from_pretrained(base," in body
    assert "'tree cover'" in body  # the labels the head needs, in the snippet
    merged_meta, _, _ = _card(folder / "merged")
    assert merged_meta["library_name"] == "transformers" and merged_meta["pipeline_tag"] == "image-classification"
    assert merged_meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.5
    assert isinstance(AutoImageProcessor.from_pretrained(folder / "merged"), GeoMeldImageProcessor)
    assert foreign_files(folder) == []
    for f in (folder, folder / "merged"):
        _no_local_paths(f, tmp_path)


def _finetune_on_fixture(tmp_path: Path, task: str, *options: str) -> dict[str, Any]:
    """`geomeld finetune --task geobench:TASK` (one seed, two steps) on the GEO-Bench-layout fixture; its results."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    from make_geobench import make_geobench

    from modeling_geomeld.cli import main

    root = make_geobench(tmp_path / "geobench", size=32)
    with pytest.warns(UserWarning, match="far from the checkpoint's statistics"):
        code = main(
            ["finetune", "--task", f"geobench:{task}", "--data-root", str(root), "--seeds", "0", "--steps", "2",
             "--batch-size", "2", "--out", str(tmp_path / "out"), *options]
        )  # fmt: skip
    assert code == 0
    return json.loads((tmp_path / "out" / "results.json").read_text())


def test_geomeld_finetune_save_adapter_writes_complete_folders(tmp_path: Path) -> None:
    """`geomeld finetune --mode lora --save-adapter DIR` end to end on the GEO-Bench-layout fixture: the merged
    model is a complete folder with its measured score, the adapter folder says what its base is."""
    folder = tmp_path / "lora"
    result = _finetune_on_fixture(tmp_path, "m-bigearthnet", "--mode", "lora", "--save-adapter", str(folder))
    f1 = result["modes"]["lora"]["per_seed"][0]["micro_f1"]
    merged = AutoModelForImageClassification.from_pretrained(folder / "merged")
    assert isinstance(merged, GeoMeldForImageClassification) and merged.config.problem_type == "multi_label_classification"
    assert isinstance(AutoImageProcessor.from_pretrained(folder / "merged"), GeoMeldImageProcessor)
    meta, body, _ = _card(folder / "merged")
    (score,) = meta["model-index"][0]["results"]
    assert score["metrics"][0] == {"type": "micro_f1", "value": f1, "args": {"seeds": [0]}} and score["dataset"]["split"] == "test"
    assert meta["pipeline_tag"] == "image-classification" and "random initialisation (no --checkpoint)" in body
    assert (meta["geomeld"]["pipeline_check"] is True) == (f1 <= result["majority_baseline"]["micro_f1"])
    adapter_meta, adapter_body, _ = _card(folder)
    assert adapter_meta["library_name"] == "peft" and "no folder holds" in adapter_body
    usage = adapter_body.split("## Usage", 1)[1].split("\n## ", 1)[0]
    assert "AutoPeftModel" not in usage and "adapter/merged" in usage  # no snippet that cannot work
    assert foreign_files(folder) == []
    for f in (folder, folder / "merged"):
        _no_local_paths(f, tmp_path)


def test_geomeld_finetune_save_model_writes_a_complete_folder_per_mode(tmp_path: Path) -> None:
    """`geomeld finetune --mode all --save-model DIR`: the last seed's linear and full models, each a complete
    folder (weights, processor, card with the score the run measured) that the Auto classes load; LoRA is left
    to --save-adapter."""
    folder = tmp_path / "models"
    result = _finetune_on_fixture(tmp_path, "m-cashew-plant", "--mode", "all", "--save-model", str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["full", "linear"]
    for mode in ("full", "linear"):
        model = AutoModelForSemanticSegmentation.from_pretrained(folder / mode)
        assert isinstance(model, GeoMeldForSemanticSegmentation)
        assert isinstance(AutoImageProcessor.from_pretrained(folder / mode), GeoMeldImageProcessor)
        meta, _, _ = _card(folder / mode)
        (score,) = meta["model-index"][0]["results"]
        assert score["metrics"][0]["value"] == result["modes"][mode]["per_seed"][0]["miou"]
        assert meta["pipeline_tag"] == "image-segmentation" and foreign_files(folder / mode) == []
        _no_local_paths(folder / mode, tmp_path)
    assert "Full fine-tuning" in _card(folder / "full")[1] and "linear probe" in _card(folder / "linear")[1]


def test_an_adapter_on_a_base_given_by_a_relative_path_loads_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`geomeld finetune --checkpoint base --save-adapter DIR` from one folder, `AutoPeftModel` from another:
    PEFT records the relative `base`, which the loader resolves against its own working directory."""
    from peft import AutoPeftModel

    torch.manual_seed(0)
    monkeypatch.chdir(tmp_path)
    GeoMeldModel(tiny_config(**S2_ONLY)).save_pretrained("base")
    model = GeoMeldForImageClassification.from_pretrained("base", id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    peft_model, _ = prepare_model(model, "lora", lr=1e-3)
    complete_adapter_folder(peft_model, "adapter", base_model="base")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str((tmp_path / "base").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = AutoPeftModel.from_pretrained(tmp_path / "adapter", id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    assert isinstance(loaded.get_base_model(), GeoMeldForImageClassification)
    assert "/tmp/" not in (tmp_path / "adapter" / "README.md").read_text(encoding="utf-8")  # the card stays path-free
