"""Shared pieces of the builder tests: manifests over the real TerraMind samples, written into tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import rasterio

from dataset_scripts.terramind import LULC_TO_DYNAMIC_WORLD  # the class map and its reasoning live there

TERRAMIND_IDS = ("282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3")
#: README coordinates of the five locations (shared/data/README.md)
README_LATLON = {
    "282D_485L_3_3": (-25.3, -48.1),
    "38D_378R_2_3": (-3.4, 34.1),
    "433D_629L_3_1": (-38.8, -72.5),
    "609U_541L_3_0": (54.8, -84.0),
    "637U_59R_1_3": (57.2, 9.8),
}
FIELDS = ["anchor_id", "modality", "path", "bands", "datetime", "lat", "lon", "class_map", "cloud_cover"]


def s2_datetime(terramind: Path, tile: str) -> str:
    """The S2 files carry no date; the LULC layer, derived from the same S2 scene, does."""
    with rasterio.open(terramind / "LULC" / f"{tile}.tif") as ds:
        return ds.tags()["datetime"]


def terramind_rows(
    terramind: Path, tile: str, *, product: str = "l2a", anchor_id: str | None = None
) -> list[dict]:
    """Manifest rows for one location: S2 (L2A or L1C), S1 (VV, VH), DEM (elevation) and LULC -> Dynamic World."""
    anchor = anchor_id or tile
    folder = "S2L2A" if product == "l2a" else "S2L1C"
    return [
        {"anchor_id": anchor, "modality": f"sentinel2_{product}", "path": str(terramind / folder / f"{tile}.tif"),
         "datetime": s2_datetime(terramind, tile), "cloud_cover": "" if product == "l2a" else "1.5"},
        {"anchor_id": anchor, "modality": "sentinel1", "path": str(terramind / "S1RTC" / f"{tile}.tif"), "bands": "VV,VH"},
        {"anchor_id": anchor, "modality": "dem", "path": str(terramind / "DEM" / f"{tile}.tif"), "bands": "elevation"},
        {"anchor_id": anchor, "modality": "dynamic_world", "path": str(terramind / "LULC" / f"{tile}.tif"),
         "class_map": LULC_TO_DYNAMIC_WORLD},
    ]  # fmt: skip


def write_manifest(rows: list[dict], path: Path) -> Path:
    """CSV or JSON Lines by suffix."""
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows([{k: r.get(k, "") for k in FIELDS} for r in rows])
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
