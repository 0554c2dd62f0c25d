"""Benchmark reading GeoMeld: decoded full samples per second, four ways over the same samples.

1. ``release``: the original format (WebDataset tar shards, one ``.h5`` per sample) through
   :class:`dataset_scripts.sources.release.ReleaseSource`, arrays decoded and in canonical band order.
2. ``raw``: the reference limit the issue names: pyarrow reads and decompresses the shard bytes, a few
   rows at a time, and every layer becomes a zero-copy ``np.frombuffer`` view with its shape and dtype.
3. ``map-style``: ``load_dataset(DIR)`` iterated row by row, each row decoded by the given decoder (its
   one-off Parquet -> Arrow cache preparation is reported apart).
4. ``streaming``: ``load_dataset(DIR, streaming=True)``, same decoder.

Each reader makes ``--repeats`` full passes, interleaved round-robin, and its best pass counts: the
machines are shared, and interleaving lets noise hit every reader alike.

Goals (issue 3): map-style >= 70 % of raw, streaming >= 50 % of raw, both >= 3x release.

The samples are full-size (128 x 128 grid, the spec's layers, band counts and dtypes) with real texture
(the packaged BigEarthNet S2/S1 patches, rotated and flipped; ``--content noise`` for codecs' worst
case), written in the release layout; the Parquet dataset holds those same samples, read by
:class:`~dataset_scripts.sources.release.ReleaseSource` and written by :mod:`dataset_scripts.writer`
(:func:`write_dataset`), so every reader decodes the same samples. ``--release DIR --dataset DIR``
measure existing shards and the dataset built from them instead.

The row decoder is :func:`decode_row`, which reads the writer's layout (``<layer>`` bytes with
``<layer>_shape`` and ``<layer>_dtype`` columns, spec section 6); pass the project's own row helper to
:func:`load_dataset_readers` to time that instead.

    python benchmarks/bench_loader.py --samples 200 --out benchmarks/results/loader.json

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import tarfile
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataset_scripts.sources.release import ReleaseSource
from modeling_geomeld.modalities import (
    SENTINEL1_RELEASE_ORDER,
    SENTINEL2_BANDS,
    SENTINEL2_RELEASE_ORDER,
    reorder_bands,
)

GOALS = {"map-style": ("raw", 0.70), "streaming": ("raw", 0.50)}
GOAL_VS_RELEASE = 3.0


# ------------------------------------------------------------------------------------------------------
# Samples in the release layout.


def noise_layers(rng: np.random.Generator, index: int, size: int) -> dict[str, np.ndarray]:
    """Incompressible values in the release's keys, dtypes and band counts: the worst case for codecs."""
    return {
        "sentinel2": rng.integers(0, 10_000, (12, size, size)).astype(np.float32),
        "sentinel1": rng.normal(-12.0, 4.0, (8, size, size)).astype(np.float32),
        "aster": np.stack([rng.normal(600.0, 50.0, (size, size)), rng.gamma(2.0, 3.0, (size, size))]).astype(
            np.float32
        ),
        "canopy_height": rng.gamma(2.0, 4.0, (2, size, size)).astype(np.float32),
        "esa_worldcover": rng.choice(np.arange(10, 101, 10, dtype=np.uint8), (1, size, size)),
        "dynamic_world": rng.integers(0, 10, (1, size, size), dtype=np.uint8),
    }


