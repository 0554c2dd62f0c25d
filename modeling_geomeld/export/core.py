"""`export_checkpoint`: a GeoMeld-FM checkpoint folder -> ONNX files or `torch.export` programs.

What is written (DIR):
* `encoder.onnx` / `encoder.pt2`: pixels -> pooled embedding (and `image_embeds` for a released
  `GeoMeldModel`), dense features of every stage; dynamic batch and spatial size (multiples of the patch).
* `<task>.onnx` / `<task>.pt2` for a task checkpoint (`image_classification`, `semantic_segmentation`):
  pixels -> logits.
* `export_config.json`: the inputs (name, band names in order, per-band mean and std, no-data value), the
  outputs, the size rule and the labels, so a deployment normalises with numpy alone;
  `preprocessor_config.json`: the same processor for users who do have the package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import nn
from torch.export import Dim

from ..configuration_geomeld import GeoMeldConfig
from ..image_processing_geomeld import GeoMeldImageProcessor
from ..modeling_geomeld import (
    GeoMeldForImageClassification,
    GeoMeldForPreTraining,
    GeoMeldForSemanticSegmentation,
    GeoMeldModel,
    GeoMeldPreTrainedModel,
)
from .graphs import EncoderGraph, TaskGraph, _Graph

ExportFormat = Literal["onnx", "exported-program"]
FORMATS: tuple[str, ...] = ("onnx", "exported-program")
_CLASSES: dict[str, type[GeoMeldPreTrainedModel]] = {
    c.__name__: c
    for c in (GeoMeldModel, GeoMeldForPreTraining, GeoMeldForImageClassification, GeoMeldForSemanticSegmentation)
}
_TASKS = {GeoMeldForImageClassification: "image_classification", GeoMeldForSemanticSegmentation: "semantic_segmentation"}
#: the largest side the dynamic spatial dimensions admit, in pixels
MAX_SIDE = 8192


class ExportError(ValueError):
    """A checkpoint or option export cannot handle (names what was expected)."""


def load_for_export(checkpoint: str | Path) -> GeoMeldPreTrainedModel:
    """The model class the checkpoint's config names (`architectures`), in eval mode."""
    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise ExportError(f"{path}: not a GeoMeld checkpoint folder (no config.json)")
    config = GeoMeldConfig.from_pretrained(str(path))
    arch = (config.architectures or ["GeoMeldModel"])[0]
    if arch not in _CLASSES:
        raise ExportError(f"{path}: architecture {arch!r} is not one of {sorted(_CLASSES)}")
    model, info = _CLASSES[arch].from_pretrained(str(path), output_loading_info=True)
    if info["missing_keys"]:
        raise ExportError(f"{path}: checkpoint lacks weights {info['missing_keys'][:20]}; refusing to export random ones")
    return model.eval()


def graphs_of(model: GeoMeldPreTrainedModel, with_valid_mask: bool = False) -> dict[str, _Graph]:
    """name -> tensor-only graph: always the encoder, plus the task head of a task model."""
    if isinstance(model, GeoMeldForPreTraining):
        base = model.geomeld
        graphs: dict[str, _Graph] = {"encoder": EncoderGraph(base.encoder, base.visual_projection, with_valid_mask)}
    elif isinstance(model, GeoMeldModel):
        graphs = {"encoder": EncoderGraph(model.encoder, model.visual_projection, with_valid_mask)}
    else:
        task = cast(GeoMeldForImageClassification, model)
        graphs = {"encoder": EncoderGraph(task.geomeld.encoder, None, with_valid_mask)}
    for cls, name in _TASKS.items():
        if isinstance(model, cls):
            graphs[name] = TaskGraph(cast(GeoMeldForImageClassification, model), with_valid_mask)
    for g in graphs.values():
        g.eval()
    return graphs


def example_inputs(config: GeoMeldConfig, graph: _Graph, batch: int = 2, size: int | None = None) -> tuple[torch.Tensor, ...]:
    """Random inputs of the graph's signature (traced once; the sizes stay dynamic)."""
    enc = config.encoder_cfg
    size = size or 2 * enc.patch_size
    bands = dict(enc.input_modalities or {})
    g = torch.Generator().manual_seed(0)
    pixels = [torch.randn(batch, len(bands[m]), size, size, generator=g) for m in graph.modalities]
    masks = [torch.ones(batch, size, size, dtype=torch.bool) for _ in graph.modalities] if graph.with_valid_mask else []
    return (*pixels, *masks)


