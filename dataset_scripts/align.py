"""The alignment protocol: every layer of an anchor reprojected onto one square grid in the local UTM zone.

What happens to an :class:`~dataset_scripts.types.AnchorRequest` (defaults are the spec's, all configurable
through :class:`AlignConfig`):

1. **Grid.** The anchor's centre is its ``lat``/``lon`` or, where the source gives none, the centre of the
   files' common footprint. The grid is ``size_px`` x ``size_px`` pixels of ``gsd`` metres (128 x 10 m) in
   the UTM zone of that centre. When the Sentinel-2 file already lies in that CRS at that resolution, the
   grid snaps to its pixel lattice so Sentinel-2 is copied, not resampled; otherwise the origin snaps to
   multiples of ``gsd``. NAIP gets the same footprint at ``naip_gsd`` (1 m, 1280 x 1280).
2. **Reading.** Each file is read through a window covering the footprint only (a COG over HTTP reads a
   few tiles). A footprint not covered by the file is ``footprint_outside``.
3. **Resampling by type.** Continuous layers use ``bilinear`` (no-data as NaN, so it never bleeds into
   valid pixels); class maps use ``mode`` (nearest when upsampling), after the ``class_map`` has turned
   another product's codes into the target's codes (unmapped codes become no-data).
4. **Bands by name.** Each file's bands are named (``LayerRef.bands`` or the registry's canonical order)
   and the stored array holds the registry's bands in registry order: Sentinel-2 L1C's B10 (cirrus) is
   dropped by name, Sentinel-1 polarisation-only bands stay ``VV``/``VH`` (no orbit is invented), a DEM
   holding elevation alone gets ``slope`` derived on the final grid (Horn, ``modalities.slope_degrees``).
5. **Temporal rules.** Sentinel-2 scene cloud cover under ``max_cloud_cover`` percent, from metadata
   (``cloud_cover``/``eo:cloud_cover`` properties or the file's tags) or, where they lack it, estimated on
   the footprint (:func:`estimate_cloud_fraction`); Sentinel-1 and Dynamic World within
   ``max_offset_days`` of the Sentinel-2 date. Offsets are recorded in days.
6. **Absent layers** are recorded in ``metadata["absent"]``, never zero-filled.
7. **Sentinel-2 radiometric harmonisation** (:func:`harmonise_sentinel2`, the one place it happens).
   From processing baseline 04.00 (25 Jan 2022) L1C and L2A pixels carry +1000 (``RADIO_ADD_OFFSET`` /
   ``BOA_ADD_OFFSET`` = -1000); the 2017-2022 corpus spans both baselines, so the stored Sentinel-2 is
   always offset-free reflectance x 10000 (integral values, float32 with NaN no-data), whatever the
   product's baseline. The offset is read from metadata (:func:`sentinel2_offset`: an explicit offset from a
   manifest column or the release metadata, STAC ``raster:bands`` offset/scale, Earth Search's
   ``earthsearch:boa_offset_applied``, ``s2:processing_baseline``, or the file's tags), else, for L1C with
   its cirrus band, from the B10 level; it is removed from the source pixels before resampling (so both
   baselines resample identical numbers) and recorded in the metadata: ``s2_offset_removed``,
   ``s2_offset_source``, ``s2_processing_baseline``; ``s2_radiometric_offset`` is the offset left in the
   stored values, i.e. 0.

Every bad input raises :class:`~dataset_scripts.types.QuarantineError` with its reason code and a message
saying what was expected and what was found.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from modeling_geomeld.modalities import MODALITIES, Modality, resolve, slope_degrees

from .budget import DEFAULT_MAX_READ_VALUES, check_read_budget
from .profile import count, stage
from .sources.manifest import canonical_bands
from .types import AlignedSample, AnchorRequest, LayerRef, QuarantineError

#: bands the stored layers never carry, by modality (B10 exists in L1C only; the spec's 12 bands omit it)
DROPPED_BANDS: Mapping[str, frozenset[str]] = {"sentinel2": frozenset({"B10"})}
#: layers whose date must fall within ``max_offset_days`` of the Sentinel-2 date
TIME_MATCHED = ("sentinel1", "dynamic_world")
#: file tags that may carry an acquisition time, in order of preference
DATETIME_TAGS = ("datetime", "DATETIME", "ACQUISITION_DATE", "SENSING_TIME", "TIFFTAG_DATETIME")
#: file tags and source properties that may carry the Sentinel-2 scene cloud cover, in percent
CLOUD_KEYS = (
    "cloud_cover",
    "eo:cloud_cover",
    "CLOUDY_PIXEL_PERCENTAGE",
    "CLOUD_COVERAGE_ASSESSMENT",
    "CLOUD_COVER",
)
_RESAMPLING = {r.name: r for r in Resampling}
#: the DN offset of Sentinel-2 processing baseline >= 04.00 (RADIO_ADD_OFFSET / BOA_ADD_OFFSET = -1000)
S2_BASELINE_04_OFFSET = 1000.0
#: source properties / file tags giving that offset explicitly (manifest column, release metadata, product)
S2_OFFSET_KEYS = ("radiometric_offset", "s2:radiometric_offset", "BOA_ADD_OFFSET", "RADIO_ADD_OFFSET")
#: source properties / file tags giving the processing baseline (``"02.12"``, ``"05.11"``)
S2_BASELINE_KEYS = ("s2:processing_baseline", "processing_baseline", "PROCESSING_BASELINE")


@dataclass(frozen=True)
class AlignConfig:
    """Knobs of the alignment protocol; defaults follow the spec (section 1).

    Attributes:
        size_px: grid side in pixels at ``gsd``.
        gsd: ground sampling distance of the common grid, metres.
        naip_gsd: NAIP's ground sampling distance over the same footprint, metres.
        max_cloud_cover: Sentinel-2 scene cloud cover must be below this, percent.
        max_offset_days: Sentinel-1 / Dynamic World must lie within this many days of the Sentinel-2 date.
        continuous_resampling / categorical_resampling: ``rasterio`` resampling names.
        max_nodata_fraction: a continuous layer with more no-data than this over the footprint is bad input.
        min_coverage: the fraction of the footprint a file must cover (below it: ``footprint_outside``).
        cloud_probability_threshold: s2cloudless probability above which a pixel counts as cloud.
        max_read_values: the pixel budget of one raster read, bands x rows x columns, checked from the
            file's header before reading (:mod:`dataset_scripts.budget`).
    """

    size_px: int = 128
    gsd: float = 10.0
    naip_gsd: float = 1.0
    max_cloud_cover: float = 10.0
    max_offset_days: float = 15.0
    continuous_resampling: str = "bilinear"
    categorical_resampling: str = "mode"
    max_nodata_fraction: float = 0.5
    min_coverage: float = 0.999
    cloud_probability_threshold: float = 0.4
    max_read_values: int = DEFAULT_MAX_READ_VALUES

    def __post_init__(self) -> None:
        if self.size_px < 8:
            raise ValueError(f"size_px must be at least 8, found {self.size_px}")
        for name in ("gsd", "naip_gsd", "max_offset_days"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, found {getattr(self, name)}")
        if not 0 <= self.max_cloud_cover <= 100:
            raise ValueError(f"max_cloud_cover is a percentage in [0, 100], found {self.max_cloud_cover}")
        for name in ("max_nodata_fraction", "min_coverage", "cloud_probability_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], found {getattr(self, name)}")
        for name in ("continuous_resampling", "categorical_resampling"):
            if getattr(self, name) not in _RESAMPLING:
                raise ValueError(
                    f"{name} must be one of {sorted(_RESAMPLING)}, found {getattr(self, name)!r}"
                )


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: CRS, affine transform (top-left origin) and size."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        return left, top + self.transform.e * self.height, left + self.transform.a * self.width, top

    def with_gsd(self, gsd: float) -> Grid:
        """The same footprint at another resolution (NAIP's 1 m grid)."""
        left, bottom, right, top = self.bounds
        width = round((right - left) / gsd)
        return Grid(self.crs, Affine(gsd, 0.0, left, 0.0, -gsd, top), width, round((top - bottom) / gsd))


@dataclass
class _Opened:
    """One layer file, opened, with what the aligner learnt from its header."""

    ref: LayerRef
    modality: Modality
    variant: str
    dataset: Any  # rasterio DatasetReader
    bands: tuple[str, ...]
    datetime: datetime | None
    extra: dict[str, Any] = field(default_factory=dict)


# -- small helpers ----------------------------------------------------------------------------------------
def parse_datetime(text: str | None) -> datetime | None:
    """ISO 8601 (any fraction length, ``Z``) or TIFF ``YYYY:MM:DD HH:MM:SS`` -> aware UTC datetime.

    Returns ``None`` for empty input and raises ``ValueError`` for text that is not a date.
    """
    if text is None or not str(text).strip():
        return None
    s = str(text).strip()
    if re.match(r"^\d{4}:\d{2}:\d{2} ", s):  # TIFFTAG_DATETIME
        s = s[:4] + "-" + s[5:7] + "-" + s[8:10] + "T" + s[11:]
    s = re.sub(r"(\.\d{6})\d+", r"\1", s.replace("Z", "+00:00"))  # numpy writes nanoseconds
    try:
        value = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 date/time, found {text!r}") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def iso(value: datetime | None) -> str | None:
    """Canonical UTC ISO text (second precision, ``Z``): stable across runs, sortable as text."""
    return None if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utm_crs(lat: float, lon: float) -> CRS:
    """The WGS 84 / UTM zone of a point (the regular 6-degree zones; north 326xx, south 327xx)."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _lonlat_to(crs: CRS, lon: float, lat: float) -> tuple[float, float]:
    from rasterio.warp import transform

    xs, ys = transform(CRS.from_epsg(4326), crs, [lon], [lat])
    return xs[0], ys[0]


def _to_lonlat(crs: CRS, x: float, y: float) -> tuple[float, float]:
    from rasterio.warp import transform

    lons, lats = transform(crs, CRS.from_epsg(4326), [x], [y])
    return lons[0], lats[0]


def _overlap_fraction(inner: Sequence[float], outer: Sequence[float]) -> float:
    """Area of ``inner`` covered by ``outer`` (both left, bottom, right, top), as a fraction of ``inner``."""
    w = max(0.0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    h = max(0.0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return w * h / area if area > 0 else 0.0


# -- opening and validating files ---------------------------------------------------------------------------
def _is_local(path: str) -> bool:
    return "://" not in path and not path.startswith("/vsi")


def _open(ref: LayerRef, anchor_id: str) -> Any:
    """``rasterio.open`` with its failures turned into quarantine reasons."""
    where = f"anchor {anchor_id!r}, {ref.modality} file {ref.path}"
    if _is_local(ref.path) and (not os.path.isfile(ref.path) or not os.access(ref.path, os.R_OK)):
        raise QuarantineError(
            "unreadable_path", f"{where}: expected a readable file, found none at that path"
        )
    try:
        dataset = rasterio.open(ref.path)
    except RasterioError as err:
        reason = "corrupt_file" if _is_local(ref.path) else "unreadable_path"
        raise QuarantineError(
            reason, f"{where}: expected a raster GDAL can open, found an error: {err}"
        ) from None
    if dataset.crs is None:
        dataset.close()
        raise QuarantineError(
            "missing_crs", f"{where}: expected a georeferenced raster with a CRS, found none"
        )
    return dataset


def _layer_datetime(ref: LayerRef, dataset: Any, where: str) -> datetime | None:
    text = ref.datetime
    if text is None:
        tags = dataset.tags()
        text = next((tags[k] for k in DATETIME_TAGS if tags.get(k)), None)
    try:
        return parse_datetime(text)
    except ValueError as err:
        raise QuarantineError("bad_datetime", f"{where}: {err}") from None


def _open_layer(ref: LayerRef, anchor_id: str) -> _Opened:
    mod, variant = resolve(ref.modality)
    with stage("read"):  # opening reads the header: part of reading a window (a remote COG's first request)
        dataset = _open(ref, anchor_id)
    count("files_opened", 1)
    where = f"anchor {anchor_id!r}, {ref.modality} file {ref.path}"
    try:
        if ref.bands is not None:
            bands = ref.bands
            if len(bands) != dataset.count:
                raise QuarantineError(
                    "band_count_mismatch",
                    f"{where}: expected {len(bands)} bands as the manifest names ({','.join(bands)}), "
                    f"found {dataset.count} in the file",
                )
        else:
            canonical = canonical_bands(ref.modality, dataset.count)
            if canonical is None:
                raise QuarantineError(
                    "band_count_mismatch",
                    f"{where}: no band names were given and the file has {dataset.count} bands, which matches no "
                    f"canonical order of {ref.modality} (expected {len(mod.default_bands)}: "
                    f"{','.join(mod.default_bands)})",
                )
            bands = canonical
        return _Opened(ref, mod, variant, dataset, tuple(bands), _layer_datetime(ref, dataset, where))
    except QuarantineError:
        dataset.close()
        raise


# -- the grid ----------------------------------------------------------------------------------------------
def _common_centre(layers: Sequence[_Opened], anchor_id: str) -> tuple[float, float]:
    """(lat, lon) of the centre of the intersection of all files' footprints."""
    first = layers[0].dataset
    lon0, lat0 = _to_lonlat(
        first.crs, (first.bounds.left + first.bounds.right) / 2, (first.bounds.bottom + first.bounds.top) / 2
    )
    crs = utm_crs(lat0, lon0)
    boxes = [
        transform_bounds(layer.dataset.crs, crs, *layer.dataset.bounds, densify_pts=21) for layer in layers
    ]
    left, bottom = max(b[0] for b in boxes), max(b[1] for b in boxes)
    right, top = min(b[2] for b in boxes), min(b[3] for b in boxes)
    if right <= left or top <= bottom:
        raise QuarantineError(
            "footprint_outside",
            f"anchor {anchor_id!r}: expected the files' footprints to overlap, found no common area "
            f"({', '.join(os.path.basename(layer.ref.path) for layer in layers)})",
        )
    lon, lat = _to_lonlat(crs, (left + right) / 2, (bottom + top) / 2)
    return lat, lon


def _snap(value: float, origin: float, step: float) -> float:
    return origin + round((value - origin) / step) * step


def anchor_grid(lat: float, lon: float, config: AlignConfig, reference: Any | None = None) -> Grid:
    """The ``size_px`` x ``size_px`` grid centred on (lat, lon) in its UTM zone.

    ``reference`` (an open dataset, Sentinel-2 in practice) lends its pixel lattice when it shares the
    grid's CRS and resolution, so that layer is copied rather than resampled.
    """
    crs = utm_crs(lat, lon)
    x, y = _lonlat_to(crs, lon, lat)
    half = config.size_px * config.gsd / 2
    origin_x, origin_y = 0.0, 0.0
    if (
        reference is not None
        and reference.crs == crs
        and all(math.isclose(abs(r), config.gsd, rel_tol=1e-6) for r in reference.res)
    ):
        origin_x, origin_y = reference.transform.c, reference.transform.f
    left = _snap(x - half, origin_x, config.gsd)
    top = _snap(y + half, origin_y, config.gsd)
    return Grid(crs, Affine(config.gsd, 0.0, left, 0.0, -config.gsd, top), config.size_px, config.size_px)


# -- reading and reprojecting -------------------------------------------------------------------------------
def _read_window(
    layer: _Opened, grid: Grid, anchor_id: str, config: AlignConfig
) -> tuple[np.ndarray, Affine]:
    """The file's pixels under the footprint (plus a margin for the resampling kernel) and their transform."""
    ds = layer.dataset
    where = f"anchor {anchor_id!r}, {layer.ref.modality} file {layer.ref.path}"
    src_bounds = transform_bounds(grid.crs, ds.crs, *grid.bounds, densify_pts=21)
    covered = _overlap_fraction(src_bounds, tuple(ds.bounds))
    if covered < config.min_coverage:
        raise QuarantineError(
            "footprint_outside",
            f"{where}: expected the footprint {tuple(round(b, 6) for b in src_bounds)} ({ds.crs}) inside the file's "
            f"bounds {tuple(round(b, 6) for b in ds.bounds)}, found {covered:.1%} of it covered",
        )
    window = from_bounds(*src_bounds, transform=ds.transform)
    col0, row0 = max(0, math.floor(window.col_off) - 2), max(0, math.floor(window.row_off) - 2)
    col1 = min(ds.width, math.ceil(window.col_off + window.width) + 2)
    row1 = min(ds.height, math.ceil(window.row_off + window.height) + 2)
    window = Window(col0, row0, col1 - col0, row1 - row0)
    check_read_budget(ds.count, row1 - row0, col1 - col0, ds.dtypes[0], config.max_read_values, where)
    try:
        with stage("read"):
            data = ds.read(window=window)
        count("window_bytes", data.nbytes)
    except RasterioError as err:
        raise QuarantineError(
            "corrupt_file", f"{where}: expected readable pixel data, found a read error: {err}"
        ) from None
    return data, ds.window_transform(window)


def _invalid_reason(data: np.ndarray, nodata: float | None) -> tuple[str, float]:
    """Which kind of emptiness dominates a source window: ``("nan_filled"|"all_nodata", invalid fraction)``."""
    nan = np.isnan(data) if data.dtype.kind == "f" else np.zeros(data.shape, dtype=bool)
    nod = (
        (data == nodata)
        if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata))
        else np.zeros(data.shape, dtype=bool)
    )
    reason = "nan_filled" if nan.sum() >= nod.sum() and nan.any() else "all_nodata"
    return reason, float((nan | nod).mean()) if data.size else 1.0


