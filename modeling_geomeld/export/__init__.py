"""Deployment: GeoMeld-FM as ONNX files or `torch.export` programs with dynamic batch and spatial size."""

from .core import ExportError, export_checkpoint, export_model, graphs_of, load_for_export, module_of
from .graphs import EncoderGraph, TaskGraph

__all__ = [
    "EncoderGraph",
    "ExportError",
    "TaskGraph",
    "export_checkpoint",
    "export_model",
    "graphs_of",
    "load_for_export",
    "module_of",
]
