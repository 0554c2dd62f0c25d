"""The JRC surface-water layer: aligned from its geographic grid onto the sample's, and the water consensus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _build_helpers import terramind_rows, write_manifest
from fixtures.make_jrc_water import write_jrc_occurrence

from dataset_scripts.build import BuildOptions, build
from dataset_scripts.loading import band_names, decode_row, load_geomeld
from dataset_scripts.plotting import render_layer

COAST = "282D_485L_3_3"  # Brazil coast: open water and land in one tile


@pytest.fixture(scope="module")
def built(terramind_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("jrc")
    jrc = write_jrc_occurrence(terramind_dir, COAST, tmp / "jrc_occurrence.tif")
    rows = [*terramind_rows(terramind_dir, COAST), {"anchor_id": COAST, "modality": "jrc_water", "path": str(jrc), "bands": "occurrence"}]
    build(f"manifest:{write_manifest(rows, tmp / 'manifest.csv')}", tmp / "ds", BuildOptions(workers=0, progress=False))
    return next(r for split in load_geomeld(tmp / "ds").values() for r in split)


def test_jrc_layer_lands_on_the_sample_grid(built: dict) -> None:
    arrays, bands = decode_row(built), band_names(built)
    assert bands["jrc_water"] == ["occurrence"]
    occurrence = arrays["jrc_water"][0]
    assert occurrence.shape == arrays["sentinel2"].shape[1:] and occurrence.dtype == np.float32
    valid = np.isfinite(occurrence)
    assert valid.mean() > 0.9 and occurrence[valid].min() >= 0 and occurrence[valid].max() <= 90.0001
    # the JRC layer came from EPSG:4326 at ~28 m, Dynamic World from UTM at 10 m: they must still coincide
    water_dw = arrays["dynamic_world"][0] == 1 + 0  # stored code 1 = Dynamic World index 0, water
    both = valid & (arrays["dynamic_world"][0] > 0)
    agree = ((occurrence >= 50) == water_dw)[both].mean()
    assert agree > 0.95, f"JRC and Dynamic World water agree on only {agree:.3f} of the pixels"
    assert render_layer("jrc_water", arrays["jrc_water"], bands["jrc_water"])["JRC water occurrence"].shape[-1] == 3


def test_water_signal_keeps_both_sources_and_their_agreement(built: dict) -> None:
    water = json.loads(built["signals"])["water"]
    assert water["source"] == "dynamic_world"
    assert water["percentage"] > 5, "the coastal tile holds open water"
    assert water["jrc_percentage"] == pytest.approx(water["percentage"], abs=3)
    assert water["agreement"] > 0.95
    assert "jrc_water" in built["modalities"]
