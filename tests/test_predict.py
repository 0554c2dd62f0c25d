"""`geomeld predict`: whole-scene tiled inference on real GeoTIFFs and on a synthetic scene with a real grid.

The synthetic scene (tests/fixtures/make_scene.py) is a 12-band Sentinel-2 L2A-like GeoTIFF on a UTM grid; the
real ones are the TerraMesh samples of ../shared/data (skipped with a reason where absent). The models are tiny
random GeoMeld checkpoints with their processors, saved as `save_pretrained` writes them. The encoder here uses
3 x 3 depthwise kernels so that its receptive field is small next to the tiles; GRN starts at zero (identity),
so the only difference between tiled and whole-image outputs is the tiles' own borders (and, for the UNet
head, its per-tile GroupNorm statistics).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from make_scene import S2_BANDS, write_s1, write_s2

from dataset_scripts.errors import UsageError
from modeling_geomeld import (
    GeoMeldConfig,
    GeoMeldForImageClassification,
    GeoMeldForSemanticSegmentation,
    GeoMeldImageProcessor,
)
from modeling_geomeld.inference import PredictOptions, predict_scene, ramp
from modeling_geomeld.modalities import get_modality

H, W = 384, 352  # multiples of the patch (16), so the whole-image reference needs no padding
CLASSES = ["water", "trees", "crops", "built"]  # Dynamic World names: their legend colours are expected
TERRAMIND_S2_ORDER = "B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,B11,B12"  # ../shared/data/README.md


def _config(inputs: dict[str, list[str]] | None = None, **kw: object) -> GeoMeldConfig:
    id2label = dict(enumerate(CLASSES))
    encoder = {"kernel_size": 3, **({"input_modalities": inputs} if inputs else {})}
    return GeoMeldConfig.from_preset(
        "tiny", encoder_config=encoder, id2label=id2label, label2id={v: k for k, v in id2label.items()}, **kw
    )


def _save(model: Any, config: GeoMeldConfig, out: Path) -> Path:
    model.save_pretrained(out)
    GeoMeldImageProcessor.from_model_config(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    cfg = _config()
    mm = _config({"sentinel2": list(get_modality("sentinel2").default_bands), "sentinel1": ["VV", "VH"]})
    return {
        "root": root,
        "s2": write_s2(root / "s2.tif", H, W),
        "seg": _save(GeoMeldForSemanticSegmentation(cfg).eval(), cfg, root / "seg"),
        "cls": _save(GeoMeldForImageClassification(cfg).eval(), cfg, root / "cls"),
        "seg_mm": _save(GeoMeldForSemanticSegmentation(mm).eval(), mm, root / "seg_mm"),
    }


def _opts(**kw: object) -> PredictOptions:
    return PredictOptions(**{"tile": 192, "overlap": 96, "progress": False, **kw})  # type: ignore[arg-type]


def _whole_image(checkpoint: Path, path: Path) -> dict[str, np.ndarray]:
    """The model on the whole scene at once (no tiles): the reference the tiled run must match."""
    proc = GeoMeldImageProcessor.from_pretrained(checkpoint, crop_size=None)
    model = GeoMeldForSemanticSegmentation.from_pretrained(checkpoint).eval()
    with rasterio.open(path) as ds:
        batch = proc({"sentinel2_l2a": ds.read().astype(np.float32)}, band_names={"sentinel2_l2a": list(ds.descriptions)})
    with torch.no_grad():
        logits = model(pixel_values=batch["pixel_values"], valid_mask=batch["valid_mask"]).logits[0]
        feats = model.geomeld(pixel_values=batch["pixel_values"], valid_mask=batch["valid_mask"]).last_hidden_state[0]
    return {"classes": logits.argmax(0).numpy(), "patch_features": feats.numpy()}


# ---------------------------------------------------------------------------------------------------------


def test_cli_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    from modeling_geomeld.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--checkpoint", "--input", "--out", "--task", "--tile", "--overlap", "--bands", "--max-blocks"):
        assert option in text


def test_feathering_ramps_of_neighbouring_tiles_sum_to_one() -> None:
    for blend in ("cosine", "linear"):
        w = ramp(192, 64, blend)
        assert np.allclose(w[128:] + w[:64], 1.0, atol=1e-6), blend  # a tile's fall + the next tile's rise
        assert w.min() > 0 and w.max() == 1.0


def test_real_terramind_scene_multimodal_cli(terramind_dir: Path, work: dict[str, Path]) -> None:
    """Real S2 L2A + S1 RTC (no band descriptions: names from --bands) through the CLI; output on the S2 grid."""
    from modeling_geomeld.cli import main

    s2, s1 = terramind_dir / "S2L2A" / "637U_59R_1_3.tif", terramind_dir / "S1RTC" / "637U_59R_1_3.tif"
    out = work["root"] / "real_seg.tif"
    code = main([
        "predict", "--checkpoint", str(work["seg_mm"]), "--input", f"sentinel2_l2a={s2}", "--input", f"sentinel1={s1}",
        "--bands", f"sentinel2_l2a={TERRAMIND_S2_ORDER}", "--bands", "sentinel1=VV,VH", "--out", str(out),
        "--tile", "96", "--overlap", "32", "--no-progress",
    ])  # fmt: skip
    assert code == 0
    with rasterio.open(s2) as src, rasterio.open(out) as dst:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
        assert dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert dst.profile["tiled"] and dst.compression is not None
        classes = dst.read(1)
    assert set(np.unique(classes)) <= set(range(len(CLASSES)))  # every pixel predicted: real data, no gaps
    report = json.loads(out.with_name("real_seg.report.json").read_text())
    assert report["complete"] and report["bad_windows"] == [] and report["windows_ok"] == report["windows_total"]


def test_synthetic_scene_is_a_cog_with_the_input_grid_and_a_colour_table(work: dict[str, Path]) -> None:
    out = work["root"] / "seg.tif"
    report = predict_scene(str(work["seg"]), {"sentinel2_l2a": work["s2"]}, out, _opts(tile=128, overlap=32))
    assert report.complete and report.task == "segment"
    with rasterio.open(work["s2"]) as src, rasterio.open(out) as dst:
        assert (dst.crs, dst.transform, dst.width, dst.height) == (src.crs, src.transform, src.width, src.height)
        assert dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert dst.profile["tiled"] and dst.compression.name.lower() == "deflate"
        assert dst.dtypes[0] == "uint8" and dst.nodata == 255 and dst.descriptions == ("class",)
        colours = dst.colormap(1)
        assert json.loads(dst.tags()["class_names"]) == CLASSES
    dw = {c.name: c.color for c in get_modality("dynamic_world").classes}
    for i, name in enumerate(CLASSES):
        hexa = dw[name]
        assert colours[i][:3] == tuple(int(hexa[j : j + 2], 16) for j in (1, 3, 5)), name
    assert not out.with_name(out.name + ".partial.tif").exists() and not out.with_name(out.name + ".state.json").exists()


def test_cog_of_a_larger_scene_has_overviews(work: dict[str, Path]) -> None:
    s2 = write_s2(work["root"] / "s2_big.tif", 560, 544, seed=3)
    out = work["root"] / "big.tif"
    predict_scene(str(work["seg"]), {"sentinel2_l2a": s2}, out, _opts(tile=272, overlap=0, batch_size=4))
    with rasterio.open(out) as dst:
        assert dst.overviews(1) == [2], dst.overviews(1)  # 560 px > one 512 px block: one overview level
        assert dst.block_shapes[0] == (512, 512)


def test_tiled_per_patch_embedding_matches_the_whole_image(work: dict[str, Path]) -> None:
    out = work["root"] / "embed_patch.tif"
    report = predict_scene(str(work["seg"]), {"sentinel2_l2a": work["s2"]}, out, _opts(task="embed"))
    ref = _whole_image(work["seg"], work["s2"])["patch_features"]  # (C, H/16, W/16)
    with rasterio.open(work["s2"]) as src, rasterio.open(out) as dst:
        emb = dst.read()
        assert dst.transform == src.transform @ Affine.scale(16)  # the encoder's patch grid
        assert dst.crs == src.crs and dst.shape == (H // 16, W // 16)
        assert dst.descriptions[0] == "embedding_000" and dst.dtypes[0] == "float32"
    assert report.complete and emb.shape == ref.shape
    m = 2  # patches next to the scene's edge see reflect padding in tiles and zero padding whole
    diff = emb[:, m:-m, m:-m] - ref[:, m:-m, m:-m]
    scale = ref.std()
    assert np.sqrt((diff**2).mean()) < 0.005 * scale and np.abs(diff).max() < 0.03 * scale
    # misaligned by one patch it is far off: the tolerance above tells aligned tiles from shifted ones
    shifted = emb[:, m:-m, m:-m - 1] - ref[:, m:-m, m + 1 : -m]
    assert np.sqrt((shifted**2).mean()) > 0.1 * scale


def test_tiled_segmentation_matches_the_whole_image(work: dict[str, Path]) -> None:
    out = work["root"] / "seg_tiled.tif"
    predict_scene(str(work["seg"]), {"sentinel2_l2a": work["s2"]}, out, _opts())
    ref = _whole_image(work["seg"], work["s2"])["classes"]
    with rasterio.open(out) as dst:
        classes = dst.read(1)
    m = 32
    agree = (classes[m:-m, m:-m] == ref[m:-m, m:-m]).mean()
    # the UNet head's GroupNorm normalises each tile by its own statistics: not bit-equal, nearly everywhere equal
    assert agree > 0.97, agree
    assert len(np.unique(ref[m:-m, m:-m])) > 1  # a constant map would agree trivially


def test_per_pixel_embedding_and_class_probabilities(work: dict[str, Path]) -> None:
    out = work["root"] / "embed_pixel.tif"
    predict_scene(str(work["seg"]), {"sentinel2_l2a": work["s2"]}, out, _opts(task="embed", embed_level="pixel"))
    with rasterio.open(work["s2"]) as src, rasterio.open(out) as dst:
        assert (dst.transform, dst.shape) == (src.transform, src.shape) and dst.count == 64
        assert dst.dtypes[0] == "float32" and np.isfinite(dst.read(1)).all()
    if not rasterio.dtypes.check_dtype("float16"):  # GDAL < 3.11 has no Float16 GeoTIFF: a clear refusal
        with pytest.raises(UsageError, match=r"float16 needs GDAL >= 3\.11"):
            predict_scene(str(work["seg"]), {"sentinel2_l2a": work["s2"]}, out, _opts(task="embed", dtype="float16"))
    out = work["root"] / "probs.tif"
    report = predict_scene(str(work["cls"]), {"sentinel2_l2a": work["s2"]}, out, _opts())
    assert report.task == "classify"  # the checkpoint's head
    with rasterio.open(out) as dst:
        probs = dst.read()
        assert dst.descriptions == tuple(f"p({c})" for c in CLASSES) and dst.shape == (H, W)
    assert np.allclose(probs.sum(axis=0), 1.0, atol=1e-4)  # blended softmaxes stay a distribution


def test_resume_after_max_blocks_equals_an_uninterrupted_run(work: dict[str, Path]) -> None:
    full, part = work["root"] / "full.tif", work["root"] / "part.tif"
    opts = _opts(tile=96, overlap=32)  # 6 row blocks of 5 tiles
    predict_scene(str(work["seg"]), {"sentinel2_l2a": work["s2"]}, full, opts)
    first = predict_scene(str(work["seg"]), {"sentinel2_l2a": work["s2"]}, part, _opts(tile=96, overlap=32, max_blocks=3))
    assert not first.complete and first.blocks_done == 3 and not part.exists()
    second = predict_scene(str(work["seg"]), {"sentinel2_l2a": work["s2"]}, part, opts)
    assert second.complete and second.resumed and second.blocks_done == second.blocks_total
    with rasterio.open(full) as a, rasterio.open(part) as b:
        assert np.array_equal(a.read(), b.read())


def test_resume_after_a_killed_process_equals_an_uninterrupted_run(work: dict[str, Path]) -> None:
    """`geomeld predict` SIGKILLed after its first row block; the rerun continues and matches a clean run."""
    full, killed = work["root"] / "full_k.tif", work["root"] / "killed.tif"
    cmd = [sys.executable, "-m", "modeling_geomeld.cli", "predict", "--checkpoint", str(work["seg"]),
           "--input", str(work["s2"]), "--tile", "96", "--overlap", "32", "--batch-size", "1", "--no-progress",
           "--out", str(killed)]  # fmt: skip
    state = killed.with_name(killed.name + ".state.json")
    proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text() or "{}").get("done"):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["done"]
    assert 1 <= len(done) < 6 and not killed.exists()
    opts = _opts(tile=96, overlap=32, batch_size=1)
    inputs = {"sentinel2": work["s2"]}  # what the CLI makes of a bare --input for an S2-only model
    resumed = predict_scene(str(work["seg"]), inputs, killed, opts)
    assert resumed.resumed and resumed.complete
    predict_scene(str(work["seg"]), inputs, full, opts)
    with rasterio.open(full) as a, rasterio.open(killed) as b:
        assert np.array_equal(a.read(), b.read())


def test_resume_refuses_the_state_of_a_different_run(work: dict[str, Path]) -> None:
    out = work["root"] / "other.tif"
    predict_scene(str(work["seg"]), {"sentinel2_l2a": work["s2"]}, out, _opts(tile=64, overlap=16, max_blocks=1))
    with pytest.raises(UsageError, match="different run"):
        predict_scene(str(work["seg"]), {"sentinel2_l2a": work["s2"]}, out, _opts(tile=64, overlap=32))


def test_bad_windows_become_nodata_and_are_reported(work: dict[str, Path]) -> None:
    """A NaN block (no valid pixel) and a corrupt compressed tile (read error): the run finishes around them."""
    path = work["root"] / "bad.tif"
    with rasterio.open(work["s2"]) as src:
        data = src.read().astype(np.float32)
        profile = {**src.profile, "dtype": "float32", "nodata": None, "blockxsize": 64, "blockysize": 64}
        names = src.descriptions
    data[:, 192:, :160] = np.nan  # the lower-left part of the scene is NaN in every band
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = names
    with rasterio.open(path) as ds:  # overwrite one compressed tile (row 0, column 4: pixels x 256..320) with junk
        offset = int(ds.get_tag_item("BLOCK_OFFSET_4_0", "TIFF", bidx=3))
        size = int(ds.get_tag_item("BLOCK_SIZE_4_0", "TIFF", bidx=3))
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)
    out = work["root"] / "bad_out.tif"
    report = predict_scene(str(work["seg"]), {"sentinel2_l2a": path}, out, _opts(tile=64, overlap=16))
    assert report.complete
    reasons = {b["reason"] for b in report.bad_windows}
    assert reasons == {"read_error", "all_nodata"}, report.bad_by_reason
    unreadable = [b for b in report.bad_windows if b["reason"] == "read_error"]
    assert all(b["row_off"] < 64 and b["col_off"] + b["width"] > 256 and b["col_off"] < 320 for b in unreadable)
    assert "RasterioIOError" in unreadable[0]["detail"]
    with rasterio.open(out) as dst:
        classes = dst.read(1)
    assert (classes[200:, :150] == 255).all()  # the NaN block is no-data
    assert (classes[:40, 270:310] == 255).all()  # so is the part only the unreadable windows covered
    assert (classes[:150, :150] != 255).all()  # and the rest of the scene is predicted
    saved = json.loads(out.with_name("bad_out.report.json").read_text())
    assert saved["bad_by_reason"] == report.bad_by_reason and saved["nodata_pixels"] > 0


def test_a_declared_giant_scene_is_refused_before_reading(work: dict[str, Path]) -> None:
    from rasterio.transform import from_origin

    path = work["root"] / "giant.tif"
    profile = {"driver": "GTiff", "count": 12, "dtype": "uint16", "height": 150000, "width": 150000, "crs": "EPSG:32632",
               "transform": from_origin(500000, 6300000, 0.01, 0.01), "tiled": True, "compress": "deflate", "sparse_ok": True}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = S2_BANDS
    assert path.stat().st_size < 8_000_000  # a few MB (its tile index) that declare 2.7e11 values
    with pytest.raises(UsageError, match=r"150000 x 150000 .*--max-scene-values"):
        predict_scene(str(work["seg"]), {"sentinel2_l2a": path}, work["root"] / "giant_out.tif", _opts())


def test_band_names_are_checked_before_any_pixel_is_read(work: dict[str, Path]) -> None:
    seg, out = str(work["seg"]), work["root"] / "x.tif"
    wrong = list(S2_BANDS)
    wrong[7] = "B10"  # B08 missing
    with pytest.raises(UsageError, match=r"lacks bands \['B08'\]"):
        predict_scene(seg, {"sentinel2_l2a": work["s2"]}, out, _opts(), band_names={"sentinel2_l2a": wrong})
    with pytest.raises(UsageError, match=r"names 3 bands .* holds 12"):
        predict_scene(seg, {"sentinel2_l2a": work["s2"]}, out, _opts(), band_names={"sentinel2_l2a": ["B01", "B02", "B03"]})
    unnamed = write_s2(work["root"] / "unnamed.tif", 64, 64, descriptions=False)
    with pytest.raises(UsageError, match=r"carry no .*--bands"):
        predict_scene(seg, {"sentinel2_l2a": unnamed}, out, _opts(tile=64, overlap=0))


def test_other_modality_on_another_grid_is_warped_onto_the_first(work: dict[str, Path]) -> None:
    s1 = write_s1(work["root"] / "s1_20m.tif", H, W)
    out = work["root"] / "mm.tif"
    report = predict_scene(str(work["seg_mm"]), {"sentinel2_l2a": work["s2"], "sentinel1": s1}, out, _opts())
    assert report.complete and report.reprojected_inputs == ["sentinel1"]
    with rasterio.open(work["s2"]) as src, rasterio.open(out) as dst:
        assert (dst.transform, dst.shape) == (src.transform, src.shape)
        assert (dst.read(1) != 255).all()


def test_cli_mistakes_are_one_line_errors(work: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from modeling_geomeld.cli import main

    code = main(["predict", "--checkpoint", str(work["seg_mm"]), "--input", str(work["s2"]), "--out", str(work["root"] / "y.tif")])
    assert code == 2 and "name each file's modality" in capsys.readouterr().err
    code = main(["predict", "--checkpoint", str(work["seg"]), "--input", str(work["s2"]), "--out", str(work["root"] / "y.tif"), "--task", "classify"])
    assert code == 2 and "GeoMeldForImageClassification head" in capsys.readouterr().err
    code = main(["predict", "--checkpoint", str(work["seg"]), "--input", str(work["s2"]), "--out", str(work["root"] / "y.tif"), "--tile", "100"])
    assert code == 2 and "multiples of the patch size 16" in capsys.readouterr().err
