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

All three work on rows that ``datasets.distributed.split_dataset_by_node`` hands a rank, since they need
nothing but the row itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from modeling_geomeld.modalities import MODALITIES

from .writer import LAYERS


def _layers(wanted: Iterable[str] | None) -> tuple[str, ...]:
    if wanted is None:
        return LAYERS
    names = tuple(wanted)
    unknown = [n for n in names if n not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; expected names from {list(LAYERS)}")
    return names


def decode_layer(raw: bytes | None, shape: Iterable[int] | None, dtype: str | None) -> np.ndarray | None:
    """One layer's bytes -> array (a read-only view on the bytes; copy before writing into it)."""
    if raw is None:
        return None
    if shape is None or dtype is None:
        raise ValueError("a layer's bytes need its _shape and _dtype columns; found one of them null")
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape([int(s) for s in shape])


def decode_row(
    row: Mapping[str, Any], modalities: Iterable[str] | None = None, class_indices: bool = False
) -> dict[str, np.ndarray]:
    """``{modality: (bands, H, W) array}`` for the layers present in ``row`` (absent layers are left out).

    ``class_indices=True`` maps class maps from product codes to contiguous indices (int64, -1 no-data),
    the form the model's losses take.
    """
    out: dict[str, np.ndarray] = {}
    for name in _layers(modalities):
        array = decode_layer(row.get(name), row.get(f"{name}_shape"), row.get(f"{name}_dtype"))
        if array is None:
            continue
        out[name] = (
            MODALITIES[name].codes_to_indices(array)
            if class_indices and MODALITIES[name].is_categorical
            else array
        )
    return out


def band_names(row: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{modality: band names of its stored array}`` for the layers present in ``row``."""
    return {n: list(row[f"{n}_bands"]) for n in LAYERS if row.get(n) is not None}


def decode_batch(batch: Mapping[str, list[Any]], class_indices: bool = False) -> dict[str, list[Any]]:
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
        for raw, shape, dtype in zip(
            batch[name], batch[f"{name}_shape"], batch[f"{name}_dtype"], strict=True
        ):
            array = decode_layer(raw, shape, dtype)
            if array is not None and class_indices and MODALITIES[name].is_categorical:
                array = MODALITIES[name].codes_to_indices(array)
            arrays.append(array)
        out[name] = arrays
    return out


def decode_table(
    table: pa.Table | pa.RecordBatch, modalities: Iterable[str] | None = None, class_indices: bool = False
) -> list[dict[str, np.ndarray]]:
    """``[{modality: (bands, H, W) array}]``, one dict per row of an Arrow table or record batch.

    The arrays are read-only views into the table's buffers (no copy: keep the table alive as long as the
    arrays, which the views do by themselves, and copy before writing into one). Absent layers are left out
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
                if class_indices and MODALITIES[name].is_categorical:
                    array = MODALITIES[name].codes_to_indices(array)
                row[name] = array
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
    views: list[np.ndarray | None] = []
    for i in range(n):
        if not valid[i]:
            views.append(None)
            continue
        shape, dtype = shapes[i], dtypes[i]
        if shape is None or dtype is None:
            raise ValueError("a layer's bytes need its _shape and _dtype columns; found one of them null")
        kind = np.dtype(dtype).newbyteorder("<")
        start, stop = offsets[i], offsets[i + 1]
        if (stop - start) % kind.itemsize:
            raise ValueError(f"layer {name!r}: {stop - start} bytes are not a whole number of {dtype} values")
        view = np.frombuffer(data, dtype=kind, count=(stop - start) // kind.itemsize, offset=start)
        view = view.reshape([int(s) for s in shape])
        view.flags.writeable = False  # Arrow buffers are shared (cache files, other views): read-only, as decode_row
        views.append(view)
    return views


def content_fingerprint(folder: str | Path) -> str:
    """A fingerprint of a built dataset's shards (relative path, size, modification time of every Parquet file)."""
    import hashlib

    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(root.glob("data/**/*.parquet")):
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_geomeld(path: str | Path, split: str | None = None, streaming: bool = False, **kwargs: Any) -> Any:
    """`datasets.load_dataset` for a GeoMeld dataset folder or hub id.

    datasets 5 keys its Arrow cache of a local folder by the folder's name and the card's configs, not by the
    files' content: two different builds in folders of the same name (``.../dataset``) share one cache and the
    second load silently returns the first build. For local folders this helper gives every content state
    its own cache (``cache_dir`` under ``~/.cache/geomeld/<fingerprint>``, or under the ``cache_dir`` given).
    """
    from datasets import load_dataset

    local = Path(path).expanduser()
    if local.is_dir():
        base = Path(kwargs.pop("cache_dir", None) or Path.home() / ".cache" / "geomeld")
        kwargs["cache_dir"] = str(base / content_fingerprint(local))
        path = str(local.resolve())
    return load_dataset(str(path), split=split, streaming=streaming, **kwargs)