class RealLayers:
    """Release layers made from the six real BigEarthNet patches (S2 L2A and S1 VV/VH, 120 x 120, from the
    package ``bigearthnet-common``), so codecs see real texture: each sample is a patch rotated/flipped and
    reflect-padded to the grid; HH/HV are NaN (absent, as over most land); DEM, canopy height and the class
    maps are smooth fields and NDVI classes derived from the same patch."""

    def __init__(self, work: Path):
        from dataset_scripts.bigearthnet import extract_examples, read_patch

        self.patches = [read_patch(p) for p in extract_examples(work / "bigearthnet")]

    def __call__(self, rng: np.random.Generator, index: int, size: int) -> dict[str, np.ndarray]:
        n = len(self.patches)
        patch, other = self.patches[index % n], self.patches[(index + 1) % n]
        k, flip = (index // n) % 4, (index // (4 * n)) % 2

        def fit(a: np.ndarray) -> np.ndarray:
            a = np.rot90(a, k, axes=(-2, -1))
            a = a[..., ::-1] if flip else a
            pad = max(0, size - a.shape[-1])
            a = np.pad(a, [(0, 0), (0, pad), (0, pad)], mode="reflect") if pad else a
            return np.ascontiguousarray(a[:, :size, :size], dtype=np.float32)

        s2 = fit(reorder_bands(patch["sentinel2_l2a"], SENTINEL2_BANDS, SENTINEL2_RELEASE_ORDER))
        nan = np.full((2, size, size), np.nan, np.float32)
        s1 = np.concatenate([fit(patch["sentinel1"]), nan, fit(other["sentinel1"]), nan])
        red, nir = s2[SENTINEL2_RELEASE_ORDER.index("B04")], s2[SENTINEL2_RELEASE_ORDER.index("B08")]
        ndvi = np.clip((nir - red) / np.maximum(nir + red, 1.0), -1.0, 1.0)
        yy, xx = np.mgrid[0:size, 0:size] / size
        elevation = 400.0 + 80.0 * np.sin(6.0 * xx + rng.uniform(0, 6)) * np.cos(4.0 * yy) + 5.0 * ndvi
        gy, gx = np.gradient(elevation, 10.0)
        slope = np.degrees(np.arctan(np.hypot(gx, gy)))
        height = np.clip(ndvi, 0.0, 1.0) * 30.0
        classes = np.digitize(ndvi, [0.0, 0.2, 0.4, 0.6])  # water, bare, grass, crops, trees
        return {
            "sentinel2": s2,
            "sentinel1": s1,
            "aster": np.stack([elevation, slope]).astype(np.float32),
            "canopy_height": np.stack([height, 0.2 * height + 1.0]).astype(np.float32),
            "esa_worldcover": np.array([80, 60, 30, 40, 10], np.uint8)[classes][np.newaxis],
            "dynamic_world": np.array([1, 8, 3, 5, 2], np.uint8)[classes][np.newaxis],
        }


def release_metadata(rng: np.random.Generator, index: int) -> dict[str, Any]:
    return {
        "tile_id": f"bench-{index:06d}",
        "lat": float(rng.uniform(-60, 70)),
        "long": float(rng.uniform(-180, 180)),
        "acquisition_date": "2020-07-14",
        "terrain_class": "plain",
        "osm_tags": {},
        "water_analysis": {"detected": False, "percentage": 0.0},
        "band_names": {
            "sentinel2": [f"B{b[1:].lstrip('0')}" for b in SENTINEL2_RELEASE_ORDER],
            "sentinel1": list(SENTINEL1_RELEASE_ORDER),
        },
    }


def _h5_bytes(arrays: Mapping[str, np.ndarray], metadata: dict, compression: str | None) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        for key, array in arrays.items():
            h5.create_dataset(key, data=array, compression=compression)
        h5.create_dataset("metadata", data=json.dumps(metadata))
    return buf.getvalue()


LayerMaker = Callable[[np.random.Generator, int, int], dict[str, np.ndarray]]


def write_release(
    out: Path, samples: int, size: int, per_shard: int, compression: str | None, seed: int, layers: LayerMaker
) -> Path:
    """Write ``samples`` samples as release shards of ``per_shard`` each under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for first in range(0, samples, per_shard):
        with tarfile.open(out / f"shard-{first // per_shard:06d}.tar", "w") as tar:
            for index in range(first, min(first + per_shard, samples)):
                data = _h5_bytes(layers(rng, index, size), release_metadata(rng, index), compression)
                info = tarfile.TarInfo(f"{index:06d}.h5")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out


# ------------------------------------------------------------------------------------------------------
# The Parquet dataset.


def write_dataset(release_dir: Path, out_dir: Path, per_shard: int) -> Path:
    """The GeoMeld Parquet shards of the release's samples, written by :mod:`dataset_scripts.writer` (its
    schema, codec, row groups and ``data/<subset>/<split>-NNNNN.parquet`` names). Signals stay empty: the
    loader benchmark reads rasters, and computing signals would only slow the set-up."""
    from dataset_scripts.writer import sample_row, shard_file, spatial_split, write_shard

    buckets: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    written: dict[tuple[str, str], int] = defaultdict(int)

    def flush(bucket: tuple[str, str]) -> None:
        write_shard(buckets.pop(bucket), shard_file(out_dir, *bucket, written[bucket]))
        written[bucket] += 1

    for sample in ReleaseSource(str(release_dir)).anchors():
        split = spatial_split(sample.metadata["lat"], sample.metadata["lon"])
        bucket = ("naip" if "naip" in sample.arrays else "non_naip", split)
        buckets[bucket].append(sample_row(sample, {}, split, {}))
        if len(buckets[bucket]) == per_shard:
            flush(bucket)
    for bucket in list(buckets):
        flush(bucket)
    return out_dir


def recompress(files: Iterable[Path], codec: str) -> None:
    """Rewrite shards with another codec, rows and row groups unchanged: the evidence for choosing the
    writer's codec (``--parquet-codec``); the writer itself is left alone."""
    from dataset_scripts.writer import ROW_GROUP_SIZE

    for path in files:
        table = pq.read_table(path)
        pq.write_table(table, path, compression=codec, row_group_size=ROW_GROUP_SIZE, use_dictionary=False)