def _class_lut(layer: _Opened, nodata_code: int) -> np.ndarray:
    """Source code -> target code lookup (256 entries); unmapped codes become no-data."""
    lut = np.full(256, nodata_code, dtype=np.uint8)
    if layer.ref.class_map is not None:
        for src, dst in layer.ref.class_map.items():
            if 0 <= src < 256:
                lut[src] = dst
    else:
        for c in layer.modality.classes:
            lut[c.code] = c.code
    return lut


def _warp(
    data: np.ndarray, src_transform: Affine, src_crs: CRS, grid: Grid, resampling: Resampling, nodata: float
) -> np.ndarray:
    out = np.full((data.shape[0], grid.height, grid.width), nodata, dtype=data.dtype)
    with stage("reproject"):
        reproject(
            data,
            out,
            src_transform=src_transform,
            src_crs=src_crs,
            src_nodata=nodata,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            dst_nodata=nodata,
            resampling=resampling,
        )
    return out


def _source_nodata(layer: _Opened) -> float | None:
    """The file's no-data value; the registry's convention only where the file is the registry's product.

    A class-mapped file comes from another product, whose code 0 may well be a class (``0:water``).
    """
    if layer.dataset.nodata is not None:
        return layer.dataset.nodata
    return None if layer.ref.class_map is not None else layer.modality.nodata


