"""`geomeld export`: ONNX (run by onnxruntime) and torch.export programs against the eager model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_geomeld import (
    GeoMeldForImageClassification,
    GeoMeldForSemanticSegmentation,
    GeoMeldImageProcessor,
)
from modeling_geomeld.cli import main
from modeling_geomeld.export import export_checkpoint, graphs_of, module_of
from modeling_geomeld.export.core import export_graph
from tests._tiny import ALL_INPUTS, tiny_config

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the outside oracle (pip install '.[export]')")

SHAPES = [(1, 32, 32), (3, 48, 64)]  # two batch sizes, two image sizes (one not square)
LABELS = {"id2label": {0: "water", 1: "trees", 2: "crops"}, "label2id": {"water": 0, "trees": 1, "crops": 2}}


def _checkpoint(tmp: Path, cls: type, name: str) -> Path:
    torch.manual_seed(0)
    model = cls(tiny_config(encoder_config={"drop_path_rate": 0.0}, **LABELS)).eval()
    with torch.no_grad():  # GRN starts at zero: random values make every path of the blocks count
        for n, p in model.named_parameters():
            if "grn" in n:
                p.normal_(0, 0.3)
    model.save_pretrained(tmp / name)
    GeoMeldImageProcessor.from_model_config(model.config).save_pretrained(tmp / name)
    return tmp / name


def _inputs(batch: int, h: int, w: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, len(b), h, w, generator=g) for m, b in sorted(ALL_INPUTS.items())}


def _eager(model: torch.nn.Module, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        enc = model.geomeld.encoder(x)
        out = {
            "pooler_output": enc.pooler_output,
            "last_hidden_state": enc.last_hidden_state,
            "logits": model(pixel_values=x).logits,
        }
        out |= {f"hidden_state_{i}": h for i, h in enumerate(enc.hidden_states[:-1])}
    return out


@pytest.fixture(scope="module")
def segmentation_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("onnx")
    ckpt = _checkpoint(tmp, GeoMeldForSemanticSegmentation, "seg")
    export_checkpoint(ckpt, tmp / "out", "onnx")
    return ckpt, tmp / "out"


def test_onnxruntime_matches_eager_at_two_batches_and_sizes(segmentation_onnx: tuple[Path, Path]) -> None:
    ckpt, out = segmentation_onnx
    model = GeoMeldForSemanticSegmentation.from_pretrained(ckpt).eval()
    info = json.loads((out / "export_config.json").read_text())
    assert set(info["graphs"]) == {"encoder", "semantic_segmentation"}
    for seed, (b, h, w) in enumerate(SHAPES):
        x = _inputs(b, h, w, seed)
        if b > 1:  # no-data without a valid_mask: NaN pixels, handled as the eager model handles them
            x["sentinel1"][0, :, :10] = float("nan")
        ref = _eager(model, x)
        for graph in info["graphs"].values():
            session = ort.InferenceSession(str(out / graph["file"]), providers=["CPUExecutionProvider"])
            assert [i.name for i in session.get_inputs()] == graph["inputs"] == sorted(ALL_INPUTS)
            got = session.run(graph["outputs"], {k: v.numpy() for k, v in x.items()})
            for name, value in zip(graph["outputs"], got, strict=True):
                assert value.shape == tuple(ref[name].shape), (name, b, h, w)
                assert np.abs(value - ref[name].numpy()).max() <= 1e-4, (name, b, h, w)


def test_export_folder_normalises_without_the_package(segmentation_onnx: tuple[Path, Path]) -> None:
    """export_config.json alone (numpy) reproduces the processor's pixel values."""
    _, out = segmentation_onnx
    info = json.loads((out / "export_config.json").read_text())
    rng = np.random.default_rng(0)
    # physically plausible values per band: the processor turns absurd ones (4000 dB of S1) into no-data
    ranges = {"VV": (-25, -5), "VH": (-30, -10), "elevation": (0, 3000), "slope": (0, 45)}
    raw = {
        i["name"]: np.stack([rng.uniform(*ranges.get(b, (100, 4000)), (2, 32, 32)) for b in i["bands"]], 1).astype(np.float32)
        for i in info["inputs"]
    }
    processor = GeoMeldImageProcessor.from_pretrained(str(out))
    processor.crop_size = None
    feats = processor(raw)
    for spec in info["inputs"]:
        mean = np.asarray(spec["mean"], np.float32)[None, :, None, None]
        std = np.asarray(spec["std"], np.float32)[None, :, None, None]
        mine = (raw[spec["name"]] - mean) / std
        assert np.abs(mine - feats["pixel_values"][spec["name"]].numpy()).max() <= 1e-5


def test_exported_program_round_trip_via_cli(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, GeoMeldForImageClassification, "cls")
    assert main(["export", "--checkpoint", str(ckpt), "--format", "exported-program", "--out", str(tmp_path / "ep")]) == 0
    info = json.loads((tmp_path / "ep" / "export_config.json").read_text())
    assert info["id2label"] == {"0": "water", "1": "trees", "2": "crops"}
    model = GeoMeldForImageClassification.from_pretrained(ckpt).eval()
    programs = {name: module_of(tmp_path / "ep" / g["file"]) for name, g in info["graphs"].items()}
    for seed, (b, h, w) in enumerate(SHAPES):
        x = _inputs(b, h, w, seed + 10)
        ref = _eager(model, x)
        for name, program in programs.items():
            got = program(*[x[m] for m in info["graphs"][name]["inputs"]])
            for out_name, value in zip(info["graphs"][name]["outputs"], got, strict=True):
                assert (value - ref[out_name]).abs().max() <= 1e-5, (name, out_name, b, h, w)


def test_export_with_valid_mask_matches_eager_on_no_data(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, GeoMeldForImageClassification, "cls")
    model = GeoMeldForImageClassification.from_pretrained(ckpt).eval()
    graph = graphs_of(model, with_valid_mask=True)["image_classification"]  # the task graph alone: fast
    program = module_of(export_graph(graph, model.config, tmp_path / "cls.pt2", "exported-program"))
    assert graph.input_names[3:] == ["valid_mask_dem", "valid_mask_sentinel1", "valid_mask_sentinel2"]
    x = _inputs(2, 48, 32, seed=5)
    valid = {m: torch.ones(2, 48, 32, dtype=torch.bool) for m in x}
    valid["sentinel1"][0, :20] = False  # a swath edge
    valid["dem"][1] = False  # a modality absent from one sample
    with torch.no_grad():
        ref = model(pixel_values=x, valid_mask=valid).logits
    got = program(*[x[m] for m in sorted(x)], *[valid[m] for m in sorted(x)])[0]
    assert (got - ref).abs().max() <= 1e-5


def test_export_refuses_a_folder_without_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no config.json" in capsys.readouterr().err
