"""Rows of a built GeoMeld dataset -> named arrays per modality.

One row (from ``load_dataset(DIR)``, streaming or not, or from pyarrow ``to_pylist``) holds each layer as
bytes plus ``_shape``, ``_dtype`` and ``_bands`` columns (see :mod:`dataset_scripts.writer`):

* :func:`decode_row` -> ``{modality: ndarray (bands, H, W)}`` for the layers present;
* :func:`band_names` -> ``{modality: [band names]}``, to carry band order by name into the model
  (``modeling_geomeld.modalities.reorder_bands``);
* :func:`decode_batch` -> the ``with_transform`` form: ``ds.with_transform(decode_batch)`` decodes on access;
* :func:`decode_table` -> the fast path for Arrow batches (``ds.with_format("arrow")``, streaming or not, or
  pyarrow itself): one ``{modality: ndarray}`` per row, every array a zero-copy view into the Arrow buffers.
  Row dicts copy each layer's bytes into a Python ``bytes`` object first; for full samples that copy, not
  decoding, is what a row costs (``benchmarks/bench_loader.py`` measures both).

* :func:`geomeld_transform` -> ``ds.with_transform(geomeld_transform(...))``: fixed-shape float32 arrays per
  modality (absent layers zeros) with ``<m>_mask`` and ``<m>_bands``, so ``default_collate`` batches them;
* :func:`load_geomeld` -> ``load_dataset`` that refuses unfinished builds and verifies page checksums;
  :func:`iter_shard_batches` reads one shard the same way. Reader errors name the file, row group and tiles.

Natively stored layers (:data:`dataset_scripts.writer.STORAGE`) decode to float32 with NaN; ``native=True``
gives the stored arrays as zero-copy views.

All of them work on rows that ``datasets.distributed.split_dataset_by_node`` hands a rank, since they need
nothing but the row itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from modeling_geomeld.modalities import MODALITIES

from .errors import UsageError
from .writer import LAYERS, STORAGE


def _layers(wanted: Iterable[str] | None) -> tuple[str, ...]:
    if wanted is None:
        return LAYERS
    names = tuple(wanted)
    unknown = [n for n in names if n not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; expected names from {list(LAYERS)}")
    return names


def decode_layer(
    raw: bytes | None, shape: Iterable[int] | None, dtype: str | None, where: str = "a layer"
) -> np.ndarray | None:
    """One layer's bytes -> array (a read-only view on the bytes; copy before writing into it).

    ``where`` (``"tile 'x', layer sentinel2"``) starts every error message, so a bad row names itself.
    """
    if raw is None:
        return None
    if shape is None or dtype is None:
        raise ValueError(f"{where}: expected the layer's _shape and _dtype columns with its bytes, found one of them null")
    try:
        kind = np.dtype(dtype).newbyteorder("<")
    except TypeError:
        raise ValueError(f"{where}: expected a numpy dtype name in its _dtype column, found {dtype!r}") from None
    dims = [int(s) for s in shape]
    expected = int(np.prod(dims)) * kind.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{where}: expected {expected} bytes for shape {dims} of {dtype}, found {len(raw)} (short or corrupted raster bytes)"
        )
    return np.frombuffer(raw, dtype=kind).reshape(dims)


def restore(name: str, array: np.ndarray) -> np.ndarray:
    """A layer in its stored dtype (:data:`dataset_scripts.writer.STORAGE`) -> float32 with NaN for no-data."""
    stored = STORAGE.get(name)
    if stored is None or array.dtype != np.dtype(stored.dtype):
        return array
    out = array.astype(np.float32)
    if stored.nodata is not None:
        out[array == stored.nodata] = np.nan
    return out


def _finish(name: str, array: np.ndarray, class_indices: bool, native: bool) -> np.ndarray:
    if class_indices and MODALITIES[name].is_categorical:
        return MODALITIES[name].codes_to_indices(array)
    return array if native else restore(name, array)


def decode_row(
    row: Mapping[str, Any],
    modalities: Iterable[str] | None = None,
    class_indices: bool = False,
    native: bool = False,
) -> dict[str, np.ndarray]:
    """``{modality: (bands, H, W) array}`` for the layers present in ``row`` (absent layers are left out).

    Layers stored natively (Sentinel-2 int16 reflectance x 10000, Sentinel-1 float16 dB) come back as
    float32 with NaN for no-data, unless ``native=True`` (the stored arrays, read-only views, no copy).
    ``class_indices=True`` maps class maps from product codes to contiguous indices (int64, -1 no-data),
    the form the model's losses take.
    """
    out: dict[str, np.ndarray] = {}
    for name in _layers(modalities):
        where = f"tile {row.get('tile_id')!r}, layer {name}"
        array = decode_layer(row.get(name), row.get(f"{name}_shape"), row.get(f"{name}_dtype"), where)
        if array is None:
            continue
        out[name] = _finish(name, array, class_indices, native)
    return out


def band_names(row: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{modality: band names of its stored array}`` for the layers present in ``row``."""
    return {n: list(row[f"{n}_bands"]) for n in LAYERS if row.get(n) is not None}