def _align_layer(
    layer: _Opened, grid: Grid, anchor_id: str, config: AlignConfig, s2_offset: float | None = None
) -> np.ndarray:
    """One file onto ``grid``: float32 with NaN no-data (continuous) or uint8 target codes (categorical).

    ``s2_offset`` (Sentinel-2 only) is removed by :func:`harmonise_sentinel2` before resampling."""
    data, src_transform = _read_window(layer, grid, anchor_id, config)
    ds, mod = layer.dataset, layer.modality
    file_nodata = _source_nodata(layer)
    reason, invalid = _invalid_reason(data, file_nodata)
    where = f"anchor {anchor_id!r}, {layer.ref.modality} file {layer.ref.path}"
    if invalid >= 1.0:
        raise QuarantineError(
            reason,
            f"{where}: expected valid pixels in the footprint, found none ({reason.replace('_', ' ')})",
        )
    if mod.is_categorical:
        nodata_code = int(mod.nodata or 0)
        codes = np.where(np.isfinite(data), data, -1) if data.dtype.kind == "f" else data
        codes = np.clip(codes.astype(np.int64), -1, 255)
        mapped = np.where(
            codes >= 0, _class_lut(layer, nodata_code)[np.clip(codes, 0, 255)], nodata_code
        ).astype(np.uint8)
        if file_nodata is not None and np.isfinite(file_nodata):
            mapped[data == file_nodata] = nodata_code
        out = _warp(
            mapped, src_transform, ds.crs, grid, _RESAMPLING[config.categorical_resampling], nodata_code
        )
        if not (out != nodata_code).any():
            raise QuarantineError(
                "all_nodata",
                f"{where}: expected at least one mapped class in the footprint, found only no-data",
            )
        return out
    values = data.astype(np.float32)
    if file_nodata is not None and np.isfinite(file_nodata):
        values[data == file_nodata] = np.nan
    if s2_offset is not None:
        values = harmonise_sentinel2(values, s2_offset)
    out = _warp(values, src_transform, ds.crs, grid, _RESAMPLING[config.continuous_resampling], np.nan)
    bad = float(np.isnan(out).mean())
    if bad > config.max_nodata_fraction:
        raise QuarantineError(
            reason,
            f"{where}: expected at most {config.max_nodata_fraction:.0%} no-data over the footprint, found {bad:.1%}",
        )
    return out


