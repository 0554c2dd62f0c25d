"""transformers ConvNextV2Model -> GeoMeld: transformers' own forward on the RGB bands is the oracle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import ConvNextV2Config, ConvNextV2ForImageClassification, ConvNextV2Model

from modeling_geomeld.conversion import ConversionError, convert_hf_convnextv2
from modeling_geomeld.modalities import SENTINEL2_BANDS
from tests._tiny import TINY_TEXT

SMALL = {"text_config": dict(TINY_TEXT), "projection_dim": 14}
RGB = [SENTINEL2_BANDS.index(b) for b in ("B04", "B03", "B02")]


def _randomise(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():  # GRN and biases start at zero in HF: random makes every path count
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _hf_folder(tmp_path: Path, cls: type = ConvNextV2Model) -> tuple[Path, torch.nn.Module]:
    config = ConvNextV2Config(depths=[1, 2, 1, 1], hidden_sizes=[8, 12, 20, 28], image_size=64)
    model = cls(config).eval()
    _randomise(model, 0)
    model.save_pretrained(tmp_path / "hf")
    return tmp_path / "hf", model


def _pixels(batch: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, len(SENTINEL2_BANDS), size, size, generator=torch.Generator().manual_seed(seed))


def test_hf_exact_at_imagenet_geometry(tmp_path: Path) -> None:
    folder, hf = _hf_folder(tmp_path)
    model, report = convert_hf_convnextv2(folder, config_overrides=SMALL)
    assert report.exact and model.config.encoder_cfg.patch_size == 32
    # weights are copied bit for bit: the RGB filters on B04/B03/B02, zeros elsewhere
    stem = model.encoder.stems["sentinel2"].conv.weight.detach()
    assert torch.equal(stem[:, RGB], hf.embeddings.patch_embeddings.weight)
    assert float(stem[:, [i for i in range(12) if i not in RGB]].abs().max()) == 0.0
    x = _pixels(3, 64)
    with torch.no_grad():
        ref = hf(x[:, RGB], output_hidden_states=True)
        ours = model.encoder({"sentinel2": x})
    for i, feats in enumerate(ours.hidden_states):
        assert (feats - ref.hidden_states[i + 1]).abs().max() <= 1e-5, f"stage {i}"
    assert (ours.last_hidden_state - ref.last_hidden_state).abs().max() <= 1e-5
    # HF's pooler LayerNorm has eps 1e-12, ours 1e-6 (named in the report)
    assert (ours.pooler_output - ref.pooler_output).abs().max() <= 1e-5
    assert any("eps" in n for n in report.notes)
    # the text tower is not in the source: the report names it instead of hiding it
    assert any(k.startswith("text_model.") for k in report.target_keys_not_in_source)
    assert not any(k.startswith("encoder.") for k in report.target_keys_not_in_source)


def test_hf_classification_folder_drops_classifier_by_name(tmp_path: Path) -> None:
    folder, hf = _hf_folder(tmp_path, ConvNextV2ForImageClassification)
    model, report = convert_hf_convnextv2(folder, config_overrides=SMALL)
    assert report.source_keys_discarded == ["classifier.bias", "classifier.weight"]
    x = _pixels(2, 64, seed=3)
    with torch.no_grad():
        ref = hf.convnextv2(x[:, RGB]).last_hidden_state
        ours = model.encoder({"sentinel2": x}).last_hidden_state
    assert (ours - ref).abs().max() <= 1e-5


def test_hf_other_patch_size_is_resampled_and_flagged(tmp_path: Path) -> None:
    folder, hf = _hf_folder(tmp_path)
    model, report = convert_hf_convnextv2(folder, patch_size=16, config_overrides=SMALL)
    assert not report.exact and any("APPROXIMATION" in n for n in report.notes)
    # the resampled 2x2 stem on X is the original 4x4 stem on X upsampled 2x (nearest): checkable exactly
    x = _pixels(2, 32, seed=4)
    with torch.no_grad():
        ref = hf(F.interpolate(x[:, RGB], scale_factor=2, mode="nearest")).last_hidden_state
        ours = model.encoder({"sentinel2": x}).last_hidden_state
    assert (ours - ref).abs().max() <= 1e-5


def test_hf_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder, _ = _hf_folder(tmp_path)
    sd = load_file(str(folder / "model.safetensors"))
    sd.pop("encoder.stages.2.layers.0.grn.weight")
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(ConversionError, match=r"encoder\.stages\.2\.layers\.0\.grn\.weight"):
        convert_hf_convnextv2(folder, config_overrides=SMALL)
    sd["encoder.stages.2.layers.0.grn.weight"] = torch.zeros(1, 1, 1, 80)
    sd["encoder.extra.weight"] = torch.zeros(3)
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(ConversionError, match=r"encoder\.extra\.weight"):
        convert_hf_convnextv2(folder, config_overrides=SMALL)


def test_convert_cli_writes_a_loadable_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from modeling_geomeld import GeoMeldModel
    from modeling_geomeld.cli import main

    folder, hf = _hf_folder(tmp_path)
    out = tmp_path / "geomeld"
    assert main(["convert", "hf", str(folder), "--out", str(out)]) == 0
    assert "NOT in the source" in capsys.readouterr().out
    report = json.loads((out / "conversion.json").read_text())
    assert report["exact"] and report["source_format"] == "transformers-convnextv2"
    model, info = GeoMeldModel.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    x = _pixels(1, 64, seed=5)
    with torch.no_grad():
        assert (model.encoder({"sentinel2": x}).last_hidden_state - hf(x[:, RGB]).last_hidden_state).abs().max() <= 1e-5
    assert (out / "preprocessor_config.json").is_file()
    # a wrong path is a one-line usage error (exit 2), not a traceback
    assert main(["convert", "hf", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no config.json" in capsys.readouterr().err
