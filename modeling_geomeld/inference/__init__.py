"""Whole-scene inference (`geomeld predict`): tiled, blended, resumable, in bounded memory; see `predict`."""

from .predict import PredictOptions, PredictReport, predict_scene
from .tiling import RowBandBlender, TileGrid, ramp, window_weights

__all__ = ["PredictOptions", "PredictReport", "RowBandBlender", "TileGrid", "predict_scene", "ramp", "window_weights"]