def _stored_bands(mod: Modality, given: Iterable[str]) -> tuple[str, ...]:
    """The bands a sample stores: the registry's, in registry order, of those given, minus dropped ones."""
    given = set(given)
    dropped = DROPPED_BANDS.get(mod.name, frozenset())
    return tuple(b for b in mod.band_names if b in given and b not in dropped)


def _to_storage(mod: Modality, array: np.ndarray) -> np.ndarray:
    """Continuous layers stay float32 with NaN; integer layers (NAIP) round, with NaN -> the product no-data."""
    dtype = np.dtype(mod.dtype)
    if dtype.kind == "f" or mod.is_categorical:
        return array.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    filled = np.where(np.isfinite(array), np.clip(np.rint(array), info.min, info.max), mod.nodata or 0)
    return filled.astype(dtype)


# -- temporal rules -----------------------------------------------------------------------------------------
def _scene_cloud_cover(layers: Sequence[_Opened]) -> float | None:
    for layer in layers:
        sources = (layer.ref.properties, layer.dataset.tags())
        for src in sources:
            for key in CLOUD_KEYS:
                if src.get(key) not in (None, ""):
                    try:
                        return float(src[key])
                    except (TypeError, ValueError):
                        raise QuarantineError(
                            "bad_metadata",
                            f"{layer.ref.path}: expected a number for {key}, found {src[key]!r}",
                        ) from None
    return None


