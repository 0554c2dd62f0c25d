"""Parquet shards: one row per sample, raster layers as raw bytes, metadata and signals as typed columns.

Layout (spec section 6, measured there to decode 5-40x faster than nested-list Array3D columns):

* per modality ``m`` of the registry: ``m`` (little-endian bytes of a C-ordered array, null where the layer is absent),
  ``m_shape`` (list of int32: bands, height, width), ``m_dtype`` (numpy dtype string), ``m_bands``
  (band names in the stored order, so band order travels by name);
* filter columns readable without touching imagery: ``tile_id``, ``split``, ``lat``, ``lon``, ``datetime``
  (UTC ISO 8601 text, sortable), ``year``, ``month``, ``crs``, ``s2_product``, ``has_naip``, ``modalities``,
  and the headline signals (``country_code``, ``ndvi_mean``, ``water_percentage``, ``elevation_mean``,
  ``terrain_class``, ``snow_fraction``, ``cloud_fraction``);
* ``signals`` and ``metadata``: the full dicts as JSON text (their nested, optional groups would make
  struct schemas differ between shards where a group is absent everywhere, which breaks ``load_dataset``);
* ``caption``: empty until ``geomeld caption`` fills it; ``osm_tags`` (JSON text: the release's tags, for captions);
* ``thumbnail``: a 64 px PNG of B04/B03/B02 typed as a datasets ``Image`` (shown by the Hub's viewer);
* ``geometry``: the footprint as a lon/lat WKB polygon with GeoParquet 1.1 ``geo`` file metadata.

Layers are stored in their native dtypes (:data:`STORAGE`: Sentinel-2 int16 reflectance x 10000, Sentinel-1,
DEM and canopy height float16, each with its stated error); the loaders restore float32 with NaN. Every page
carries a CRC32 checksum (``write_page_checksum``) that readers verify.

Compression is per column: the raster bytes are LZ4, everything else zstd. On real
Sentinel texture LZ4 decompressed the float rasters several times faster than zstd level 3 (Sentinel-2:
2.7 vs 0.4 GB/s on the benchmark machine), and with zstd decompression alone held streaming reads near the
release's tar + h5 speed. The LZ4 files are ~1.45x zstd's size and ~0.63x the release's;
``benchmarks/bench_loader.py`` times both codecs in one run and records the sizes. Row groups hold
:data:`ROW_GROUP_SIZE` rows and ``datasets`` streams one row group per batch: in one interleaved run,
streaming read 3.3x / 3.9x / 4.1x the release's samples/s with 16 / 32 / 64-row groups; 32 keeps most of
the gain at half the batch memory of 64 (~50 MB of full samples, ~200 MB with NAIP).

One fixed Arrow schema (:data:`SCHEMA`) for every shard, rows sorted by ``tile_id``, a fixed row-group
size and no timestamps: the same samples always give the same bytes. Files are written under a temporary
name and renamed, so a reader never sees half a shard.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from modeling_geomeld.modalities import MODALITIES

from .hf_features import features_metadata
from .types import AlignedSample


@dataclass(frozen=True)
class StoredAs:
    """How a float layer is stored on disk (decoded back to float32 with NaN by :mod:`dataset_scripts.loading`).

    Attributes:
        dtype: the stored numpy dtype.
        nodata: the integer value standing for NaN (integer storage), ``None`` where the dtype keeps NaN.
        error: the largest representation error, as stated in the card.
    """

    dtype: str
    nodata: int | None
    error: str


#: native storage per layer (spec: the source's own quantisation, not float32): the data, in one place
STORAGE: dict[str, StoredAs] = {
    # L1C/L2A are distributed as uint16 DN = reflectance x 10000 (offset-harmonised upstream, so integral);
    # int16 keeps the few negative values of harmonised dark pixels; -32768 (never a reflectance) is NaN
    "sentinel2": StoredAs("int16", -32768, "none for integral values; resampled values round to the nearest DN (<= 0.5, reflectance 5e-5)"),
    # dB in -64..64: float16 spacing is 2^-6 dB below 32 dB, 2^-5 above, so |error| <= 0.0078 dB (<= 0.016 dB
    # for 32..64 dB), far below Sentinel-1's ~1 dB radiometric accuracy; NaN stays NaN
    "sentinel1": StoredAs("float16", None, "<= 0.0078 dB for |x| < 32 dB, <= 0.016 dB up to 64 dB"),
    # elevation (m) and slope (deg): float16 spacing 0.25 m below 512 m, 1 m below 2048 m, 4 m up to 8192 m,
    # so |error| <= 0.125 / 0.5 / 2 m, within Copernicus DEM's 4 m absolute vertical accuracy (signals such as
    # elevation_mean are computed from the float32 values before storage); slope <= 0.03 deg
    "dem": StoredAs("float16", None, "<= 0.5 m below 2048 m, <= 2 m up to 8192 m; slope <= 0.03 deg"),
    # canopy height 0..120 m: spacing <= 0.0625 m, |error| <= 0.03 m (the product's own error is metres)
    "canopy_height": StoredAs("float16", None, "<= 0.03 m"),
}  # fmt: skip


def to_storage(name: str, array: np.ndarray) -> np.ndarray:
    """``array`` in its :data:`STORAGE` dtype where it is a float layer that fits; else unchanged."""
    stored = STORAGE.get(name)
    if stored is None or array.dtype.kind != "f":
        return array
    kind = np.dtype(stored.dtype)
    finite = np.isfinite(array)
    values = array[finite]
    if kind.kind in "iu":
        info = np.iinfo(kind)
        if values.size and (values.min() <= info.min or values.max() > info.max):  # info.min is the no-data
            return array  # implausible values (the range check quarantines them): keep them as they are
        out = np.full(array.shape, stored.nodata, dtype=kind)
        out[finite] = np.rint(values)
        return out
    if values.size and np.abs(values).max() > float(np.finfo(kind).max) / 2:
        return array
    return array.astype(kind)

LAYERS: tuple[str, ...] = tuple(MODALITIES)
SPLITS: tuple[str, ...] = ("train", "validation", "test")
ROW_GROUP_SIZE = 32
ZSTD_LEVEL = 3
#: the codec of the raster byte columns (the other columns are zstd at :data:`ZSTD_LEVEL`)
RASTER_CODEC = "lz4"

_FILTER_FIELDS = [
    pa.field("tile_id", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("lat", pa.float64()),
    pa.field("lon", pa.float64()),
    pa.field("datetime", pa.string()),
    pa.field("year", pa.int16()),
    pa.field("month", pa.int8()),
    pa.field("crs", pa.string()),
    pa.field("s2_product", pa.string()),
    pa.field("has_naip", pa.bool_()),
    pa.field("modalities", pa.list_(pa.string())),
    pa.field("country_code", pa.string()),
    pa.field("ndvi_mean", pa.float32()),
    pa.field("water_percentage", pa.float32()),
    pa.field("elevation_mean", pa.float32()),
    pa.field("terrain_class", pa.string()),
    pa.field("snow_fraction", pa.float32()),
    pa.field("cloud_fraction", pa.float32()),
    pa.field("signals", pa.string()),
    pa.field("metadata", pa.string()),
    pa.field("caption", pa.string()),
    pa.field("osm_tags", pa.string()),  # the release's OpenStreetMap tags as JSON text, for the captions
    # a small RGB preview (Sentinel-2 B04/B03/B02) as a datasets Image, which the Hub's viewer shows
    pa.field("thumbnail", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    # the footprint as WKB in lon/lat (GeoParquet 1.1, "geo" file metadata): geopandas / DuckDB read it spatially
    pa.field("geometry", pa.binary()),
]
_LAYER_FIELDS = [
    f
    for name in LAYERS
    for f in (
        pa.field(name, pa.binary()),
        pa.field(f"{name}_shape", pa.list_(pa.int32())),
        pa.field(f"{name}_dtype", pa.string()),
        pa.field(f"{name}_bands", pa.list_(pa.string())),
    )
]
_PLAIN_SCHEMA = pa.schema(_FILTER_FIELDS + _LAYER_FIELDS)
#: GeoParquet 1.1 column metadata of ``geometry`` (CRS omitted: OGC:CRS84, lon/lat, by the specification)
GEO_METADATA = {
    "version": "1.1.0",
    "primary_column": "geometry",
    "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"]}},
}


def _schema() -> pa.Schema:
    """:data:`_PLAIN_SCHEMA` with the ``geo`` metadata and datasets' features (``thumbnail`` as an Image)."""
    # decode=False: rows carry the PNG bytes, never a PIL decode per row access (a map-style epoch would pay
    # it for every sample); the column is still typed Image, which is what the Hub's viewer renders. Written
    # without importing datasets, which would cost every builder worker seconds (dataset_scripts.hf_features)
    hf = features_metadata(_PLAIN_SCHEMA, {"thumbnail": {"decode": False, "_type": "Image"}})
    return _PLAIN_SCHEMA.with_metadata({b"geo": json.dumps(GEO_METADATA).encode(), b"huggingface": hf})


