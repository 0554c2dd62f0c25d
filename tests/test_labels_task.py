"""`geomeld finetune --task labels:PATH`: the user's labelled GeoTIFFs through the real builder, then fine-tuning.

Real Sentinel-2 L2A tiles and their real land-cover maps (../shared/data/terramind-samples); the label raster
is written in ANOTHER CRS (geographic EPSG:4326) with rasterio, so the builder must reproject it back onto the
sample's UTM grid with nearest resampling, which the tests compare against the original map.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.warp import calculate_default_transform, reproject, transform, transform_bounds
from rasterio.windows import from_bounds

from dataset_scripts.errors import UsageError
from dataset_scripts.labels import block_splits, read_labelled_manifest
from modeling_geomeld.cli import main

#: three of the real locations; each gives 4 anchors (the quadrant centres of its 224 px tile)
LOCATIONS = ("282D_485L_3_3", "38D_378R_2_3", "637U_59R_1_3")
#: the land-cover map's classes (see ../shared/data/README.md); code 0 is no-data
LULC = ["water", "trees", "flooded vegetation", "crops", "built area", "bare ground", "snow/ice", "clouds", "rangeland"]
SIZE = 64


def _geographic_copy(src_path: Path, dst_path: Path) -> None:
    """The label map reprojected to EPSG:4326 (nearest; ~5 m pixels), as a user's mask in another CRS."""
    with rasterio.open(src_path) as src:
        dst_tf, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds, resolution=4.5e-5)
        out = np.zeros((1, height, width), dtype=np.uint8)
        reproject(src.read(), out, src_transform=src.transform, src_crs=src.crs, dst_transform=dst_tf, dst_crs="EPSG:4326", resampling=rasterio.enums.Resampling.nearest, src_nodata=0, dst_nodata=0)
        profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint8", "crs": "EPSG:4326", "transform": dst_tf, "nodata": 0}  # fmt: skip
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(out)


def _quadrant_anchors(s2: Path) -> list[tuple[float, float]]:
    with rasterio.open(s2) as ds:
        left, top = ds.transform.c, ds.transform.f
        xs = [left + 560.0, left + 1680.0, left + 560.0, left + 1680.0]
        ys = [top - 560.0, top - 560.0, top - 1680.0, top - 1680.0]
        lons, lats = transform(ds.crs, "EPSG:4326", xs, ys)
    return list(zip(lats, lons, strict=True))


