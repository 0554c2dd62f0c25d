"""Reading samples from, and writing captions into, a built GeoMeld dataset (Parquet shards under ``DIR/data/``).

All knowledge of the on-disk layout that captioning needs lives here and defers to the builder's own
modules: :mod:`dataset_scripts.writer` (``SCHEMA``: ``tile_id``, ``signals`` and ``metadata`` as JSON
text, a ``caption`` column, each layer as bytes + ``_shape`` + ``_dtype`` + ``_bands``) and
:mod:`dataset_scripts.loading` (``decode_layer``). Only the land-cover layers are decoded, for the water
layout behind the shoreline and coastal facts; the imagery is never read.

Captions go back into the shards' ``caption`` column through :func:`dataset_scripts.writer.write_shard`,
so the shard keeps the builder's one fixed schema and its deterministic, atomic writing (``load_dataset``
needs every shard to share a schema, also when a caption run was interrupted). The full audit record of
every sample (all candidates, per-claim verdicts, scores, the fact sheet) goes to a JSON Lines sidecar,
``DIR/captions/<shard path>.jsonl``, written last and atomically; its presence marks the shard done,
which makes ``geomeld caption`` resumable shard by shard, like the build.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LAND_COVER_LAYERS = ("dynamic_world", "esa_worldcover")


@dataclass
class DatasetRow:
    """What captioning needs of one sample.

    ``images`` / ``image_bands`` (continuous layers, keyed ``sentinel2_l2a`` etc. for the processor) are
    filled only when an image-text ranker needs them.
    """

    tile_id: str
    signals: dict[str, Any]
    metadata: dict[str, Any]
    arrays: dict[str, np.ndarray]
    images: dict[str, np.ndarray] = field(default_factory=dict)
    image_bands: dict[str, list[str]] = field(default_factory=dict)


def shard_paths(dataset_dir: str | Path) -> list[Path]:
    """The dataset's Parquet shards, sorted, or ``ValueError`` naming what was expected."""
    root = Path(dataset_dir)
    shards = sorted(p for p in (root / "data").rglob("*.parquet") if not p.name.startswith("."))
    if not shards:
        raise ValueError(
            f"expected Parquet shards under {root / 'data'} (a dataset built by `geomeld build`), found none"
        )
    return shards


def _as_dict(value: Any, column: str, tile_id: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    if not isinstance(value, Mapping):
        raise ValueError(
            f"tile {tile_id}: expected column {column!r} to hold a JSON object, found {type(value).__name__}"
        )
    return dict(value)


def _images(row: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """The continuous layers of a row, keyed as the processor wants them (``sentinel2_<product>``)."""
    from dataset_scripts.loading import band_names, decode_row
    from modeling_geomeld.modalities import MODALITIES

    arrays, names = decode_row(row), band_names(row)
    images, bands = {}, {}
    for name, array in arrays.items():
        if MODALITIES[name].is_categorical:
            continue
        key = f"sentinel2_{row['s2_product']}" if name == "sentinel2" and row.get("s2_product") else name
        images[key], bands[key] = array, names[name]
    return images, bands


def row_to_sample(row: Mapping[str, Any], with_images: bool = False) -> DatasetRow:
    """One Parquet row (as a dict) -> :class:`DatasetRow`."""
    from dataset_scripts.loading import decode_layer

    if "tile_id" not in row:
        raise ValueError(f"expected a 'tile_id' column in the dataset, found columns {sorted(row)}")
    tile_id = str(row["tile_id"])
    metadata = _as_dict(row.get("metadata"), "metadata", tile_id)
    for key in ("lat", "lon", "datetime", "osm_tags"):
        # osm_tags: the writer's JSON-text column (the release's tags), parsed by the orchestrator
        if row.get(key) is not None:
            metadata.setdefault(key, row[key])
    arrays = {}
    for name in LAND_COVER_LAYERS:
        array = decode_layer(row.get(name), row.get(f"{name}_shape"), row.get(f"{name}_dtype"))
        if array is not None:
            arrays[name] = array
    sample = DatasetRow(tile_id, _as_dict(row.get("signals"), "signals", tile_id), metadata, arrays)
    if with_images:
        sample.images, sample.image_bands = _images(row)
    return sample


def _columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    wanted = {"tile_id", "signals", "metadata", "lat", "lon", "datetime", "osm_tags"}
    for layer in LAND_COVER_LAYERS:
        wanted |= {layer, f"{layer}_shape", f"{layer}_dtype"}
    return [n for n in pq.read_schema(path).names if n in wanted]


def iter_shard(path: Path, with_images: bool = False) -> Iterator[DatasetRow]:
    """Samples of one shard, reading only the columns captioning needs (the imagery only ``with_images``)."""
    import pyarrow.parquet as pq

    columns = None if with_images else _columns(path)
    for row in pq.read_table(path, columns=columns).to_pylist():
        yield row_to_sample(row, with_images)


def find_row(dataset_dir: str | Path, tile_id: str) -> DatasetRow:
    """The sample with ``tile_id``; ``KeyError`` naming the dataset when there is none."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for path in shard_paths(dataset_dir):
        table = pq.read_table(path, columns=_columns(path))
        hits = table.filter(pc.equal(table["tile_id"], tile_id))
        if hits.num_rows:
            return row_to_sample(hits.to_pylist()[0])
    raise KeyError(f"no sample with tile_id {tile_id!r} in {dataset_dir}")


def record_path(dataset_dir: str | Path, shard: Path) -> Path:
    """``DIR/captions/<shard path under data/>.jsonl``: the shard's audit records and its done marker."""
    root = Path(dataset_dir)
    relative = shard.relative_to(root / "data")
    return root / "captions" / relative.with_suffix(".jsonl")


def write_shard_captions(dataset_dir: str | Path, shard: Path, records: Mapping[str, dict[str, Any]]) -> None:
    """Fill the shard's ``caption`` column (builder's schema and writer), then write the audit sidecar."""
    import pyarrow.parquet as pq

    from dataset_scripts.writer import write_shard

    rows = pq.read_table(shard).to_pylist()
    missing = [r["tile_id"] for r in rows if r["tile_id"] not in records]
    if missing:
        raise ValueError(f"{shard.name}: expected a caption record for every tile, missing {missing[:5]}")
    for row in rows:
        row["caption"] = records[row["tile_id"]]["caption"] or ""
    write_shard(rows, shard)
    sidecar = record_path(dataset_dir, shard)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    tmp = sidecar.with_name(f".{sidecar.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for tile_id in sorted(records):
            f.write(json.dumps(records[tile_id], sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, sidecar)


def read_records(dataset_dir: str | Path) -> dict[str, dict[str, Any]]:
    """All audit records written so far, by tile id."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(dataset_dir) / "captions").rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                out[record["tile_id"]] = record
    return out
