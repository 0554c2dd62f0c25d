"""Weight converters: published ConvNeXt V2 checkpoints (transformers, FCMAE, MMEarth) -> GeoMeld-FM."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from ..image_processing_geomeld import GeoMeldImageProcessor
from .common import ConversionError, ConversionReport, load_checkpoint
from .fcmae import convert_fcmae
from .hf import convert_hf_convnextv2
from .mmearth import convert_mmearth

CONVERTERS: dict[str, Callable[..., tuple[PreTrainedModel, ConversionReport]]] = {"hf": convert_hf_convnextv2, "fcmae": convert_fcmae, "mmearth": convert_mmearth}


def convert(source_format: str, source: str | Path, **kwargs: Any) -> tuple[PreTrainedModel, ConversionReport]:
    """Dispatch to the converter of `source_format` (a key of `CONVERTERS`); `None` keyword values are dropped."""
    if source_format not in CONVERTERS:
        raise ConversionError(f"unknown source format {source_format!r}; expected one of {sorted(CONVERTERS)}")
    return CONVERTERS[source_format](source, **{k: v for k, v in kwargs.items() if v is not None})


def save_converted(model: PreTrainedModel, report: ConversionReport, out: str | Path) -> Path:
    """Write the converted model (safetensors + config), its image processor and `conversion.json`."""
    out = Path(out)
    model.save_pretrained(out)
    GeoMeldImageProcessor.from_model_config(model.config).save_pretrained(out)
    (out / "conversion.json").write_text(report.to_json() + "\n")
    return out


__all__ = [
    "CONVERTERS",
    "ConversionError",
    "ConversionReport",
    "convert",
    "convert_fcmae",
    "convert_hf_convnextv2",
    "convert_mmearth",
    "load_checkpoint",
    "save_converted",
]