def dynamic_shapes(config: GeoMeldConfig, graph: _Graph) -> tuple[tuple[dict[int, Any], ...]]:
    """Batch and both spatial sizes dynamic; sides are multiples of the patch size (the encoder's stride)."""
    p = config.encoder_cfg.patch_size
    batch = Dim("batch", min=1, max=65536)
    rows = Dim("patch_rows", min=1, max=MAX_SIDE // p)
    cols = Dim("patch_cols", min=1, max=MAX_SIDE // p)
    pixel = [{0: batch, 2: p * rows, 3: p * cols} for _ in graph.modalities]
    mask = [{0: batch, 1: p * rows, 2: p * cols} for _ in graph.modalities] if graph.with_valid_mask else []
    return (tuple(pixel + mask),)  # one entry: the graphs take their tensors as *inputs


def export_graph(
    graph: _Graph, config: GeoMeldConfig, path: Path, fmt: ExportFormat, opset: int | None = None
) -> Path:
    args = example_inputs(config, graph)
    shapes = dynamic_shapes(config, graph)
    with torch.no_grad():
        if fmt == "exported-program":
            ep = torch.export.export(graph, args, dynamic_shapes=shapes)
            torch.export.save(ep, str(path))
        elif fmt == "onnx":
            kwargs: dict[str, Any] = {"opset_version": opset} if opset else {}
            program = torch.onnx.export(
                graph,
                args,
                dynamo=True,
                dynamic_shapes=shapes,
                input_names=graph.input_names,
                output_names=list(graph.output_names),
                external_data=False,
                verbose=False,
                **kwargs,
            )
            if program is None:
                raise ExportError("torch.onnx.export returned no program")
            program.save(str(path))
        else:
            raise ExportError(f"unknown export format {fmt!r}; expected one of {FORMATS}")
    return path


def deployment_config(model: GeoMeldPreTrainedModel, processor: GeoMeldImageProcessor) -> dict[str, Any]:
    """Everything a deployment needs to feed the graphs without this package: bands, statistics, sizes."""
    config = model.config
    inputs = []
    for name in sorted(config.encoder_cfg.input_modalities or {}):
        bands = list(processor.input_modalities.get(name) or (config.encoder_cfg.input_modalities or {})[name])
        mod, variant = processor._resolve(name)
        mean, std = processor._mean_std(name, mod, variant, bands)
        inputs.append(
            {
                "name": name,
                "bands": bands,
                "variant": variant,
                "mean": [float(v) for v in mean],
                "std": [float(v) for v in std],
                "nodata": mod.nodata,
                "shape": ["batch", len(bands), "height", "width"],
                "dtype": "float32",
            }
        )
    out: dict[str, Any] = {
        "model_class": type(model).__name__,
        "inputs": inputs,
        "normalisation": "x = (raw - mean) / std per band, in the listed band order; pixels that are no-data "
        "(non-finite, or every band equal to nodata) are set to 0 after normalisation",
        "size_multiple": config.encoder_cfg.patch_size,
        "patch_size": config.encoder_cfg.patch_size,
    }
    if isinstance(model, tuple(_TASKS)):
        out["id2label"] = {str(k): v for k, v in (config.id2label or {}).items()}
    return out


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    fmt: ExportFormat = "onnx",
    with_valid_mask: bool = False,
    opset: int | None = None,
) -> dict[str, Any]:
    """Export every graph of a checkpoint folder into `out`; returns the written `export_config.json` data."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {FORMATS}")
    checkpoint = Path(checkpoint)
    model = load_for_export(checkpoint)
    return export_model(model, out, fmt, with_valid_mask, opset, processor_dir=checkpoint)


def export_model(
    model: GeoMeldPreTrainedModel,
    out: str | Path,
    fmt: ExportFormat = "onnx",
    with_valid_mask: bool = False,
    opset: int | None = None,
    processor_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Export a loaded model's graphs into `out` (see the module docstring for what is written)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    processor = None
    if processor_dir is not None and (Path(processor_dir) / "preprocessor_config.json").is_file():
        processor = GeoMeldImageProcessor.from_pretrained(str(processor_dir))
    processor = processor or GeoMeldImageProcessor.from_model_config(model.config)
    suffix = ".onnx" if fmt == "onnx" else ".pt2"
    files: dict[str, Any] = {}
    for name, graph in graphs_of(model, with_valid_mask).items():
        path = export_graph(graph, cast(GeoMeldConfig, model.config), out / f"{name}{suffix}", fmt, opset)
        files[name] = {"file": path.name, "inputs": graph.input_names, "outputs": list(graph.output_names)}
    info: dict[str, Any] = {"format": fmt, "graphs": files, "with_valid_mask": with_valid_mask, "torch": torch.__version__}
    info |= deployment_config(model, processor)
    if not with_valid_mask:
        info["valid_mask"] = "not an input: pixels with a non-finite value (NaN) in any band are no-data, as in the eager model"
    processor.save_pretrained(str(out))
    (out / "export_config.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def module_of(path: str | Path) -> nn.Module:
    """A saved exported program as a callable module (`torch.export.load(...).module()`)."""
    return torch.export.load(str(path)).module()
