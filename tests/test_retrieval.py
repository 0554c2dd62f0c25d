"""`geomeld index` / `geomeld eval-retrieval` and the Space's service layer on real samples (tiny random model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from _space_helpers import GRID, tiny_checkpoint
from PIL import Image
from rasterio.transform import from_origin

from modeling_geomeld.cli import main as geomeld
from space_app.app import RetrievalService, make_filter
from space_app.index import EmbeddingIndex
from space_app.retrieval import Embedder, build_index, evaluate_retrieval, load_retrieval_index
from space_app.uploads import UploadError, validate_upload


@pytest.fixture(scope="module")
def service(space_assets: dict[str, Path]) -> RetrievalService:
    a = space_assets
    return RetrievalService(a["checkpoint"], a["index"], a["dataset"])


def _half_dataset(dataset: Path, out: Path) -> Path:
    """A copy of `dataset` holding only the first half of its rows (same schema and writer)."""
    from dataset_scripts.writer import write_shard

    shards = sorted((dataset / "data").rglob("*.parquet"))
    rows = [r for s in shards for r in pq.read_table(s).to_pylist()]
    target = out / "data" / "part-00000.parquet"
    target.parent.mkdir(parents=True)
    write_shard(rows[: len(rows) // 2], target)
    return out


def test_index_holds_every_sample_and_caption_with_metadata(space_assets: dict[str, Path]) -> None:
    images, texts, info = load_retrieval_index(space_assets["index"])
    assert len(images) == 20 and len(texts) == 20
    assert info["dim"] == 24 and info["images"] == 20 and len(info["weights_sha256"]) == 64
    assert images.kind == "flat"  # 20 vectors: exact search
    for index in (images, texts):
        meta = index.metadata_of(index.row_of("637U_59R_1_3_0"))
        assert set(meta) == {"lat", "lon", "date", "country_code"}  # the filter fields, nothing per-row besides
        assert meta["country_code"] == "DK" and meta["date"].startswith("2017") and abs(meta["lat"] - 57.2) < 0.1
    assert all(index._metadata[r] is None for index in (images, texts) for r in range(20))  # columnar only


def test_hits_carry_caption_place_and_date_from_the_dataset(service: RetrievalService) -> None:
    hit = service.search_text("farmland", k=20, regions=["DK"])[0]
    assert hit.metadata["country_code"] == "DK" and "Denmark" in hit.metadata["place"]
    assert len(hit.metadata["caption"]) > 20 and hit.metadata["split"] in ("train", "validation", "test")


def test_index_appends_only_new_samples_and_matches_a_fresh_build(space_assets: dict[str, Path], tmp_path: Path) -> None:
    checkpoint, dataset = space_assets["checkpoint"], space_assets["dataset"]
    embedder = Embedder(checkpoint)
    half = _half_dataset(dataset, tmp_path / "half")
    first = build_index(checkpoint, half, tmp_path / "grown", progress=False, embedder=embedder)
    assert first.images_added == 10
    before = faiss_vector(tmp_path / "grown", 0)
    second = build_index(checkpoint, dataset, tmp_path / "grown", progress=False, embedder=embedder)
    assert (second.images_added, second.skipped_existing, second.images_total) == (10, 10, 20)
    assert np.array_equal(before, faiss_vector(tmp_path / "grown", 0))  # earlier rows untouched

    grown, _, _ = load_retrieval_index(tmp_path / "grown")
    fresh, _, _ = load_retrieval_index(space_assets["index"])
    query = embedder.embed_texts(["farmland on a flat plain"])
    assert sorted(grown.search(query, k=20).ids[0]) == sorted(fresh.search(query, k=20).ids[0])
    np.testing.assert_allclose(
        np.sort(grown.search(query, k=20).scores[0]), np.sort(fresh.search(query, k=20).scores[0]), atol=1e-5
    )


def faiss_vector(index_dir: Path, row: int) -> np.ndarray:
    return EmbeddingIndex.load(index_dir / "images").index.reconstruct(row)


def test_index_refuses_another_checkpoint(space_assets: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(space_assets["index"], tmp_path / "index")
    other = tiny_checkpoint(tmp_path / "other")
    import torch

    from modeling_geomeld import GeoMeldModel

    model = GeoMeldModel.from_pretrained(other)
    with torch.no_grad():
        model.visual_projection.weight.add_(1.0)
    model.save_pretrained(other)
    with pytest.raises(ValueError, match="another checkpoint"):
        build_index(other, space_assets["dataset"], tmp_path / "index", progress=False)
    with pytest.raises(ValueError, match="other weights"):
        RetrievalService(other, tmp_path / "index", space_assets["dataset"])


def test_eval_retrieval_cli_reports_recall_both_ways(space_assets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = space_assets
    out = tmp_path / "recall.json"
    code = geomeld(["eval-retrieval", "--checkpoint", str(a["checkpoint"]), "--dataset", str(a["dataset"]), "--split", "all", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "image_to_text" in printed and "mR" in printed
    result = json.loads(out.read_text())
    assert result["samples"] == 20
    for direction in ("image_to_text", "text_to_image"):
        recalls = [result[f"{direction}_R@{k}"] for k in (1, 5, 10)]
        assert recalls == sorted(recalls) and all(0 <= r <= 1 for r in recalls)
    parts = [v for k, v in result.items() if k.startswith(("image_to_text_R@", "text_to_image_R@"))]
    assert result["mR"] == pytest.approx(np.mean(parts))
    # every sample retrieves its own caption within the whole collection
    full = evaluate_retrieval(a["checkpoint"], a["dataset"], None, ks=(20,), progress=False)
    assert full["image_to_text_R@20"] == 1.0 and full["text_to_image_R@20"] == 1.0


def test_eval_retrieval_cli_explains_a_split_without_captions(space_assets: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a = space_assets
    code = geomeld(["eval-retrieval", "--checkpoint", str(a["checkpoint"]), "--dataset", str(a["dataset"]), "--split", "validation"])
    assert code == 2
    assert "at least 2 captioned samples" in capsys.readouterr().err


def test_index_cli_writes_and_extends(space_assets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = space_assets
    args = ["index", "--checkpoint", str(a["checkpoint"]), "--dataset", str(a["dataset"]), "--out", str(tmp_path / "ix"), "--batch-size", "7"]
    assert geomeld(args) == 0
    assert json.loads(capsys.readouterr().out.split("\nindex written")[0])["images_added"] == 20
    assert geomeld(args) == 0
    assert json.loads(capsys.readouterr().out.split("\nindex written")[0])["skipped_existing"] == 20
    assert geomeld(["index", "--checkpoint", str(tmp_path / "nothing"), "--dataset", str(a["dataset"])]) == 2
    assert "run `geomeld demo`" in capsys.readouterr().err


def test_modality_subsets(service: RetrievalService) -> None:
    from modeling_geomeld.training.pretraining import row_to_sample

    sample = row_to_sample(service.store.row("609U_541L_3_0_0"))
    both = service.embedder.embed_samples([sample])
    s1 = service.embedder.embed_samples([sample], ("sentinel1",))
    s2 = service.embedder.embed_samples([sample], ("sentinel2",))
    assert both.shape == s1.shape == (1, 24)
    assert np.allclose(np.linalg.norm(s1, axis=1), 1, atol=1e-5)
    assert not np.allclose(both, s1) and not np.allclose(s1, s2)
    with pytest.raises(ValueError, match="takes sentinel1, sentinel2 as input; it cannot embed dem"):
        service.embedder.embed_samples([sample], ("dem",))


def test_text_search_filters(service: RetrievalService) -> None:
    hits = service.search_text("flat farmland", k=8)
    assert len(hits) == 8 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    danish = service.search_text("flat farmland", k=8, regions=["DK"])
    assert len(danish) == 4 and {h.metadata["country_code"] for h in danish} == {"DK"}
    boxed = service.search_text("coast", k=8, bbox="-50, -27, -46, -24")
    assert {h.metadata["country_code"] for h in boxed} == {"BR"}
    dated = service.search_text("coast", k=20, date_from="2021-01-01", date_to="2021-12-31")
    assert dated and all(h.metadata["date"].startswith("2021") for h in dated)
    assert service.search_text("coast", k=5, date_from="2031-01-01") == []
    for bad, message in (("", "type a description"), ("x" * 400, "too long")):
        with pytest.raises(ValueError, match=message):
            service.search_text(bad)
    with pytest.raises(ValueError, match="four numbers"):
        make_filter(None, "1,2,3", None, None)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        make_filter(None, None, "last year", None)


def test_detail_shows_every_modality_caption_facts_and_map(service: RetrievalService) -> None:
    d = service.detail("637U_59R_1_3_0")
    labels = [label for _, label in d["panels"]]
    assert labels == ["Sentinel-2 true colour", "Sentinel-2 false colour (NIR)", "Sentinel-1 VV/VH", "DEM hillshade", "Dynamic World"]
    for path, _ in d["panels"]:
        with Image.open(path) as picture:
            assert picture.size == (GRID, GRID) and picture.mode == "RGB"
    assert d["panels"][0][0] == service.detail("637U_59R_1_3_0")["panels"][0][0]  # rendered once, then reused
    assert "Dynamic World" in d["legend"] and "geomeld-swatch" in d["legend"]
    assert d["facts"] and {row[1] for row in d["facts"]} <= {"supported", "contradicted", "unverifiable"}
    with Image.open(d["map"]) as picture:
        assert picture.mode == "RGB" and picture.size[0] > picture.size[1] > 100
    with pytest.raises(ValueError, match="no sample with tile id"):
        service.detail("nowhere")


def test_image_to_text_for_a_sample(service: RetrievalService) -> None:
    result = service.image_to_text(tile_id="38D_378R_2_3_1", k=5)
    assert len(result["captions"]) == 5 and all(h.metadata["caption"] for h in result["captions"])
    assert len(result["similar"]) == 5 and "38D_378R_2_3_1" not in [h.tile_id for h in result["similar"]]
    with pytest.raises(ValueError, match="select a sample"):
        service.image_to_text(tile_id="")


# -------------------------------------------------------------------------------------------------- uploads
def _geotiff(path: Path, count: int, crs: str | None = "EPSG:32632", size: int = 120) -> Path:
    rng = np.random.default_rng(0)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": count, "dtype": "uint16",
               "transform": from_origin(500_000, 6_300_000, 10, 10)}  # fmt: skip
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rng.integers(300, 3000, (count, size, size)).astype("uint16"))
    return path


def test_upload_of_a_real_sentinel2_file_lands_on_the_grid(terramind_dir: Path) -> None:
    uploaded = validate_upload(terramind_dir / "S2L2A" / "637U_59R_1_3.tif", "sentinel2_l2a", size_px=GRID)
    assert list(uploaded.arrays) == ["sentinel2_l2a"] and uploaded.arrays["sentinel2_l2a"].shape == (12, GRID, GRID)
    assert uploaded.bands["sentinel2_l2a"][7] == "B08"
    assert abs(uploaded.metadata["lat"] - 57.2) < 0.1


def test_upload_band_descriptions_carry_the_order(tmp_path: Path) -> None:
    """A file whose bands are VH then VV (named in its band descriptions) is stored VV, VH with the data moved:
    the VH band is written about ten times weaker than VV, as real backscatter is."""
    path = tmp_path / "s1.tif"
    profile = {"driver": "GTiff", "width": 120, "height": 120, "count": 2, "dtype": "float32", "crs": "EPSG:32632",
               "transform": from_origin(500_000, 6_300_000, 10, 10)}  # fmt: skip
    rng = np.random.default_rng(1)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rng.uniform(0.01, 0.02, (120, 120)).astype("float32"), 1)  # VH
        dst.write(rng.uniform(0.1, 0.2, (120, 120)).astype("float32"), 2)  # VV
        dst.set_band_description(1, "VH")
        dst.set_band_description(2, "VV")
    uploaded = validate_upload(path, "sentinel1", size_px=GRID)
    assert uploaded.bands["sentinel1"] == ["VV", "VH"]
    vv, vh = uploaded.arrays["sentinel1"]
    assert np.nanmean(vv) > 5 * np.nanmean(vh)


def _text_file(path: Path) -> Path:
    path.write_text("tile_id,caption\nnot,a raster\n")
    return path


@pytest.mark.parametrize(
    ("make", "product", "message"),
    [
        (lambda p: _text_file(p), "sentinel2_l2a", "not a GeoTIFF"),
        (lambda p: _geotiff(p, 12, crs=None), "sentinel2_l2a", "no CRS"),
        (lambda p: _geotiff(p, 3), "sentinel2_l2a", "wrong bands"),
        (lambda p: _geotiff(p, 2, size=20), "sentinel1", "too small"),
        (lambda p: _geotiff(p, 2), "naip", "product to be one of"),
    ],
)
def test_bad_uploads_are_refused_with_the_reason(tmp_path: Path, make: object, product: str, message: str) -> None:
    path = make(tmp_path / "upload.tif")  # type: ignore[operator]
    with pytest.raises(UploadError, match=message):
        validate_upload(path, product, size_px=GRID)


def test_oversized_upload_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import space_app.uploads as uploads

    monkeypatch.setattr(uploads, "MAX_UPLOAD_MB", 0.001)
    with pytest.raises(UploadError, match="too large"):
        validate_upload(_geotiff(tmp_path / "big.tif", 2), "sentinel1")
