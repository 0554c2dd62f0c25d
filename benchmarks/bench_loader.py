"""Benchmark reading GeoMeld: decoded full samples per second, four ways over the same samples.

1. ``release``: the original format (WebDataset tar shards, one ``.h5`` per sample) through
   :class:`dataset_scripts.sources.release.ReleaseSource`, arrays decoded and in canonical band order.
2. ``raw``: the reference limit the issue names: pyarrow reads and decompresses the shard bytes a whole
   row group at a time (``ParquetFile.read_row_group``, its column-parallel threads on: the fastest way
   pyarrow offers here, measured against ``iter_batches`` and dataset fragments), and every layer becomes a
   zero-copy ``np.frombuffer`` view with its shape and dtype. Nothing above pyarrow, so an upper bound.
3. ``map-style``: ``load_dataset(DIR)`` iterated row by row, each row decoded by
   :func:`dataset_scripts.loading.decode_row` (its one-off Parquet -> Arrow cache preparation is reported
   apart).
4. ``streaming``: ``load_dataset(DIR, streaming=True)`` in Arrow batches of a row group
   (``.with_format("arrow").iter(batch_size=ROW_GROUP_SIZE)``), each decoded by
   :func:`dataset_scripts.loading.decode_table` into zero-copy views: the project's documented way to stream.
   ``streaming-rows`` is the same stream as Python row dicts through ``decode_row`` (each layer's bytes
   copied into a ``bytes`` object first), reported for comparison.

The writer compresses raster bytes with LZ4 and the rest with zstd. ``--compare-zstd`` (on by default) also
rewrites the same shards with zstd level 3 for every column, row groups unchanged, and times ``raw`` and
``streaming`` over them in the same passes (``raw[zstd]``, ``streaming[zstd]``), with both datasets' sizes:
the evidence for the codec.

Each reader makes ``--repeats`` full passes, interleaved round-robin, and its best pass counts: the
machines are shared, and interleaving lets noise hit every reader alike.

Goals (issue 3): map-style >= 70 % of raw, streaming >= 50 % of raw, both >= 3x release; (issue 14) a full
sample in <= 40 % of the release's 1.6 MB, with Sentinel-2 stored as int16 and Sentinel-1 as float16
(:data:`dataset_scripts.writer.STORAGE`; map-style and streaming decode them back to float32 with NaN).

The samples are full-size (128 x 128 grid, the spec's layers, band counts and dtypes) with real texture
(the packaged BigEarthNet S2/S1 patches, rotated and flipped; ``--content noise`` for codecs' worst
case), written in the release layout; the Parquet dataset holds those same samples, read by
:class:`~dataset_scripts.sources.release.ReleaseSource` and written by :mod:`dataset_scripts.writer`
(:func:`write_dataset`), so every reader decodes the same samples. ``--release DIR --dataset DIR``
measure existing shards and the dataset built from them instead.

The raw reader decodes the layout itself (``<layer>`` bytes with ``<layer>_shape`` and ``<layer>_dtype``
columns, spec section 6), so it depends on nothing of the project but the files.

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
#: the release's size of one full sample (issue 14), and the share of it a GeoMeld sample may take
RELEASE_SAMPLE_BYTES = 1.6e6
GOAL_BYTES_SHARE = 0.40


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


def recompress_zstd(dataset_dir: Path, out_dir: Path) -> Path:
    """A copy of the dataset with every column zstd at the writer's level, rows and row groups unchanged:
    the codec the issue names, against which the writer's LZ4 rasters are measured."""
    from dataset_scripts.writer import _DICTIONARY_COLUMNS, ROW_GROUP_SIZE, ZSTD_LEVEL

    for path in parquet_files(dataset_dir):
        target = out_dir / path.relative_to(dataset_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pq.read_table(path), target, compression="zstd", compression_level=ZSTD_LEVEL,
                       row_group_size=ROW_GROUP_SIZE, use_dictionary=_DICTIONARY_COLUMNS)  # fmt: skip
    return out_dir


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