def _days(a: datetime, b: datetime) -> float:
    return round((a - b).total_seconds() / 86400.0, 3)


@dataclass(frozen=True)
class RadiometricOffset:
    """The DN offset a Sentinel-2 product's pixels carry, and where that was learnt.

    Attributes:
        value: DN added to reflectance x 10000 in the product (1000 from baseline 04.00, else 0).
        source: the metadata key (``"raster:bands"``, ``"s2:processing_baseline"``, ``"BOA_ADD_OFFSET"``...),
            ``"b10_level"`` (the L1C cirrus test) or ``"none_found"`` (assumed offset-free).
        baseline: the processing baseline where the metadata gives it.
    """

    value: float
    source: str
    baseline: str | None = None


def _number(value: Any, key: str, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = math.nan
    if not math.isfinite(out):
        raise QuarantineError("bad_metadata", f"{where}: expected a number for {key}, found {value!r}")
    return out


def sentinel2_offset(
    properties: Mapping[str, Any], tags: Mapping[str, Any], where: str
) -> RadiometricOffset | None:
    """The radiometric offset from a Sentinel-2 file's metadata, or ``None`` when the metadata say nothing.

    In order: an explicit offset (``radiometric_offset`` manifest column, release metadata, the product's
    ``BOA_ADD_OFFSET``/``RADIO_ADD_OFFSET``; its sign is irrelevant, the pixels carry +|offset|); STAC
    ``raster:bands`` offset/scale as the STAC source copies them (``raster:offset`` -0.1 and ``raster:scale``
    0.0001 -> 1000 DN); Earth Search's ``earthsearch:boa_offset_applied: true`` (its COGs keep the DN
    offset and say so); the processing baseline (>= 04.00 -> 1000). Properties win over file tags.
    """
    sources = (properties, tags)
    baseline = next(
        (str(src[k]) for src in sources for k in S2_BASELINE_KEYS if src.get(k) not in (None, "")), None
    )
    for src in sources:
        for key in S2_OFFSET_KEYS:
            if src.get(key) not in (None, ""):
                return RadiometricOffset(abs(_number(src[key], key, where)), key, baseline)
    if properties.get("raster:offset") not in (None, ""):
        offset = _number(properties["raster:offset"], "raster:bands offset", where)
        scale = _number(properties.get("raster:scale", 1.0), "raster:bands scale", where)
        if scale <= 0:
            raise QuarantineError(
                "bad_metadata", f"{where}: expected a positive raster:bands scale, found {scale}"
            )
        return RadiometricOffset(round(abs(offset) / scale, 6), "raster:bands", baseline)
    if properties.get("earthsearch:boa_offset_applied") in (True, "true", "True"):
        return RadiometricOffset(S2_BASELINE_04_OFFSET, "earthsearch:boa_offset_applied", baseline)
    if baseline is not None:
        value = _number(baseline, "the processing baseline", where)
        return RadiometricOffset(
            S2_BASELINE_04_OFFSET if value >= 4.0 else 0.0, "processing_baseline", baseline
        )
    return None


def _metadata_offset(layers: Sequence[_Opened], anchor_id: str) -> RadiometricOffset | None:
    """The offset of the anchor's Sentinel-2 files; files of one scene must agree."""
    found = [
        (
            layer.ref.path,
            sentinel2_offset(
                layer.ref.properties, layer.dataset.tags(), f"anchor {anchor_id!r}, {layer.ref.path}"
            ),
        )
        for layer in layers
    ]
    known = [(path, o) for path, o in found if o is not None]
    if len({o.value for _, o in known}) > 1:
        raise QuarantineError(
            "bad_metadata",
            f"anchor {anchor_id!r}: expected one radiometric offset for the Sentinel-2 scene, found "
            + ", ".join(f"{o.value:g} ({o.source}) in {os.path.basename(path)}" for path, o in known),
        )
    return known[0][1] if known else None


def _b10_offset(stack: np.ndarray, bands: Sequence[str]) -> RadiometricOffset:
    """Where the metadata say nothing: L1C's median cirrus B10 of at least 1000 reveals the offset (cirrus
    reflectance over a whole footprint is far below 0.1); without B10, 0 is assumed."""
    if "B10" in bands:
        b10 = stack[list(bands).index("B10")]
        if np.isfinite(b10).any() and float(np.nanmedian(b10)) >= S2_BASELINE_04_OFFSET:
            return RadiometricOffset(S2_BASELINE_04_OFFSET, "b10_level")
        return RadiometricOffset(0.0, "b10_level")
    return RadiometricOffset(0.0, "none_found")


def harmonise_sentinel2(values: np.ndarray, offset: float) -> np.ndarray:
    """Sentinel-2 DN of any baseline -> offset-free reflectance x 10000: THE place the offset is removed.

    ``values`` are float with NaN no-data. Pixels whose DN lies between 1 and the offset (negative
    reflectance, which products before baseline 04.00 could not hold) become 1, the smallest valid DN of both
    baselines (0 is their no-data), so both baselines share one range. Values below any DN a product can hold
    (an untagged fill such as -32768) are left as they are, so the builder's value-range check still sees
    and quarantines them. Rounding keeps the values integral, ready for an integer store.
    """
    out = np.rint(values.astype(np.float32, copy=False) - np.float32(offset))
    dark = np.isfinite(out) & (out < 1) & (out >= np.float32(1.0 - offset))
    out[dark] = np.float32(1.0)
    return out


# -- cloud estimate -----------------------------------------------------------------------------------------
S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
_DETECTOR: list[Any] = []


def _s2cloudless() -> Any | None:
    """The s2cloudless detector, created once per process; ``None`` where the package is missing."""
    if not _DETECTOR:
        try:
            from s2cloudless import S2PixelCloudDetector
        except ImportError:
            return None
        _DETECTOR.append(
            S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2, all_bands=False)
        )
    return _DETECTOR[0]


