"""``with_transform(geomeld_transform(...))`` on plain ``datasets.load_dataset``: fixed shapes, absent layers as
zeros with a validity mask, so torch's own ``default_collate`` batches samples with different layers."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_scripts.build import BuildOptions, build
from dataset_scripts.loading import decode_row, geomeld_transform

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from make_corrupt_corpus import write_corpus


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("transform")
    corpus = write_corpus(tmp / "corpus").parent
    with (corpus / "manifest.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    good = [r for r in rows if r["anchor_id"] == "good"]
    # "with_s1" has Sentinel-1, "s2_only" has not: two samples with different layers in one batch
    out = [{**r, "anchor_id": "with_s1", "path": str(corpus / r["path"])} for r in good]
    out += [{**r, "anchor_id": "s2_only", "path": str(corpus / r["path"])} for r in good if r["modality"] != "sentinel1"]
    manifest = tmp / "m.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(out)
    build(f"manifest:{manifest}", tmp / "ds", BuildOptions(workers=0, progress=False))
    return tmp / "ds"


def test_default_collate_batches_samples_with_different_layers(built: Path, tmp_path: Path) -> None:
    import torch
    from datasets import concatenate_datasets, load_dataset
    from torch.utils.data import DataLoader

    splits = load_dataset(str(built.resolve()), cache_dir=str(tmp_path / "cache"))
    plain = concatenate_datasets(list(splits.values())).sort("tile_id")
    ds = plain.with_transform(geomeld_transform(["sentinel2", "sentinel1", "dem"], as_torch=True))
    batch = next(iter(DataLoader(ds, batch_size=2)))  # torch's default_collate, nothing of ours
    assert batch["tile_id"] == ["s2_only", "with_s1"]
    assert batch["sentinel2"].shape == (2, 12, 128, 128) and batch["sentinel2"].dtype == torch.float32
    assert batch["sentinel1"].shape == (2, 2, 128, 128) and batch["dem"].shape == (2, 2, 128, 128)
    assert not batch["sentinel1_mask"][0].any() and batch["sentinel1_mask"][1].all()
    assert not batch["dem_mask"].any() and (batch["dem"] == 0).all()
    assert (batch["sentinel1"][0] == 0).all()
    assert batch["sentinel1_bands"] == ["VV,VH", "VV,VH"]
    expected = decode_row(plain[1])
    np.testing.assert_array_equal(batch["sentinel2"][1].numpy(), expected["sentinel2"])
    np.testing.assert_allclose(batch["sentinel1"][1].numpy(), expected["sentinel1"])
    names = batch["sentinel2_bands"][0].split(",")
    assert names == list(plain[1]["sentinel2_bands"])  # band order by name, as stored


def test_numpy_output_class_indices_and_band_selection(built: Path, tmp_path: Path) -> None:
    from datasets import load_dataset

    split = next(iter(load_dataset(str(built.resolve()), cache_dir=str(tmp_path / "cache")).values()))
    ds = split.with_transform(geomeld_transform(["sentinel2", "esa_worldcover"], bands={"sentinel2": ["B04", "B03", "B02"]}))
    row = ds[0]
    assert row["sentinel2"].shape == (3, 128, 128) and isinstance(row["sentinel2"], np.ndarray)
    full = decode_row(split[0])["sentinel2"]
    order = list(split[0]["sentinel2_bands"])
    np.testing.assert_array_equal(row["sentinel2"][0], full[order.index("B04")])
    assert row["esa_worldcover"].dtype == np.int64 and (row["esa_worldcover"] == -1).all()
    assert not row["esa_worldcover_mask"].any()


def test_thumbnail_is_a_hub_image_and_footprints_are_geoparquet_for_geopandas_and_duckdb(
    built: Path, tmp_path: Path
) -> None:
    import geopandas
    from datasets import load_dataset
    from shapely.geometry import Point

    split = next(iter(load_dataset(str(built.resolve()), cache_dir=str(tmp_path / "cache")).values()))
    row = split[0]
    from datasets import Image as ImageFeature
    from PIL import Image

    assert split.features["thumbnail"] == ImageFeature(decode=False)  # typed Image for the Hub's viewer
    thumbnail = Image.open(io.BytesIO(row["thumbnail"]["bytes"]))
    assert thumbnail.format == "PNG" and thumbnail.size == (64, 64) and thumbnail.mode == "RGB"
    assert split.cast_column("thumbnail", ImageFeature())[0]["thumbnail"].size == (64, 64)
    assert json.loads(row["osm_tags"]) == {}
    shards = sorted((built / "data").rglob("*.parquet"))
    frame = geopandas.read_parquet(shards[0], columns=["tile_id", "lat", "lon", "geometry"])
    assert frame.crs is not None and frame.crs.equals("OGC:CRS84")
    for _, r in frame.iterrows():  # a 1.28 km footprint around the anchor
        assert r.geometry.geom_type == "Polygon" and r.geometry.contains(Point(r.lon, r.lat))
        _, south, _, north = r.geometry.bounds
        assert 0.01 < north - south < 0.013
    import duckdb

    found = duckdb.sql(f"SELECT tile_id, geometry FROM read_parquet('{shards[0]}')").fetchall()
    assert {t for t, _ in found} == set(frame.tile_id)
    assert all(g is not None for _, g in found)