def decode_batch(
    batch: Mapping[str, list[Any]], class_indices: bool = False, native: bool = False
) -> dict[str, list[Any]]:
    """A ``with_transform`` / batched ``map`` function: layer bytes -> arrays (``None`` where absent).

    Other columns pass through unchanged; the ``_shape``/``_dtype`` columns are consumed.
    """
    out: dict[str, list[Any]] = {}
    consumed = {c for n in LAYERS for c in (n, f"{n}_shape", f"{n}_dtype")}
    for key, values in batch.items():
        if key not in consumed:
            out[key] = values
    for name in LAYERS:
        if name not in batch:
            continue
        arrays = []
        tiles = batch.get("tile_id") or [None] * len(batch[name])
        for raw, shape, dtype, tile in zip(
            batch[name], batch[f"{name}_shape"], batch[f"{name}_dtype"], tiles, strict=True
        ):
            array = decode_layer(raw, shape, dtype, f"tile {tile!r}, layer {name}")
            arrays.append(None if array is None else _finish(name, array, class_indices, native))
        out[name] = arrays
    return out


def decode_table(
    table: pa.Table | pa.RecordBatch,
    modalities: Iterable[str] | None = None,
    class_indices: bool = False,
    native: bool = False,
) -> list[dict[str, np.ndarray]]:
    """``[{modality: (bands, H, W) array}]``, one dict per row of an Arrow table or record batch.

    With ``native=True`` the arrays are read-only views into the table's buffers in their stored dtypes
    (no copy: keep the table alive as long as the arrays, which the views do by themselves, and copy before
    writing into one); by default natively stored layers are restored to float32 with NaN, as
    :func:`decode_row` does. Absent layers are left out
    of a row's dict, as in :func:`decode_row`; so are modalities the table has no column for.
    """
    names = [n for n in _layers(modalities) if n in table.schema.names]
    batches = table.to_batches() if isinstance(table, pa.Table) else [table]
    rows: list[dict[str, np.ndarray]] = []
    for batch in batches:
        decoded: list[dict[str, np.ndarray]] = [{} for _ in range(batch.num_rows)]
        for name in names:
            for row, array in zip(decoded, _column_views(batch, name), strict=True):
                if array is None:
                    continue
                row[name] = _finish(name, array, class_indices, native)
        rows.extend(decoded)
    return rows