SCHEMA = _schema()
#: columns worth dictionary encoding (small, repetitive); raster bytes never are
_DICTIONARY_COLUMNS = [
    "split", "crs", "s2_product", "country_code", "terrain_class",
    *(f"{n}_dtype" for n in LAYERS), *(f"{n}_bands" for n in LAYERS),
]  # fmt: skip


def _leaf_path(field: pa.Field) -> str:
    """The Parquet column path of a field of :data:`SCHEMA` (a list's values live in ``name.list.element``)."""
    return f"{field.name}.list.element" if pa.types.is_list(field.type) else field.name


def _leaf_paths(field: pa.Field) -> list[str]:
    if pa.types.is_struct(field.type):
        return [f"{field.name}.{field.type.field(i).name}" for i in range(field.type.num_fields)]
    return [_leaf_path(field)]


#: codec per Parquet column, and zstd's level for the zstd ones
COLUMN_CODECS: dict[str, str] = {
    path: RASTER_CODEC if f.name in LAYERS else "zstd" for f in SCHEMA for path in _leaf_paths(f)
}
_COLUMN_LEVELS: dict[str, int] = {path: ZSTD_LEVEL for path, codec in COLUMN_CODECS.items() if codec == "zstd"}


def spatial_split(
    lat: float,
    lon: float,
    block_deg: float = 0.5,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: str = "geomeld",
) -> str:
    """Split of the ``block_deg`` x ``block_deg`` degree block holding (lat, lon): a hash, so it is stable.

    Every tile of a block shares its split, so neighbouring tiles inside a block never straddle splits;
    blocks (about 55 km at 0.5 deg) are much larger than a tile (1.28 km), so only tiles touching a
    block edge have a neighbour in another block.
    """
    if (
        len(fractions) != len(SPLITS)
        or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6)
        or min(fractions) < 0
    ):
        raise ValueError(
            f"split fractions must be 3 non-negative numbers summing to 1, found {list(fractions)}"
        )
    row, col = math.floor((lat + 90.0) / block_deg), math.floor((lon + 180.0) / block_deg)
    digest = hashlib.sha256(f"{seed}:{block_deg}:{row}:{col}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edges = np.cumsum(fractions)
    return SPLITS[min(int(np.searchsorted(edges, u, side="right")), len(SPLITS) - 1)]


def plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python values and NaN/inf as ``None`` (strict JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json(value: Any) -> str:
    return json.dumps(
        plain(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )


#: the thumbnail's side in pixels and the reflectance x 10000 shown as white
THUMBNAIL_PX = 64
THUMBNAIL_WHITE = 3000.0


def _thumbnail(sample: AlignedSample) -> dict[str, Any] | None:
    """A ``THUMBNAIL_PX`` PNG of Sentinel-2 B04/B03/B02 (no-data black), as a datasets Image value."""
    import io

    from PIL import Image

    array, names = sample.arrays.get("sentinel2"), list(sample.bands.get("sentinel2", ()))
    if array is None or not {"B04", "B03", "B02"} <= set(names):
        return None
    rgb = np.stack([array[names.index(b)] for b in ("B04", "B03", "B02")], axis=-1).astype(np.float32)
    rgb = np.nan_to_num(np.clip(rgb / THUMBNAIL_WHITE, 0.0, 1.0) * 255.0, nan=0.0).astype(np.uint8)
    image = Image.fromarray(rgb).resize((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.BOX)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return {"bytes": buf.getvalue(), "path": None}


def footprint_wkb(meta: Mapping[str, Any]) -> bytes | None:
    """The sample's footprint (``bounds`` in ``crs``) as a lon/lat WKB polygon, or ``None`` without them."""
    import struct

    bounds, crs = meta.get("bounds"), meta.get("crs")
    if not bounds or not crs or len(bounds) != 4:
        return None
    from rasterio.warp import transform

    west, south, east, north = (float(b) for b in bounds)
    xs, ys = [west, east, east, west, west], [south, south, north, north, south]  # counter-clockwise shell
    lons, lats = transform(crs, "EPSG:4326", xs, ys)
    points = b"".join(struct.pack("<dd", x, y) for x, y in zip(lons, lats, strict=True))
    return struct.pack("<BIII", 1, 3, 1, 5) + points  # little-endian, Polygon, 1 ring, 5 points


def sample_row(
    sample: AlignedSample, signals: Mapping[str, Any], split: str, filters: Mapping[str, Any]
) -> dict[str, Any]:
    """One Parquet row of :data:`SCHEMA` for an aligned sample and its signals."""
    meta = sample.metadata
    when = meta.get("datetime")
    row: dict[str, Any] = {
        "tile_id": sample.tile_id,
        "split": split,
        "lat": meta.get("lat"),
        "lon": meta.get("lon"),
        "datetime": when,
        "year": int(when[:4]) if when else None,
        "month": int(when[5:7]) if when else None,
        "crs": meta.get("crs"),
        "s2_product": meta.get("s2_product"),
        "has_naip": "naip" in sample.arrays,
        "modalities": [m for m in LAYERS if m in sample.arrays],
        **filters,
        "signals": _json(signals),
        "metadata": _json({**meta, "bands": {k: list(v) for k, v in sample.bands.items()}}),
        "caption": "",
        "osm_tags": _json(meta.get("osm_tags") or {}),
        "thumbnail": _thumbnail(sample),
        "geometry": footprint_wkb(meta),
    }
    for name in LAYERS:
        array = sample.arrays.get(name)
        if array is None:
            row.update({name: None, f"{name}_shape": None, f"{name}_dtype": None, f"{name}_bands": None})
            continue
        array = to_storage(name, array)
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))  # bytes are little-endian
        row.update(
            {
                name: array.tobytes(),
                f"{name}_shape": [int(s) for s in array.shape],
                f"{name}_dtype": array.dtype.name,
                f"{name}_bands": list(sample.bands[name]),
            }
        )
    return row


#: columns older rows (written before they existed, e.g. re-read by `geomeld caption`) may lack
_OPTIONAL = ("osm_tags", "thumbnail", "geometry")


def write_shard(rows: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write rows (sorted by ``tile_id``) to ``path`` atomically; returns the number of rows."""
    ordered = sorted(rows, key=lambda r: r["tile_id"])
    table = pa.Table.from_pylist([{**r, **{k: r.get(k) for k in _OPTIONAL}} for r in ordered], schema=SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(
        table,
        tmp,
        compression=COLUMN_CODECS,
        compression_level=_COLUMN_LEVELS,
        row_group_size=ROW_GROUP_SIZE,
        use_dictionary=_DICTIONARY_COLUMNS,
        write_statistics=["tile_id", "lat", "lon", "datetime", "year", "month"],
        write_page_checksum=True,  # CRC32 per page: bit rot fails the read (page_checksum_verification)
    )
    os.replace(tmp, path)
    from .integrity import record_rewrite

    record_rewrite(path)  # a shard of a finished build rewritten in place (captions): its sha256 follows
    return len(ordered)


def shard_file(root: Path, subset: str, split: str, shard: int) -> Path:
    """``DIR/data/<naip|non_naip>/<split>-<shard>.parquet``: the card's configs glob these names."""
    return root / "data" / subset / f"{split}-{shard:05d}.parquet"