def estimate_cloud_fraction(
    s2: np.ndarray, bands: Sequence[str], offset: float, threshold: float = 0.4
) -> tuple[float | None, str]:
    """Fraction of cloudy pixels in a Sentinel-2 footprint and the method used (``None``: no method fits).

    With the L1C bands s2cloudless needs (B10 among them) it is Sentinel Hub's s2cloudless detector
    (LightGBM on top-of-atmosphere reflectance). L2A lacks B10, so there a conservative per-pixel test in
    the spirit of Fmask's basic cloud test stands in: bright in the blue (> 0.2) and in SWIR-1 (> 0.15),
    white or bluish (blue >= 0.9 x red: bright sand and soil redden, which a whiteness test alone misses
    on beaches) and not snow (NDSI < 0.4: snow is bright too but dark in SWIR-1). A file lacking those
    bands (an RGB-NIR extract) gets ``(None, "unavailable")``: the rule cannot be checked, and the
    metadata say so rather than inventing a number.
    """
    names = list(bands)
    if not all(b in names for b in ("B02", "B03", "B04", "B11")):
        return None, "unavailable"
    refl = np.clip((s2.astype(np.float32) - offset) / 10000.0, 0.0, 1.5)
    valid = np.isfinite(refl).all(axis=0)
    if not valid.any():
        return 0.0, "none"
    # L2A never has B10: do not pay the detector's import (LightGBM, scikit-learn: seconds) for nothing
    detector = _s2cloudless() if all(b in names for b in S2CLOUDLESS_BANDS) else None
    if detector is not None:
        stack = np.stack([refl[names.index(b)] for b in S2CLOUDLESS_BANDS], axis=-1)[None]  # (1, H, W, 10)
        prob = detector.get_cloud_probability_maps(np.nan_to_num(np.clip(stack, 0, 1)))[0]
        return float((prob[valid] > threshold).mean()), "s2cloudless"
    blue, green, red, swir = (refl[names.index(b)] for b in ("B02", "B03", "B04", "B11"))
    ndsi = (green - swir) / np.maximum(green + swir, 1e-6)
    cloud = (blue > 0.2) & (swir > 0.15) & (blue >= 0.9 * red) & (ndsi < 0.4)
    return float(cloud[valid].mean()), "spectral_rule"


