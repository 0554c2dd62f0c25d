"""The writer's shard layout (per-column codecs, row groups) and the loaders that read it: ``decode_table``
on Arrow batches (pyarrow, ``load_dataset`` streaming in Arrow format) gives exactly ``decode_row``'s arrays,
without copying the layer bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataset_scripts.loading import decode_row, decode_table
from dataset_scripts.types import AlignedSample
from dataset_scripts.writer import LAYERS, ROW_GROUP_SIZE, sample_row, shard_file, write_shard
from modeling_geomeld.modalities import MODALITIES

SIZE = 6
ROWS = ROW_GROUP_SIZE + 5  # two row groups, the second partial


def _sample(index: int) -> AlignedSample:
    rng = np.random.default_rng(index)
    arrays = {
        "sentinel2": rng.normal(1000, 300, (13, SIZE, SIZE)).astype(np.float32),
        "dem": rng.normal(400, 50, (2, SIZE, SIZE)).astype(np.float32),
        "esa_worldcover": rng.choice(np.array([10, 30, 80], np.uint8), (1, SIZE, SIZE)),
    }
    if index % 3 == 0:  # some rows lack Sentinel-1: a null in the middle of the column
        arrays["sentinel1"] = rng.normal(-12, 4, (12, SIZE, SIZE)).astype(np.float32)
    if index == 1:  # one NAIP row: a different dtype and grid in its own column
        arrays["naip"] = rng.integers(0, 4096, (4, 10 * SIZE, 10 * SIZE), dtype=np.uint16)
    bands = {name: MODALITIES[name].band_names for name in arrays}
    meta = {"lat": 45.0 + index, "lon": 7.0, "datetime": "2021-06-01T10:00:00Z", "crs": "EPSG:32632"}
    return AlignedSample(f"tile-{index:03d}", arrays, bands, meta)


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    rows = [sample_row(_sample(i), {}, "train", {}) for i in range(ROWS)]
    write_shard(rows, shard_file(root, "non_naip", "train", 0))
    return root


def _path(root: Path) -> Path:
    return shard_file(root, "non_naip", "train", 0)


def test_raster_bytes_are_lz4_the_rest_zstd_in_fixed_row_groups_and_bytes_repeat(
    shard: Path, tmp_path: Path
) -> None:
    meta = pq.ParquetFile(_path(shard)).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [ROW_GROUP_SIZE, 5]
    codecs = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i).compression
              for i in range(meta.num_columns)}  # fmt: skip
    assert {codecs[name] for name in LAYERS} == {"LZ4"}
    others = {codec for path, codec in codecs.items() if path not in LAYERS}
    assert others == {"ZSTD"} and codecs["sentinel2_shape.list.element"] == "ZSTD"
    again = tmp_path / "again"
    write_shard(reversed([sample_row(_sample(i), {}, "train", {}) for i in range(ROWS)]),
                shard_file(again, "non_naip", "train", 0))  # fmt: skip
    assert _path(again).read_bytes() == _path(shard).read_bytes()


def test_decode_table_matches_decode_row_without_copying(shard: Path) -> None:
    table = pq.read_table(_path(shard))
    # two chunks per column, the second a slice: offsets into shared buffers must be honoured
    chunked = pa.concat_tables([table.slice(0, 7), table.slice(7)])
    assert chunked.column("sentinel2").num_chunks >= 2
    decoded = decode_table(chunked, native=True)
    rows = table.to_pylist()
    assert len(decoded) == ROWS
    for row, arrays in zip(rows, decoded, strict=True):
        expected = decode_row(row, native=True)
        assert set(arrays) == set(expected)
        for name, array in arrays.items():
            assert array.dtype == expected[name].dtype and array.shape == expected[name].shape
            np.testing.assert_array_equal(array, expected[name])
            assert not array.flags.writeable  # a view on Arrow memory, not a copy
    assert "sentinel1" in decoded[0] and "sentinel1" not in decoded[1] and "naip" in decoded[1]
    assert decoded[1]["naip"].shape == (4, 10 * SIZE, 10 * SIZE) and decoded[1]["naip"].dtype == np.uint16
    np.testing.assert_array_equal(decoded[2]["sentinel2"], np.rint(_sample(2).arrays["sentinel2"]).astype(np.int16))
    data = table.column("sentinel2").chunk(0).buffers()[2]
    assert np.shares_memory(decoded[0]["sentinel2"], np.frombuffer(data, np.uint8))


def test_decode_table_selects_modalities_maps_classes_and_reads_record_batches(shard: Path) -> None:
    batch = pq.read_table(_path(shard)).to_batches()[0]
    only = decode_table(batch, ["dem", "esa_worldcover"], class_indices=True)
    assert all(set(arrays) == {"dem", "esa_worldcover"} for arrays in only)
    classes = only[0]["esa_worldcover"]
    assert classes.dtype == np.int64
    expected = MODALITIES["esa_worldcover"].codes_to_indices(_sample(0).arrays["esa_worldcover"])
    np.testing.assert_array_equal(classes, expected)
    with pytest.raises(ValueError, match="unknown modalities"):
        decode_table(batch, ["sentinel3"])
    column = "esa_worldcover_dtype"  # 36 bytes of uint8 codes are no whole number of float64 values
    broken = batch.set_column(batch.schema.get_field_index(column), column,
                              pa.array(["float64"] * batch.num_rows))  # fmt: skip
    with pytest.raises(ValueError, match="36 bytes are not a whole number of float64 values"):
        decode_table(broken, ["esa_worldcover"])


def test_streaming_arrow_batches_decode_like_rows(shard: Path) -> None:
    from datasets import load_dataset

    stream = load_dataset(str(shard), split="train", streaming=True)
    by_rows = {row["tile_id"]: decode_row(row) for row in stream}
    tiles = []
    for table in stream.with_format("arrow").iter(batch_size=ROW_GROUP_SIZE):
        for tile, arrays in zip(table.column("tile_id").to_pylist(), decode_table(table), strict=True):
            tiles.append(tile)
            assert set(arrays) == set(by_rows[tile])
            for name, array in arrays.items():
                np.testing.assert_array_equal(array, by_rows[tile][name])
    assert sorted(tiles) == sorted(by_rows) and len(tiles) == ROWS


def test_native_dtypes_store_s2_as_int16_s1_as_float16_and_decode_to_float32_with_nan(tmp_path: Path) -> None:
    sample = _sample(0)  # has Sentinel-1
    sample.arrays["sentinel2"][0, 0, 0] = np.nan
    s1 = np.linspace(-60, 60, sample.arrays["sentinel1"].size, dtype=np.float32).reshape(sample.arrays["sentinel1"].shape)
    s1[1, 2, 3] = np.nan
    sample.arrays["sentinel1"] = s1
    row = sample_row(sample, {}, "train", {})
    assert (row["sentinel2_dtype"], row["sentinel1_dtype"], row["dem_dtype"]) == ("int16", "float16", "float16")
    arrays = decode_row(row)
    assert arrays["sentinel2"].dtype == np.float32 and np.isnan(arrays["sentinel2"][0, 0, 0])
    valid = np.isfinite(sample.arrays["sentinel2"])
    assert np.abs(arrays["sentinel2"][valid] - sample.arrays["sentinel2"][valid]).max() <= 0.5
    assert np.isnan(arrays["sentinel1"][1, 2, 3])
    err = np.abs(arrays["sentinel1"] - s1)[np.isfinite(s1)]
    small = np.abs(s1)[np.isfinite(s1)] < 32
    assert err[small].max() <= 2**-7 and err.max() <= 2**-6  # the error STORAGE states
    assert decode_row(row, native=True)["sentinel2"].dtype == np.int16
    assert len(row["sentinel2"]) == 13 * SIZE * SIZE * 2  # half of float32