def _column_views(batch: pa.RecordBatch, name: str) -> list[np.ndarray | None]:
    """Each row's array of one layer column: ``np.frombuffer`` views on the column's data buffer."""
    column = batch.column(name)
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        raise ValueError(f"layer column {name!r} must be binary, found {column.type}")
    n = len(column)
    shapes = batch.column(f"{name}_shape").to_pylist()
    dtypes = batch.column(f"{name}_dtype").to_pylist()
    _, offsets_buffer, data = column.buffers()
    data = data if data is not None else b""  # every value empty or null: Arrow may leave no data buffer
    offset_type = np.int64 if pa.types.is_large_binary(column.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[column.offset : column.offset + n + 1].tolist()
    valid = [True] * n if column.null_count == 0 else column.is_valid().to_pylist()
    tiles = batch.column("tile_id").to_pylist() if "tile_id" in batch.schema.names else [None] * n
    views: list[np.ndarray | None] = []
    for i in range(n):
        if not valid[i]:
            views.append(None)
            continue
        shape, dtype = shapes[i], dtypes[i]
        where = f"tile {tiles[i]!r}, layer {name!r}"
        if shape is None or dtype is None:
            raise ValueError(f"{where}: expected the layer's _shape and _dtype columns with its bytes, found one of them null")
        kind = np.dtype(dtype).newbyteorder("<")
        start, stop = offsets[i], offsets[i + 1]
        if (stop - start) % kind.itemsize:
            raise ValueError(f"{where}: {stop - start} bytes are not a whole number of {dtype} values")
        if (stop - start) // kind.itemsize != int(np.prod([int(s) for s in shape])):
            raise ValueError(
                f"{where}: expected {int(np.prod([int(s) for s in shape]))} {dtype} values for shape {list(shape)}, "
                f"found {(stop - start) // kind.itemsize} (short or corrupted raster bytes)"
            )
        view = np.frombuffer(data, dtype=kind, count=(stop - start) // kind.itemsize, offset=start)
        view = view.reshape([int(s) for s in shape])
        view.flags.writeable = False  # Arrow buffers are shared (cache files, other views): read-only, as decode_row
        views.append(view)
    return views


class ShardReadError(ValueError):
    """A shard could not be read: the message names the file, the row group and its tiles."""


def _tile_range(meta: pq.FileMetaData, group: int) -> str:
    """``tiles a..b`` of a row group from the ``tile_id`` statistics the writer stores (no data read)."""
    try:
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        stats = meta.row_group(group).column(names.index("tile_id")).statistics
        return f"tiles {stats.min}..{stats.max}" if stats is not None and stats.has_min_max else "tiles unknown"
    except (ValueError, IndexError):
        return "tiles unknown"


def open_shard(path: str | Path) -> pq.ParquetFile:
    """A shard opened with page checksum verification; a bad footer raises :class:`ShardReadError` naming it."""
    try:
        return pq.ParquetFile(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as err:
        raise ShardReadError(f"GeoMeld shard {path}: expected a Parquet file, found an unreadable one ({err})") from None


def iter_shard_batches(path: str | Path, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of a shard, one per row group, every page's checksum verified.

    A corrupted page (bit rot, truncation) raises :class:`ShardReadError` naming the file, the row group
    and the tiles it holds, instead of pyarrow's bare message.
    """
    shard = open_shard(path)
    for group in range(shard.metadata.num_row_groups):
        try:
            table = shard.read_row_group(group, columns=columns)
        except (OSError, pa.ArrowException) as err:
            raise ShardReadError(
                f"GeoMeld shard {path}, row group {group} ({_tile_range(shard.metadata, group)}): "
                f"expected intact pages, found {err}; run `geomeld verify` on the dataset"
            ) from None
        yield from table.to_batches()


def locate_corruption(files: Iterable[str | Path]) -> None:
    """Read every page of ``files``; raise :class:`ShardReadError` for the first bad one (else return)."""
    for path in files:
        for _ in iter_shard_batches(path):
            pass


def _partial_files(root: Path) -> dict[str, list[str]]:
    """``{split: [files]}`` of every finished shard, final or still under the build's hidden folder."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.glob("data/*/*.parquet")) + sorted(root.glob(".geomeld_build/data/*/*.parquet")):
        if not path.name.startswith("."):
            found.setdefault(path.name.split("-", 1)[0], []).append(str(path))
    if not found:
        raise UsageError(f"{root}: expected at least one finished shard for partial=True, found none")
    return found


def load_geomeld(
    path: str | Path,
    split: str | None = None,
    streaming: bool = False,
    partial: bool = False,
    **kwargs: Any,
) -> Any:
    """`datasets.load_dataset` for a GeoMeld dataset folder or hub id, safely.

    A local folder must hold a completed build (its ``build_manifest.json``, see
    :mod:`dataset_scripts.integrity`); a plan-only folder or an interrupted build is refused with what is
    missing, unless ``partial=True`` asks for the finished shards explicitly. Every Parquet page's checksum
    is verified as it is read; a map-style load that fails on a bad file is re-raised naming the file, row
    group and tiles. The card's configs carry the build's fingerprint, so datasets' cache (keyed by folder
    name and configs) never serves another build's rows, here or with plain ``load_dataset``.
    """
    import pyarrow.dataset as pads
    from datasets import load_dataset

    from .integrity import require_complete

    kwargs.setdefault(
        "fragment_scan_options", pads.ParquetFragmentScanOptions(page_checksum_verification=True)
    )
    local = Path(path).expanduser()
    if not local.is_dir():
        return load_dataset(str(path), split=split, streaming=streaming, **kwargs)
    local = local.resolve()
    if partial:
        files = _partial_files(local)
        return load_dataset("parquet", data_files=files, split=split, streaming=streaming, **kwargs)
    manifest = require_complete(local)
    names = [str(local / name) for name in manifest["files"]]
    for name in names:
        open_shard(name)  # footers first: "magic bytes not found" names its file
    try:
        return load_dataset(str(local), split=split, streaming=streaming, **kwargs)
    except Exception:
        locate_corruption(names)  # raises naming the file when a shard is to blame
        raise


#: NAIP's pixels per grid pixel (1 m over the 10 m grid's footprint)
NAIP_SCALE = 10


def geomeld_transform(
    modalities: Iterable[str] | None = None,
    bands: Mapping[str, Iterable[str]] | None = None,
    size: int = 128,
    as_torch: bool = False,
    keep: Iterable[str] = ("tile_id", "caption"),
) -> Any:
    """A ``ds.with_transform(...)`` function giving fixed-shape arrays per modality, absent layers as zeros.

    For each modality ``m`` (default: every layer) the batch gets ``m`` (float32 ``(bands, H, W)``; class maps
    as int64 contiguous indices, -1 where no-data), ``m_mask`` (bool, same shape: True where the value is
    real, False for no-data, a band the sample lacks or an absent layer) and ``m_bands`` (the band names,
    comma-joined). Bands are picked by name: ``bands[m]`` or the registry's ``default_bands``. Every sample
    therefore has the same keys and shapes, so ``torch.utils.data.default_collate`` (a plain ``DataLoader``)
    stacks them; ``keep`` names the other columns passed through (each must be non-null). ``size`` is the grid
    side used for a layer no row of the batch has (NAIP: ``NAIP_SCALE`` times it).

        ds = load_dataset("/abs/path/geomeld", split="train").with_transform(geomeld_transform(as_torch=True))
        batch = next(iter(DataLoader(ds, batch_size=8)))   # batch["sentinel2"]: (8, 12, 128, 128)
    """
    names = _layers(modalities)
    wanted = {n: tuple((bands or {}).get(n) or MODALITIES[n].default_bands) for n in names}
    kept = tuple(keep)

    def transform(batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        count = len(next(iter(batch.values())))
        tiles = batch.get("tile_id") or [None] * count
        out: dict[str, list[Any]] = {k: list(batch[k]) for k in kept if k in batch}
        for name in names:
            mod = MODALITIES[name]
            side = size * (NAIP_SCALE if name == "naip" else 1)
            arrays: list[Any] = []
            masks: list[Any] = []
            for i in range(count):
                raw = batch.get(name, [None] * count)[i]
                where = f"tile {tiles[i]!r}, layer {name}"
                array = decode_layer(raw, batch[f"{name}_shape"][i], batch[f"{name}_dtype"][i], where) if raw is not None else None
                values, valid = _fixed(mod, array, list(batch[f"{name}_bands"][i] or []), wanted[name], side)
                arrays.append(values)
                masks.append(valid)
            if as_torch:
                import torch

                arrays = [torch.from_numpy(a) for a in arrays]
                masks = [torch.from_numpy(m) for m in masks]
            out[name], out[f"{name}_mask"] = arrays, masks
            out[f"{name}_bands"] = [",".join(wanted[name])] * count
        return out

    return transform


def _fixed(
    mod: Any, array: np.ndarray | None, given: list[str], wanted: tuple[str, ...], side: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(values, mask)`` of shape ``(len(wanted), H, W)``: the wanted bands by name, zeros where absent."""
    height, width = (array.shape[-2], array.shape[-1]) if array is not None else (side, side)
    categorical = mod.is_categorical
    values = np.full((len(wanted), height, width), -1 if categorical else 0, np.int64 if categorical else np.float32)
    mask = np.zeros(values.shape, dtype=bool)
    if array is None:
        return values, mask
    for k, band in enumerate(wanted):
        if band not in given:
            continue
        plane = array[given.index(band)]
        if categorical:
            plane = mod.codes_to_indices(plane)
            ok = plane >= 0
        else:
            plane = restore(mod.name, plane[np.newaxis])[0].astype(np.float32, copy=False)
            ok = np.isfinite(plane)
        values[k][ok] = plane[ok]
        mask[k] = ok
    return values, mask