# -- the protocol -------------------------------------------------------------------------------------------
def _merge_modality(
    layers: Sequence[_Opened], grid: Grid, anchor_id: str, config: AlignConfig, s2_offset: float | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """All files of one modality onto the grid, stacked by band name (any file order, any band order)."""
    by_name: dict[str, np.ndarray] = {}
    for layer in layers:
        target = grid.with_gsd(config.naip_gsd) if layer.modality.name == "naip" else grid
        aligned = _align_layer(layer, target, anchor_id, config, s2_offset)
        for i, name in enumerate(layer.bands):
            by_name[name] = aligned[i]
    names = tuple(by_name)
    return np.stack([by_name[n] for n in names]), names


def _check_window(
    anchor_id: str, s2_time: datetime | None, times: Mapping[str, datetime | None], config: AlignConfig
) -> dict[str, float | None]:
    offsets: dict[str, float | None] = {}
    for name in TIME_MATCHED:
        if name not in times:
            continue
        when = times[name]
        offset_days = None if s2_time is None or when is None else _days(when, s2_time)
        offsets[name] = offset_days
        if offset_days is not None and abs(offset_days) > config.max_offset_days:
            raise QuarantineError(
                "date_outside_window",
                f"anchor {anchor_id!r}: expected {name} within {config.max_offset_days:g} days of the Sentinel-2 date "
                f"{iso(s2_time)}, found {iso(when)} ({offset_days:+.1f} days)",
            )
    return offsets


def align(request: AnchorRequest, config: AlignConfig | None = None) -> AlignedSample:
    """Run the alignment protocol on one anchor; raises ``QuarantineError`` for bad input."""
    config = config or AlignConfig()
    if not request.layers:
        raise QuarantineError(
            "no_layers", f"anchor {request.anchor_id!r}: expected at least one layer, found none"
        )
    opened: list[_Opened] = []
    try:
        for ref in request.layers:
            opened.append(_open_layer(ref, request.anchor_id))
        return _align_opened(request, opened, config)
    finally:
        for layer in opened:
            layer.dataset.close()


def _align_opened(request: AnchorRequest, opened: list[_Opened], config: AlignConfig) -> AlignedSample:
    groups: dict[str, list[_Opened]] = {}
    for layer in opened:
        groups.setdefault(layer.modality.name, []).append(layer)
    s2_layers = groups.get("sentinel2", [])
    if request.lat is not None and request.lon is not None:
        lat, lon, centre_from = request.lat, request.lon, "source"
    else:
        (lat, lon), centre_from = _common_centre(opened, request.anchor_id), "common_footprint"
    grid = anchor_grid(lat, lon, config, reference=s2_layers[0].dataset if s2_layers else None)
    times = {
        name: next((layer.datetime for layer in group if layer.datetime), None)
        for name, group in groups.items()
    }
    s2_time = times.get("sentinel2")
    offsets = _check_window(request.anchor_id, s2_time, times, config)

    arrays: dict[str, np.ndarray] = {}
    bands: dict[str, tuple[str, ...]] = {}
    metadata: dict[str, Any] = {}
    for name in (m for m in MODALITIES if m in groups):
        mod = MODALITIES[name]
        if name == "sentinel2":
            found = _metadata_offset(groups[name], request.anchor_id)
            stack, given = _merge_modality(
                groups[name], grid, request.anchor_id, config, found.value if found else 0.0
            )
            stack, checks = _sentinel2_checks(request.anchor_id, groups[name], stack, given, config, found)
            metadata.update(checks)
        else:
            stack, given = _merge_modality(groups[name], grid, request.anchor_id, config)
        if name == "dem" and "elevation" in given:
            # slope is always derived on the final grid, so it matches the grid's spacing; a file's own is dropped
            rest = [i for i, g in enumerate(given) if g != "slope"]
            stack, given = stack[rest], tuple(given[i] for i in rest)
            slope = slope_degrees(stack[given.index("elevation")], config.gsd)
            stack, given = np.concatenate([stack, slope[None]]), (*given, "slope")
        keep = _stored_bands(mod, given)
        if not keep:
            raise QuarantineError(
                "band_count_mismatch",
                f"anchor {request.anchor_id!r}: expected at least one stored {name} band "
                f"({', '.join(mod.default_bands)}), found only {list(given)}",
            )
        arrays[name] = _to_storage(mod, np.stack([stack[list(given).index(b)] for b in keep]))
        bands[name] = keep

    centre_lon, centre_lat = _to_lonlat(
        grid.crs, (grid.bounds[0] + grid.bounds[2]) / 2, (grid.bounds[1] + grid.bounds[3]) / 2
    )
    metadata.update(
        lat=round(float(centre_lat), 6),
        lon=round(float(centre_lon), 6),
        centre_from=centre_from,
        crs=grid.crs.to_string(),
        bounds=[round(float(b), 3) for b in grid.bounds],
        gsd=config.gsd,
        datetime=iso(s2_time or times.get("sentinel1") or times.get("dynamic_world")),
        datetimes={name: iso(t) for name, t in sorted(times.items()) if t is not None},
        s1_offset_days=offsets.get("sentinel1"),
        dynamic_world_offset_days=offsets.get("dynamic_world"),
        absent=[m for m in MODALITIES if m not in arrays],
    )
    return AlignedSample(request.anchor_id, arrays, bands, metadata)


def _sentinel2_checks(
    anchor_id: str,
    layers: Sequence[_Opened],
    stack: np.ndarray,
    given: Sequence[str],
    config: AlignConfig,
    found: RadiometricOffset | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Harmonised stack, product variant, offset and the cloud-cover rule for the anchor's Sentinel-2 layer.

    ``found`` is the offset from metadata, already removed from the source pixels; without it the B10
    test decides and the offset comes off the resampled stack (the only case harmonised after resampling).
    """
    variant = layers[0].variant
    offset = found or (
        _b10_offset(stack, given) if variant == "l1c" else RadiometricOffset(0.0, "none_found")
    )
    stack = harmonise_sentinel2(stack, 0.0 if found else offset.value)
    scene = _scene_cloud_cover(layers)
    cover: float | None
    if scene is not None:
        cover, source, tile_fraction = scene, "metadata", None
    else:
        tile_fraction, source = estimate_cloud_fraction(stack, given, 0.0, config.cloud_probability_threshold)
        cover = None if tile_fraction is None else 100.0 * tile_fraction
    if cover is not None and cover >= config.max_cloud_cover:
        raise QuarantineError(
            "cloud_cover",
            f"anchor {anchor_id!r}: expected Sentinel-2 cloud cover under {config.max_cloud_cover:g} %, "
            f"found {cover:.1f} % ({source})",
        )
    return stack, {
        "s2_product": variant,
        "s2_radiometric_offset": 0.0,  # the offset left in the stored values: none, they are harmonised
        "s2_offset_removed": offset.value,
        "s2_offset_source": offset.source,
        "s2_processing_baseline": offset.baseline,
        "cloud_cover": None if cover is None else round(float(cover), 3),
        "cloud_cover_source": source,
        "cloud_fraction": None if tile_fraction is None else round(float(tile_fraction), 4),
    }
