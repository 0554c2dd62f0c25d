"""The real TerraMesh validation samples (`../shared/data/terramind-samples`): five locations, each a
224 x 224 UTM grid at 10 m with Sentinel-2 L2A/L1C, Sentinel-1 RTC, Copernicus DEM and a 1-9 land-cover map.

The files carry no band descriptions, so band names come from here (the data README), never from position
guesses; the land-cover product is mapped onto Dynamic World by name through a class map.
Licence: CC-BY-SA-4.0 (TerraMesh); contains modified Copernicus Sentinel data, Copernicus DEM and
Esri/Impact Observatory land cover.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from modeling_geomeld.modalities import SENTINEL2_ALL_BANDS, get_modality, parse_class_map

#: tile id -> (place, lat, lon) from the data README
LOCATIONS: dict[str, tuple[str, float, float]] = {
    "282D_485L_3_3": ("Brazil coast", -25.3, -48.1),
    "38D_378R_2_3": ("Tanzania", -3.4, 34.1),
    "433D_629L_3_1": ("Chile", -38.8, -72.5),
    "609U_541L_3_0": ("Hudson Bay lowlands", 54.8, -84.0),
    "637U_59R_1_3": ("Denmark", 57.2, 9.8),
}
#: band names in the files' own order
S2L2A_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S2L1C_BANDS: tuple[str, ...] = SENTINEL2_ALL_BANDS
S1RTC_BANDS: tuple[str, ...] = ("VV", "VH")
#: the 1-9 land-cover classes onto Dynamic World (clouds are no data; rangeland is closest to grass)
LULC_TO_DYNAMIC_WORLD = "1:water,2:trees,3:flooded vegetation,4:crops,5:built,6:bare,7:snow and ice,8:nodata,9:grass"
FOLDERS = {"sentinel2_l2a": "S2L2A", "sentinel2_l1c": "S2L1C", "sentinel1": "S1RTC", "dem": "DEM", "lulc": "LULC"}


def read_tile(root: str | Path, tile: str) -> dict[str, np.ndarray]:
    """All layers of one location: `sentinel2_l2a` (12, 224, 224) int16, `sentinel2_l1c` (13, ...),
    `sentinel1` (2, ...) dB, `dem` (1, ...) metres as float32, `dynamic_world` (1, ...) uint8 codes (0 = no data)."""
    import rasterio

    root = Path(root)
    out = {}
    for key, folder in FOLDERS.items():
        path = root / folder / f"{tile}.tif"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; expected the TerraMesh sample layout <root>/{folder}/<tile>.tif")
        with rasterio.open(path) as src:
            out[key] = src.read()
    dw = get_modality("dynamic_world")
    lut = np.zeros(256, dtype=np.uint8)  # unmapped codes -> no data
    for src_code, dst_code in parse_class_map(LULC_TO_DYNAMIC_WORLD, dw).items():
        lut[src_code] = dst_code
    out["dynamic_world"] = lut[out.pop("lulc")]
    out["dem"] = out["dem"].astype(np.float32)
    return out


def read_all(root: str | Path, tiles: list[str] | None = None) -> dict[str, np.ndarray]:
    """Every layer stacked over locations: (N, C, 224, 224)."""
    per_tile = [read_tile(root, t) for t in (tiles or list(LOCATIONS))]
    return {k: np.stack([t[k] for t in per_tile]) for k in per_tile[0]}


def split_into_crops(array: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) -> (N * (H // size) * (W // size), C, size, size): non-overlapping tiles, row-major per location."""
    n, c, h, w = array.shape
    rows, cols = h // size, w // size
    a = array[:, :, : rows * size, : cols * size].reshape(n, c, rows, size, cols, size)
    return a.transpose(0, 2, 4, 1, 3, 5).reshape(n * rows * cols, c, size, size)


MANIFEST_FIELDS = ["anchor_id", "modality", "path", "bands", "datetime", "lat", "lon", "class_map", "cloud_cover"]


def s2_datetime(root: str | Path, tile: str) -> str:
    """The S2 files carry no date; the LULC layer, derived from the same S2 scene, does."""
    import rasterio

    with rasterio.open(Path(root) / "LULC" / f"{tile}.tif") as ds:
        return str(ds.tags()["datetime"])


def manifest_rows(root: str | Path, tile: str, *, product: str = "l2a", anchor_id: str | None = None) -> list[dict]:
    """Builder manifest rows for one location: S2 (L2A or L1C), S1 (VV, VH), DEM (elevation) and LULC mapped
    onto Dynamic World. `anchor_id` renames the anchor (the same files under several ids, for benchmarks)."""
    root = Path(root)
    anchor = anchor_id or tile
    folder = FOLDERS["sentinel2_l2a" if product == "l2a" else "sentinel2_l1c"]
    return [
        {"anchor_id": anchor, "modality": f"sentinel2_{product}", "path": str(root / folder / f"{tile}.tif"),
         "datetime": s2_datetime(root, tile), "cloud_cover": "" if product == "l2a" else "1.5"},
        {"anchor_id": anchor, "modality": "sentinel1", "path": str(root / "S1RTC" / f"{tile}.tif"), "bands": "VV,VH"},
        {"anchor_id": anchor, "modality": "dem", "path": str(root / "DEM" / f"{tile}.tif"), "bands": "elevation"},
        {"anchor_id": anchor, "modality": "dynamic_world", "path": str(root / "LULC" / f"{tile}.tif"),
         "class_map": LULC_TO_DYNAMIC_WORLD},
    ]  # fmt: skip


def write_manifest(rows: list[dict], path: str | Path) -> Path:
    """A manifest file, CSV or JSON Lines by suffix."""
    path = Path(path)
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
            writer.writeheader()
            writer.writerows([{k: r.get(k, "") for k in MANIFEST_FIELDS} for r in rows])
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_terramind_manifest(root: str | Path, path: str | Path, copies: int = 1) -> Path:
    """A manifest over every location (`copies` > 1 repeats them under distinct anchor ids)."""
    tiles = list(LOCATIONS)
    rows = [
        r
        for i in range(copies * len(tiles))
        for r in manifest_rows(root, tiles[i % len(tiles)], anchor_id=None if copies == 1 else f"{tiles[i % len(tiles)]}-{i:04d}")
    ]
    return write_manifest(rows, path)