@pytest.fixture(scope="module")
def rasters(terramind_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("labels")
    out = {}
    for loc in LOCATIONS:
        mask = folder / f"{loc}_mask_4326.tif"
        _geographic_copy(terramind_dir / "LULC" / f"{loc}.tif", mask)
        out[loc] = {"s2": terramind_dir / "S2L2A" / f"{loc}.tif", "mask": mask, "lulc": terramind_dir / "LULC" / f"{loc}.tif"}
    return out


def _write_csv(path: Path, rows: list[dict]) -> Path:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _sidecar(manifest: Path, **extra: object) -> None:
    classes = [{"name": n, "code": i + 1} for i, n in enumerate(LULC)]
    manifest.with_suffix(".yaml").write_text(yaml.safe_dump({"classes": classes, "nodata": [0], "size_px": SIZE, **extra}))


def _majority(lulc: Path, lat: float, lon: float) -> str:
    with rasterio.open(lulc) as ds:
        (x,), (y,) = transform("EPSG:4326", ds.crs, [lon], [lat])
        window = from_bounds(x - 320, y - 320, x + 320, y + 320, transform=ds.transform)
        codes = ds.read(1, window=window)
    return LULC[int(np.bincount(codes[codes > 0]).argmax()) - 1]


def _segmentation_rows(rasters: dict[str, dict[str, Path]]) -> list[dict]:
    rows = []
    for loc, files in rasters.items():
        for q, (lat, lon) in enumerate(_quadrant_anchors(files["s2"])):
            rows.append({"anchor_id": f"{loc}-{q}", "modality": "sentinel2_l2a", "path": str(files["s2"]), "lat": lat, "lon": lon, "label_path": str(files["mask"])})
    return rows


def _run(manifest: Path, out: Path, *extra: str) -> int:
    return main(["finetune", "--task", f"labels:{manifest}", "--steps", "2", "--seeds", "0", "--mode", "linear", "--batch-size", "4", "--out", str(out), *extra])


def test_segmentation_masks_in_another_crs_are_aligned_by_nearest_and_fine_tuned(
    rasters: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    manifest = _write_csv(tmp_path / "labels.csv", _segmentation_rows(rasters))
    _sidecar(manifest, block_size_m=1500, seed=3)
    assert _run(manifest, tmp_path / "run") == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["task"] == "labels:labels.csv" and "miou" in results["modes"]["linear"]["summary"]
    report = json.loads((tmp_path / "run" / "labels-dataset" / "labels_report.json").read_text())
    assert report["kind"] == "segmentation" and report["quarantined"] == [] and len(report["splits"]) == 12
    by_block: dict[str, set[str]] = {}
    for anchor, block in report["blocks"].items():
        by_block.setdefault(json.dumps(block), set()).add(report["splits"][anchor])
    assert all(len(s) == 1 for s in by_block.values())  # no block in two splits
    assert set(report["splits"].values()) == {"train", "test"}
    # the aligned label layer equals the original UTM map on the sample grid (nearest, never a blend of codes)
    import pyarrow.parquet as pq

    from dataset_scripts.loading import decode_row

    shards = sorted((tmp_path / "run" / "labels-dataset" / "data").rglob("*.parquet"))
    rows = [r for f in shards for r in pq.read_table(f).to_pylist()]
    assert len(rows) == 12
    agreement = []
    for row in rows:
        built = decode_row(row, ["label"])["label"][0]
        meta = json.loads(row["metadata"])
        loc = row["tile_id"].rsplit("-", 1)[0]
        with rasterio.open(rasters[loc]["lulc"]) as ds:
            assert str(ds.crs) == meta["crs"]
            original = ds.read(1, window=from_bounds(*meta["bounds"], transform=ds.transform))
        assert built.shape == original.shape == (SIZE, SIZE)
        assert set(np.unique(built)) <= set(range(1, 10)) | {255}  # codes only, no interpolated values
        agreement.append(float((built == original).mean()))
    assert min(agreement) > 0.9, agreement


def test_classification_from_a_parquet_manifest_with_names_and_indices(
    rasters: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for row in _segmentation_rows(rasters):
        loc = row["anchor_id"].rsplit("-", 1)[0]
        name = _majority(rasters[loc]["lulc"], row["lat"], row["lon"])
        label = name if len(rows) % 2 else str(LULC.index(name))  # a name or an index
        split = "test" if row["anchor_id"].startswith(LOCATIONS[1]) else "train"
        rows.append({**{k: v for k, v in row.items() if k != "label_path"}, "label": label, "split": split})
    manifest = tmp_path / "samples.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"classes": LULC, "size_px": SIZE}))
    assert _run(manifest, tmp_path / "run", "--classes", str(classes)) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "accuracy" in results["modes"]["linear"]["summary"] and "split column" in results["description"]
    report = json.loads((tmp_path / "run" / "labels-dataset" / "labels_report.json").read_text())
    assert report["kind"] == "single_label" and sum(report["class_counts"]) == 12
    assert {a for a, s in report["splits"].items() if s == "test"} == {f"{LOCATIONS[1]}-{q}" for q in range(4)}
    # several classes per sample make the task multi-label
    multi = [{**r, "label": "trees;crops"} for r in rows]
    pq.write_table(pa.Table.from_pylist(multi), tmp_path / "multi.parquet")
    parsed = read_labelled_manifest(tmp_path / "multi.parquet", classes)
    assert parsed.kind == "multi_label" and set(map(tuple, parsed.labels.values())) == {(1, 3)}


def test_bad_rows_are_quarantined_with_reasons_and_the_rest_is_built(
    rasters: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    rows = [r for r in _segmentation_rows(rasters) if not r["anchor_id"].startswith(LOCATIONS[2])]
    denmark = rasters[LOCATIONS[2]]["mask"]
    rows[0] = {**rows[0], "label_path": str(denmark)}  # a Brazilian sample with a Danish mask: no overlap
    rows = [{**r, "label_path": os.path.relpath(r["label_path"], tmp_path)} for r in rows]  # relative to the manifest
    manifest = _write_csv(tmp_path / "m.csv", rows)
    classes = [{"name": n, "code": i + 1} for i, n in enumerate(LULC) if n != "trees"]  # code 2 left out
    manifest.with_suffix(".yaml").write_text(yaml.safe_dump({"classes": classes, "nodata": 0, "size_px": SIZE, "block_size_m": 1500}))
    assert _run(manifest, tmp_path / "run") == 0
    report = json.loads((tmp_path / "run" / "labels-dataset" / "labels_report.json").read_text())
    reasons = {q["anchor_id"]: q for q in report["quarantined"]}
    assert reasons[rows[0]["anchor_id"]]["reason"] == "footprint_outside"
    message = reasons[rows[0]["anchor_id"]]["message"]
    assert "label file" in message and "inside the file's bounds" in message and "found 0.0% of it covered" in message
    unknown = [q for q in report["quarantined"] if q["reason"] == "unknown_class"]
    assert unknown and "found codes [2] in the label raster" in unknown[0]["message"]
    assert "expected label codes [1, 3, 4" in unknown[0]["message"]
    assert len(report["splits"]) == 8 - len(reasons)


def test_manifest_mistakes_are_usage_errors(rasters: dict[str, dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _segmentation_rows(rasters)[:2]
    plain = _write_csv(tmp_path / "plain.csv", [{k: v for k, v in r.items() if k != "label_path"} for r in rows])
    _sidecar(plain)
    assert _run(plain, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "expected exactly one of the columns `label` (classification) or `label_path` (segmentation mask), found neither" in err
    nolist = _write_csv(tmp_path / "nolist.csv", rows)
    with pytest.raises(UsageError, match=r"expected a class list in a sidecar \(nolist\.yaml, nolist\.yml, nolist\.json\) or --classes FILE, found neither"):
        read_labelled_manifest(nolist)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"names": LULC}))
    with pytest.raises(UsageError, match=r"expected `classes:` as a list of at least 2 classes .*found None"):
        read_labelled_manifest(nolist, tmp_path / "bad.yaml")
    (tmp_path / "dup.yaml").write_text(yaml.safe_dump({"classes": ["water", "Water"]}))
    with pytest.raises(UsageError, match=r"expected each class name once, found \['water'\]"):
        read_labelled_manifest(nolist, tmp_path / "dup.yaml")
    labelled = [{**{k: v for k, v in r.items() if k != "label_path"}, "label": lab} for r, lab in zip(rows, ["trees", "forest"], strict=True)]
    named = _write_csv(tmp_path / "named.csv", labelled)
    _sidecar(named)
    parsed = read_labelled_manifest(named)
    assert list(parsed.labels.values()) == [[1]]  # the unknown class is one bad row, quarantined:
    assert parsed.quarantined[0]["reason"] == "unknown_class"
    assert "expected a class name from ['water', 'trees'," in parsed.quarantined[0]["message"] and "found 'forest'" in parsed.quarantined[0]["message"]
    split = _write_csv(tmp_path / "split.csv", [{**r, "split": "holdout"} for r in rows])
    _sidecar(split)
    with pytest.raises(UsageError, match=r"expected `split` values from \['train', 'validation', 'test'\], found \['holdout'\]"):
        read_labelled_manifest(split)
    assert main(["finetune", "--task", "labels:", "--steps", "1"]) == 2
    assert "labels:<manifest>" in capsys.readouterr().err


def test_block_splits_are_seeded_whole_blocks() -> None:
    rng = np.random.default_rng(0)
    blocks = {f"a{i}": ("EPSG:32632", int(rng.integers(0, 6)), int(rng.integers(0, 6))) for i in range(200)}
    first = block_splits(blocks, 0.25, seed=1)
    assert first == block_splits(blocks, 0.25, seed=1) and first != block_splits(blocks, 0.25, seed=2)
    for block in set(blocks.values()):
        assert len({first[a] for a, b in blocks.items() if b == block}) == 1
    held = {b for a, b in blocks.items() if first[a] == "test"}
    assert len(held) == round(0.25 * len(set(blocks.values())))
    with pytest.raises(UsageError, match="expected at least 2 spatial blocks to split train from test, found 1 block"):
        block_splits({"a": ("x", 0, 0), "b": ("x", 0, 0)}, 0.2, 0)


def test_non_overlapping_footprint_bounds_are_really_apart(rasters: dict[str, dict[str, Path]]) -> None:
    # the premise of the quarantine test: the Danish mask and the Brazilian tile share no area
    with rasterio.open(rasters[LOCATIONS[2]]["mask"]) as dk, rasterio.open(rasters[LOCATIONS[0]]["s2"]) as br:
        _, _, east, north = transform_bounds(br.crs, "EPSG:4326", *br.bounds)
        assert dk.bounds.left > east or dk.bounds.bottom > north