def parquet_files(dataset_dir: Path) -> list[Path]:
    files = sorted((dataset_dir / "data").rglob("*.parquet"))
    if not files:
        raise ValueError(f"expected Parquet shards under {dataset_dir / 'data'}, found none")
    return files


def layer_columns(schema: pa.Schema) -> dict[str, tuple[str | None, str | None]]:
    """Binary columns are raster layers: name -> (its ``_shape`` column, its ``_dtype`` column) if present."""
    names = set(schema.names)
    return {
        f.name: (
            f"{f.name}_shape" if f"{f.name}_shape" in names else None,
            f"{f.name}_dtype" if f"{f.name}_dtype" in names else None,
        )
        for f in schema
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)
    }


def decode_row(row: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A dataset row (a dict, as ``datasets`` yields it) -> named arrays per layer."""
    out = {}
    for name, value in row.items():
        if isinstance(value, bytes | bytearray | memoryview):
            dtype = np.dtype(row.get(f"{name}_dtype") or "uint8")
            array = np.frombuffer(value, dtype=dtype)
            shape = row.get(f"{name}_shape")
            out[name] = array.reshape(shape) if shape is not None else array
    return out


# ------------------------------------------------------------------------------------------------------
# The readers.


@dataclass
class Rate:
    reader: str
    samples: int
    seconds: float
    samples_per_s: float
    decoded_mb_per_s: float


def _time(reader: str, samples: Iterable[Mapping[str, np.ndarray]]) -> Rate:
    """Consume ``samples`` (dicts of arrays), touching one byte of each array so lazy views are real."""
    count, nbytes, checksum = 0, 0, 0
    start = time.perf_counter()
    for arrays in samples:
        for array in arrays.values():
            nbytes += array.nbytes
            checksum += int(array.reshape(-1)[-1:].view(np.uint8)[0]) if array.size else 0
        count += 1
    seconds = time.perf_counter() - start
    if count == 0:
        raise ValueError(f"{reader}: expected samples, read none")
    return Rate(reader, count, seconds, count / seconds, nbytes / seconds / 1e6)


def iter_release(location: Path) -> Iterator[dict[str, np.ndarray]]:
    source = ReleaseSource(str(location))
    for sample in source.anchors():
        yield sample.arrays
    if source.quarantined:
        raise ValueError(
            f"release benchmark expected clean shards, {len(source.quarantined)} were quarantined"
        )


#: rows per pyarrow batch in the raw reader: measured 1.5-2x faster than whole 64-row groups here (a
#: 64-row group of full samples is ~100 MB, far beyond the caches; small batches stay in them)
RAW_BATCH_ROWS = 8


def iter_raw_parquet(files: Iterable[Path]) -> Iterator[dict[str, np.ndarray]]:
    """Read and decompress each shard with pyarrow, a few rows at a time, then view every layer in place:
    no copy, no Python object per layer beyond the view."""
    for path in files:
        shard = pq.ParquetFile(path)
        layers = layer_columns(shard.schema_arrow)
        for batch in shard.iter_batches(batch_size=RAW_BATCH_ROWS):
            table = pa.Table.from_batches([batch])
            views = {name: _layer_views(table, name, *cols) for name, cols in layers.items()}
            for i in range(table.num_rows):
                yield {name: row for name, rows in views.items() if (row := rows[i]) is not None}


def _layer_views(
    table: pa.Table, name: str, shape_col: str | None, dtype_col: str | None
) -> list[np.ndarray | None]:
    """Each row's array of one layer column, as views into the decompressed Arrow buffer (None: null)."""
    column = table.column(name).combine_chunks()
    n = table.num_rows
    shapes = table.column(shape_col).to_pylist() if shape_col else [None] * n
    dtypes = table.column(dtype_col).to_pylist() if dtype_col else ["uint8"] * n
    offset_type = np.int64 if pa.types.is_large_binary(column.type) else np.int32
    offsets = np.frombuffer(column.buffers()[1], dtype=offset_type)[column.offset : column.offset + n + 1]
    data = column.buffers()[2]
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    views: list[np.ndarray | None] = []
    for i in range(n):
        if not valid[i]:
            views.append(None)
            continue
        flat = np.frombuffer(
            data, dtype=np.uint8, count=int(offsets[i + 1] - offsets[i]), offset=int(offsets[i])
        )
        array = flat.view(np.dtype(dtypes[i] or "uint8"))
        views.append(array.reshape(shapes[i]) if shapes[i] is not None else array)
    return views


Decoder = Callable[[Mapping[str, Any]], Mapping[str, np.ndarray]]


def load_dataset_readers(
    dataset_dir: Path, cache_dir: Path, decode: Decoder = decode_row
) -> tuple[dict[str, Callable[[], Iterable[Mapping[str, np.ndarray]]]], float]:
    """Map-style and streaming readers of ``load_dataset(dataset_dir)`` over every split, every row
    decoded by ``decode``.

    Map-style ``load_dataset`` first converts the Parquet shards into an Arrow cache under ``cache_dir``;
    that one-off preparation is returned in seconds, apart from the per-epoch reading rate. Pass the
    project's own row helper as ``decode`` to time it.
    """
    from datasets import load_dataset

    path = str(dataset_dir.resolve())
    start = time.perf_counter()
    map_style = load_dataset(path, cache_dir=str(cache_dir))
    prepare_s = time.perf_counter() - start
    streaming = load_dataset(path, streaming=True)

    def read_map_style() -> Iterable[Mapping[str, np.ndarray]]:
        return (decode(row) for split in map_style.values() for row in split)

    def read_streaming() -> Iterable[Mapping[str, np.ndarray]]:
        return (decode(row) for split in streaming.values() for row in split)

    return {"map-style": read_map_style, "streaming": read_streaming}, prepare_s


def time_round_robin(
    readers: Mapping[str, Callable[[], Iterable[Mapping[str, np.ndarray]]]], repeats: int
) -> dict[str, Rate]:
    """Each reader's best of ``repeats`` full passes, interleaved so a noisy shared machine hits all alike."""
    best: dict[str, Rate] = {}
    for _ in range(repeats):
        for name, read in readers.items():
            rate = _time(name, read())
            if name not in best or rate.samples_per_s > best[name].samples_per_s:
                best[name] = rate
    return best


# ------------------------------------------------------------------------------------------------------
# Report.


def verdicts(rates: Mapping[str, Rate]) -> dict[str, str]:
    """Each goal of the issue, met or not, with the ratio measured in this run."""
    out = {}
    for reader, (base, goal) in GOALS.items():
        if reader in rates and base in rates:
            ratio = rates[reader].samples_per_s / rates[base].samples_per_s
            out[f"{reader} vs {base}"] = (
                f"{ratio:.2f} (goal >= {goal:.2f}): {'met' if ratio >= goal else 'NOT met'}"
            )
        if reader in rates and "release" in rates:
            ratio = rates[reader].samples_per_s / rates["release"].samples_per_s
            ok = "met" if ratio >= GOAL_VS_RELEASE else "NOT met"
            out[f"{reader} vs release"] = f"{ratio:.2f}x (goal >= {GOAL_VS_RELEASE:.1f}x): {ok}"
    return out


def print_table(rates: Mapping[str, Rate], goals: Mapping[str, str]) -> None:
    print(f"{'reader':<12}{'samples':>9}{'seconds':>10}{'samples/s':>12}{'MB/s':>10}")
    for r in rates.values():
        print(
            f"{r.reader:<12}{r.samples:>9}{r.seconds:>10.2f}{r.samples_per_s:>12.1f}{r.decoded_mb_per_s:>10.1f}"
        )
    for name, verdict in goals.items():
        print(f"  {name}: {verdict}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="samples to write and read (default 200)")
    parser.add_argument(
        "--size", type=int, default=128, help="grid side in pixels (default 128, the release's)"
    )
    parser.add_argument("--per-shard", type=int, default=64, help="samples per release shard (default 64)")
    parser.add_argument("--release-compression", choices=["none", "gzip", "lzf"], default="none",
                        help="HDF5 compression of the synthetic release (default none: the fastest to read)")  # fmt: skip
    parser.add_argument(
        "--release", type=Path, help="read these release shards instead of writing synthetic ones"
    )
    parser.add_argument(
        "--dataset", type=Path, help="measure this dataset, built from --release, instead of building"
    )
    parser.add_argument("--work", type=Path, help="where to write shards (default: a temporary folder)")
    parser.add_argument("--content", choices=["real", "noise"], default="real",
                        help="real BigEarthNet texture (default) or incompressible noise (codecs' worst case)")  # fmt: skip
    parser.add_argument("--parquet-codec", choices=["zstd", "lz4", "snappy", "none"],
                        help="rewrite the written shards with this codec (default: keep the writer's zstd)")  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved passes; the best counts (default 3)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/loader.json"), help="JSON output path"
    )
    args = parser.parse_args(argv)
    if args.dataset is not None and args.release is None:
        parser.error(
            "--dataset needs --release, the shards it was built from: readers must decode the same samples"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    work = args.work or Path(tempfile.mkdtemp(prefix="geomeld-bench-"))
    compression = None if args.release_compression == "none" else args.release_compression
    layers = RealLayers(work) if args.content == "real" else noise_layers
    release = args.release or write_release(
        work / "release", args.samples, args.size, args.per_shard, compression, args.seed, layers
    )
    dataset = args.dataset or write_dataset(release, work / "dataset", args.per_shard)

    files = parquet_files(dataset)
    if args.parquet_codec:
        recompress(files, args.parquet_codec)
    hf_readers, prepare_s = load_dataset_readers(dataset, work / "hf-cache")
    readers = {
        "release": lambda: iter_release(release),
        "raw": lambda: iter_raw_parquet(files),
        **hf_readers,
    }
    rates = time_round_robin(readers, args.repeats)
    goals = verdicts(rates)
    print_table(rates, goals)
    print(f"  map-style one-off preparation (Parquet -> Arrow cache): {prepare_s:.2f} s")
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "config": {k: str(v) for k, v in vars(args).items()},
        "rates": {k: asdict(v) for k, v in rates.items()},
        "map_style_prepare_s": prepare_s,
        "parquet_bytes": sum(f.stat().st_size for f in files),
        "release_bytes": sum(f.stat().st_size for f in release.glob("*.tar")),
        "goals": goals,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
