"""Fact sheets of the five real TerraMind samples (and of crops of them) for the caption tests and benchmark.

Samples are built as the aligner would hand them to the builder (``AlignedSample`` on the files' own
224 x 224 grid, elevation plus the slope derived by :func:`dataset_scripts.align.slope_degrees`, the S2
date the build uses); signals come from the
builder's :func:`dataset_scripts.signals.compute_signals`, so the captions are checked against exactly
what a build stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from _build_helpers import s2_datetime

from dataset_scripts.align import slope_degrees
from dataset_scripts.captions.orchestrator import FactSheet, build_fact_sheet, water_layout
from dataset_scripts.signals import compute_signals
from dataset_scripts.terramind import LOCATIONS, S1RTC_BANDS, S2L2A_BANDS, read_tile
from dataset_scripts.types import AlignedSample

BRAZIL, TANZANIA, CHILE, HUDSON, DENMARK = (
    "282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3",
)  # fmt: skip
TILES = (BRAZIL, TANZANIA, CHILE, HUDSON, DENMARK)


def aligned_sample(root: Path, tile: str, window: tuple[int, int, int] | None = None) -> AlignedSample:
    """One real sample as the aligner hands it to the builder; ``window`` = (row, col, size) crops it."""
    layers = read_tile(root, tile)
    dem = layers["dem"]
    arrays = {
        "sentinel2": layers["sentinel2_l2a"].astype(np.float32),
        "sentinel1": layers["sentinel1"].astype(np.float32),
        "dem": np.concatenate([dem, slope_degrees(dem[0], 10.0)[None].astype(np.float32)]),
        "dynamic_world": layers["dynamic_world"],
    }
    if window is not None:
        r, c, s = window
        arrays = {k: v[:, r : r + s, c : c + s] for k, v in arrays.items()}
    _, lat, lon = LOCATIONS[tile]
    return AlignedSample(
        tile_id=tile if window is None else f"{tile}_{window[0]}_{window[1]}_{window[2]}",
        arrays=arrays,
        bands={
            "sentinel2": S2L2A_BANDS,
            "sentinel1": S1RTC_BANDS,
            "dem": ("elevation", "slope"),
            "dynamic_world": ("label",),
        },
        metadata={
            "lat": lat,
            "lon": lon,
            "datetime": s2_datetime(root, tile),
            "s2_product": "l2a",
            "gsd": 10.0,
        },
    )


def signals_for(sample: AlignedSample) -> dict[str, Any]:
    """The builder's signals of one sample."""
    return compute_signals(sample)


def fact_sheet(sample: AlignedSample) -> FactSheet:
    """Signals + metadata + the water layout of the land-cover array -> the sample's fact sheet."""
    return build_fact_sheet(sample.tile_id, signals_for(sample), sample.metadata, water_layout(sample.arrays))


def real_fact_sheets(root: Path) -> dict[str, FactSheet]:
    return {t: fact_sheet(aligned_sample(root, t)) for t in TILES}
