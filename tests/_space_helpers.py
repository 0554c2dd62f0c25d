"""A small retrieval collection for the Space tests: 20 real samples, a tiny random GeoMeld-FM, its index.

Four 64 x 64 anchors (640 m) inside each of the five real TerraMesh locations, built and captioned by the
builder; a deliberately small random model (S2 + S1 inputs, odd widths) saved with the real MiniLM
tokenizer; and the index that `geomeld index` writes. Random weights make rankings meaningless, so the tests
check the mechanics (shapes, filters, errors, round trips), never which tile comes first.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from _build_helpers import TERRAMIND_IDS, terramind_rows, write_manifest
from _tiny import TINY_TEXT

from dataset_scripts.align import AlignConfig
from dataset_scripts.build import BuildOptions, build
from modeling_geomeld import GeoMeldConfig, GeoMeldImageProcessor, GeoMeldModel, GeoMeldProcessor
from modeling_geomeld.modalities import SENTINEL2_BANDS
from modeling_geomeld.text import load_text_tokenizer

GRID = 64
OFFSETS = ((-1, -1), (-1, 1), (1, -1), (1, 1))  # x 450 m from each location's centre


def _centre(path: Path) -> tuple[float, float]:
    import rasterio
    from rasterio.warp import transform

    with rasterio.open(path) as ds:
        b = ds.bounds
        xs, ys = transform(ds.crs, "EPSG:4326", [(b.left + b.right) / 2], [(b.bottom + b.top) / 2])
    return float(ys[0]), float(xs[0])


def build_collection(terramind_dir: Path, out: Path) -> Path:
    rows = []
    for tile in TERRAMIND_IDS:
        lat, lon = _centre(terramind_dir / "S2L2A" / f"{tile}.tif")
        for i, (dy, dx) in enumerate(OFFSETS):
            for row in terramind_rows(terramind_dir, tile, anchor_id=f"{tile}_{i}"):
                row["lat"] = lat + dy * 0.0045
                row["lon"] = lon + dx * 0.0045 / math.cos(math.radians(lat))
                rows.append(row)
    manifest = write_manifest(rows, out / "manifest.csv")
    options = BuildOptions(workers=0, progress=False, caption=True, align=AlignConfig(size_px=GRID))
    build(f"manifest:{manifest}", out / "dataset", options)
    return out / "dataset"


def tiny_checkpoint(out: Path) -> Path:
    torch.manual_seed(0)
    config = GeoMeldConfig(
        encoder_config={
            "depths": [1, 1, 1, 1],
            "dims": [8, 12, 20, 28],
            "image_size": 48,
            "patch_size": 16,
            "input_modalities": {"sentinel2": list(SENTINEL2_BANDS), "sentinel1": ["VV", "VH"]},
        },
        text_config=dict(TINY_TEXT),
        projection_dim=24,
    )
    GeoMeldModel(config).save_pretrained(out)
    GeoMeldProcessor(GeoMeldImageProcessor.from_model_config(config), load_text_tokenizer()).save_pretrained(out)
    return out
