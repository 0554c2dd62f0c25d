"""The real BigEarthNet-MM examples that the PyPI package `bigearthnet-common` ships: the embedded default data.

Six Sentinel-2 L2A patches (1.2 km, 12 bands as separate GeoTIFFs at 10/20/60 m) with their Sentinel-1
VV/VH pairs (dB, 10 m) and CORINE multi-labels, inside two tar.bz2 files of the package. This module
extracts them safely (no absolute paths or links), writes a builder manifest for them (one row per band
file, bands named), and reads them as arrays on the 10 m grid for quick experiments.

Licence of the data: BigEarthNet is CDLA-Permissive-1.0; it contains modified Copernicus Sentinel data.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modeling_geomeld.modalities import SENTINEL2_BANDS

ARCHIVES = ("BigEarthNet-S2-Example.tar.bz2", "BigEarthNet-S1-Example.tar.bz2")


@dataclass
class BigEarthNetPatch:
    """One S2 patch with its S1 pair. `sentinel2` is (12, 120, 120) uint16 in `SENTINEL2_BANDS` order."""

    name: str
    labels: list[str]
    s2_date: str
    s1_date: str | None
    crs: str
    bounds: tuple[float, float, float, float]  # (left, bottom, right, top) in `crs`
    s2_files: dict[str, Path] = field(default_factory=dict)
    s1_files: dict[str, Path] = field(default_factory=dict)


def package_dir() -> Path:
    spec = importlib.util.find_spec("bigearthnet_common")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the BigEarthNet examples need `pip install bigearthnet-common` (a geomeld dependency)")
    return Path(next(iter(spec.submodule_search_locations)))


def extract_examples(dest: str | Path) -> list[BigEarthNetPatch]:
    """Extract the packaged examples under `dest` (idempotent) and describe the six patches."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    src = package_dir()
    for archive in ARCHIVES:
        if not (dest / archive.removesuffix(".tar.bz2")).is_dir():
            with tarfile.open(src / archive, "r:bz2") as tar:
                tar.extractall(dest, filter="data")  # refuses absolute paths, links out of dest, devices
    s1_by_s2: dict[str, Path] = {}
    for meta in sorted((dest / "BigEarthNet-S1-Example").glob("*/*_labels_metadata.json")):
        s1_by_s2[json.loads(meta.read_text())["corresponding_s2_patch"]] = meta
    patches = []
    for meta_path in sorted((dest / "BigEarthNet-S2-Example").glob("*/*_labels_metadata.json")):
        meta = json.loads(meta_path.read_text())
        name = meta_path.parent.name
        c = meta["coordinates"]
        patch = BigEarthNetPatch(
            name=name,
            labels=list(meta["labels"]),
            s2_date=meta["acquisition_date"].replace(" ", "T"),
            s1_date=None,
            crs=_epsg_of(meta["projection"]),
            bounds=(float(c["ulx"]), float(c["lry"]), float(c["lrx"]), float(c["uly"])),
            s2_files={b: meta_path.parent / f"{name}_{b}.tif" for b in SENTINEL2_BANDS},
        )
        if name in s1_by_s2:
            s1_meta = s1_by_s2[name]
            patch.s1_date = json.loads(s1_meta.read_text())["acquisition_time"]
            patch.s1_files = {p: s1_meta.parent / f"{s1_meta.parent.name}_{p}.tif" for p in ("VV", "VH")}
        missing = [str(p) for p in [*patch.s2_files.values(), *patch.s1_files.values()] if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"BigEarthNet example {name} lacks files {missing}")
        patches.append(patch)
    if len(patches) != 6:
        raise ValueError(f"expected the 6 BigEarthNet example patches, found {len(patches)} under {dest}")
    return patches


def _epsg_of(wkt: str) -> str:
    marker = 'AUTHORITY["EPSG","'
    code = wkt[wkt.rindex(marker) + len(marker) :].split('"')[0]
    return f"EPSG:{code}"


def write_manifest(patches: list[BigEarthNetPatch], path: str | Path) -> Path:
    """A builder manifest (CSV, one row per band file) for the patches: `geomeld build --source manifest:PATH`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["anchor_id", "modality", "path", "bands", "datetime"])
        writer.writeheader()
        for p in patches:
            for band, file in p.s2_files.items():
                writer.writerow({"anchor_id": p.name, "modality": "sentinel2_l2a", "path": str(file), "bands": band, "datetime": p.s2_date})
            for pol, file in p.s1_files.items():
                writer.writerow({"anchor_id": p.name, "modality": "sentinel1", "path": str(file), "bands": pol, "datetime": p.s1_date or ""})
    return path


def read_patch(patch: BigEarthNetPatch) -> dict[str, np.ndarray]:
    """Arrays on the 10 m grid: `sentinel2_l2a` (12, 120, 120) float32 (20/60 m bands resampled bilinearly)
    and `sentinel1` (2, 120, 120) float32 dB (VV, VH)."""
    import rasterio
    from rasterio.enums import Resampling

    def read(file: Path) -> np.ndarray:
        with rasterio.open(file) as src:
            return src.read(1, out_shape=(120, 120), resampling=Resampling.bilinear).astype(np.float32)

    out = {"sentinel2_l2a": np.stack([read(patch.s2_files[b]) for b in SENTINEL2_BANDS])}
    if patch.s1_files:
        out["sentinel1"] = np.stack([read(patch.s1_files[p]) for p in ("VV", "VH")])
    return out