#: the layout's native storage (spec section 6 / issue 14): int16 reflectance x 10000 with -32768 for no-data,
#: float16 elsewhere; every reader hands out float32 with NaN, so ``raw`` restores them the same way
_INT_NODATA = {"int16": -32768}


def _as_float32(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.name in _INT_NODATA and array.ndim == 3 and array.shape[0] > 1:  # reflectance, not classes
        out = array.astype(np.float32)
        out[array == _INT_NODATA[array.dtype.name]] = np.nan
        return out
    return array


def iter_raw_parquet(files: Iterable[Path], native: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Read and decompress each shard with pyarrow a row group at a time, then view every layer in place
    (``native``: no copy, the stored dtypes), or restore natively stored layers to float32 with NaN, the
    arrays the project's loaders return: the same output, so the fair baseline for them."""
    for path in files:
        shard = pq.ParquetFile(path)
        layers = layer_columns(shard.schema_arrow)
        for group in range(shard.num_row_groups):
            for batch in shard.read_row_group(group, use_threads=True).to_batches():
                views = {name: _layer_views(batch, name, *cols) for name, cols in layers.items()}
                for i in range(batch.num_rows):
                    row = {name: r for name, rows in views.items() if (r := rows[i]) is not None}
                    yield row if native else {name: _as_float32(a) for name, a in row.items()}


def _layer_views(
    batch: pa.RecordBatch, name: str, shape_col: str | None, dtype_col: str | None
) -> list[np.ndarray | None]:
    """Each row's array of one layer column, as views into the decompressed Arrow buffer (None: null)."""
    column = batch.column(name)
    n = batch.num_rows
    shapes = batch.column(shape_col).to_pylist() if shape_col else [None] * n
    dtypes = batch.column(dtype_col).to_pylist() if dtype_col else ["uint8"] * n
    offset_type = np.int64 if pa.types.is_large_binary(column.type) else np.int32
    offsets = np.frombuffer(column.buffers()[1], dtype=offset_type)[column.offset : column.offset + n + 1]
    data = column.buffers()[2] or b""
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


Reader = Callable[[], Iterable[Mapping[str, np.ndarray]]]


def streaming_reader(dataset_dir: Path) -> Reader:
    """``load_dataset(DIR, streaming=True)`` over every split in Arrow batches of a row group, each batch
    decoded by :func:`~dataset_scripts.loading.decode_table` (zero-copy views)."""
    from datasets import load_dataset

    from dataset_scripts.loading import decode_table
    from dataset_scripts.writer import ROW_GROUP_SIZE

    streaming = load_dataset(str(dataset_dir.resolve()), streaming=True)

    def read() -> Iterator[Mapping[str, np.ndarray]]:
        for split in streaming.values():
            for table in split.with_format("arrow").iter(batch_size=ROW_GROUP_SIZE):
                yield from decode_table(table)

    return read


def load_dataset_readers(dataset_dir: Path, cache_dir: Path) -> tuple[dict[str, Reader], float]:
    """Map-style (row dicts), streaming (Arrow batches) and streaming-rows (row dicts) readers of
    ``load_dataset(dataset_dir)`` over every split; rows are decoded by the project's
    :func:`~dataset_scripts.loading.decode_row`.

    Map-style ``load_dataset`` first converts the Parquet shards into an Arrow cache under ``cache_dir``;
    that one-off preparation is returned in seconds, apart from the per-epoch reading rate.
    """
    from datasets import load_dataset

    from dataset_scripts.loading import decode_row

    path = str(dataset_dir.resolve())
    start = time.perf_counter()
    map_style = load_dataset(path, cache_dir=str(cache_dir))
    prepare_s = time.perf_counter() - start
    streaming = load_dataset(path, streaming=True)

    def read_map_style() -> Iterable[Mapping[str, np.ndarray]]:
        return (decode_row(row) for split in map_style.values() for row in split)

    def read_streaming_rows() -> Iterable[Mapping[str, np.ndarray]]:
        return (decode_row(row) for split in streaming.values() for row in split)

    readers = {
        "map-style": read_map_style,
        "streaming": streaming_reader(dataset_dir),
        "streaming-rows": read_streaming_rows,
    }
    return readers, prepare_s


def time_round_robin(readers: Mapping[str, Reader], repeats: int) -> dict[str, Rate]:
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
    print(f"{'reader':<16}{'samples':>9}{'seconds':>10}{'samples/s':>12}{'MB/s':>10}")
    for r in rates.values():
        print(
            f"{r.reader:<16}{r.samples:>9}{r.seconds:>10.2f}{r.samples_per_s:>12.1f}{r.decoded_mb_per_s:>10.1f}"
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
    parser.add_argument("--compare-zstd", action=argparse.BooleanOptionalAction, default=True,
                        help="also time raw and streaming reads of the same shards all in zstd (default on)")  # fmt: skip
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
    hf_readers, prepare_s = load_dataset_readers(dataset, work / "hf-cache")
    readers: dict[str, Reader] = {
        "release": lambda: iter_release(release),
        "raw": lambda: iter_raw_parquet(files),
        "raw[native]": lambda: iter_raw_parquet(files, native=True),
        **hf_readers,
    }
    sizes = {"release": sum(f.stat().st_size for f in release.glob("*.tar")),
             "parquet (writer: lz4 rasters, zstd rest)": sum(f.stat().st_size for f in files)}  # fmt: skip
    if args.compare_zstd:
        zstd_dir = recompress_zstd(dataset, work / "dataset-zstd")
        zstd_files = parquet_files(zstd_dir)
        readers["raw[zstd]"] = lambda: iter_raw_parquet(zstd_files)
        readers["streaming[zstd]"] = streaming_reader(zstd_dir)
        sizes["parquet (all zstd)"] = sum(f.stat().st_size for f in zstd_files)
    rates = time_round_robin(readers, args.repeats)
    goals = verdicts(rates)
    print_table(rates, goals)
    print(f"  map-style one-off preparation (Parquet -> Arrow cache): {prepare_s:.2f} s")
    for name, size in sizes.items():
        print(f"  {name}: {size / 1e6:.1f} MB")
    per_sample = {name: size / args.samples for name, size in sizes.items()}
    ours = per_sample["parquet (writer: lz4 rasters, zstd rest)"]
    share = ours / RELEASE_SAMPLE_BYTES
    goals["bytes per full sample vs the release's 1.6 MB"] = (
        f"{ours / 1e3:.0f} kB = {share:.0%} (goal <= {GOAL_BYTES_SHARE:.0%}): {'met' if share <= GOAL_BYTES_SHARE else 'NOT met'}"
    )
    print(f"{'layout':<44}{'bytes/sample':>14}{'vs 1.6 MB':>11}")
    for name, size in per_sample.items():
        print(f"{name:<44}{size / 1e3:>11.0f} kB{size / RELEASE_SAMPLE_BYTES:>10.0%}")
    print(f"  {list(goals)[-1]}: {goals[list(goals)[-1]]}")
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "config": {k: str(v) for k, v in vars(args).items()},
        "rates": {k: asdict(v) for k, v in rates.items()},
        "map_style_prepare_s": prepare_s,
        "parquet_bytes": sizes["parquet (writer: lz4 rasters, zstd rest)"],
        "release_bytes": sizes["release"],
        "bytes": sizes,
        "bytes_per_sample": per_sample,
        "bytes_per_sample_vs_release_1_6_mb": share,
        "vs_release": {k: v.samples_per_s / rates["release"].samples_per_s for k, v in rates.items()},
        "goals": goals,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
