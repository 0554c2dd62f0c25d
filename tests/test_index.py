"""EmbeddingIndex: exact search against numpy, approximate recall, append after reload, filters, errors."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from space_app.index import (
    DEFAULT_MEMORY_BUDGET_BYTES,
    EXACT_MAX_VECTORS,
    MANIFEST_FILE,
    MAPPING_FILE,
    EmbeddingIndex,
    SearchFilter,
    choose_kind,
    estimate_bytes,
    l2_normalize,
    set_num_threads,
)

DIM = 48  # deliberately not the model's 256, so nothing silently assumes it


def clustered(n: int, dim: int = DIM, centres: int = 40, spread: float = 0.6, seed: int = 0) -> np.ndarray:
    """Unit vectors from a Gaussian mixture: the shape of real embedding collections, small enough for tests.

    The centres depend only on (dim, centres), so different seeds draw held-out points of the same mixture.
    """
    c = l2_normalize(np.random.default_rng([dim, centres]).standard_normal((centres, dim)))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, centres, n)
    return l2_normalize(c[labels] + spread / np.sqrt(dim) * rng.standard_normal((n, dim)))


def tile_ids(start: int, n: int) -> list[str]:
    return [f"tile-{i:05d}" for i in range(start, start + n)]


def places(n: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    lon, lat = rng.uniform(-20, 20, n), rng.uniform(-10, 10, n)
    months = rng.integers(1, 13, n)
    return [
        {"lon": float(lon[i]), "lat": float(lat[i]), "date": f"2023-{months[i]:02d}-15", "place": f"p{i}"}
        for i in range(n)
    ]


def brute_force(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = q @ x.T
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return rows, np.take_along_axis(scores, rows, axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / truth.shape[1] for f, t in zip(found, truth, strict=True)]))


def large_kind() -> str:
    """The kind the index picks for a multi-million collection of model-width vectors."""
    return choose_kind(2_500_000, 256)["kind"]


def trained_state(index: EmbeddingIndex) -> np.ndarray:
    """Coarse centroids followed by the scalar quantiser's trained ranges: what a retrain would change."""
    ivf = faiss.extract_index_ivf(index.index)
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist).ravel()
    return np.concatenate([centroids, faiss.vector_to_array(faiss.downcast_index(ivf).sq.trained)])


# ------------------------------------------------------------------------------------------ kind choice
def test_choose_kind_by_size_and_budget() -> None:
    assert choose_kind(1_000, 256)["kind"] == "flat"
    assert choose_kind(EXACT_MAX_VECTORS, 256)["kind"] == "flat"
    # The most accurate encoding that fits: fp16 at 1M, 8-bit at 2.5M where fp16's build outgrows 2 GB.
    assert choose_kind(1_000_000, 256)["kind"] == "ivf_fp16"
    big = choose_kind(2_500_000, 256)
    assert big["kind"] == "ivf_sq8"
    assert big["nlist"] == 4096
    assert estimate_bytes(big["kind"], 2_500_000, 256, big["nlist"]) <= DEFAULT_MEMORY_BUDGET_BYTES
    # A tight budget falls back to product quantisation with as many sub-quantisers as fit.
    tight = choose_kind(2_500_000, 256, memory_budget_bytes=800 * 1024**2)
    assert tight["kind"] == "ivf_pq"
    assert estimate_bytes("ivf_pq", 2_500_000, 256, tight["nlist"], tight["pq_m"]) <= 800 * 1024**2
    # A small collection whose flat copy exceeds the budget is approximate too.
    assert choose_kind(10_000, 256, memory_budget_bytes=8 * 1024**2)["kind"] != "flat"
    with pytest.raises(ValueError, match="no index kind fits"):
        choose_kind(2_500_000, 256, memory_budget_bytes=1024**2)


# ----------------------------------------------------------------------------------------- exact search
def test_flat_search_equals_numpy_brute_force() -> None:
    x, q = clustered(700), clustered(13, seed=5)
    index = EmbeddingIndex(DIM, len(x))
    assert index.kind == "flat"
    index.add(x, tile_ids(0, len(x)))
    result = index.search(q, k=9)
    rows, scores = brute_force(x, q, 9)
    np.testing.assert_allclose(result.scores, scores, rtol=0, atol=1e-5)
    # Rows may differ only where two scores tie to float precision.
    mismatch = result.rows != rows
    assert np.all(np.abs(scores[mismatch] - result.scores[mismatch]) < 1e-5)
    assert result.ids[0] == [f"tile-{r:05d}" for r in result.rows[0]]


# ----------------------------------------------------------------------------------- approximate search
@pytest.mark.parametrize("kind", ["ivf_fp16", "ivf_sq8", "hnsw_sq8"])
def test_approximate_recall_at_10(kind: str) -> None:
    x = clustered(5000, centres=60, seed=2)
    q = clustered(200, centres=60, seed=99)  # held out: same mixture, not in the index
    index = EmbeddingIndex(DIM, len(x), kind=kind)
    index.add(x, tile_ids(0, len(x)))
    truth, _ = brute_force(x, q, 10)
    found = index.search(q, k=10).rows
    assert recall(found, truth) >= 0.95


# ------------------------------------------------------------------------------------ save, load, append
def test_add_after_save_and_load_keeps_ids_and_centroids(tmp_path: Path) -> None:
    x = clustered(3000, seed=3)
    index = EmbeddingIndex(DIM, 3000, kind=large_kind())
    index.add(x[:2000], tile_ids(0, 2000), places(2000))
    trained = trained_state(index)
    index.save(tmp_path / "idx")

    manifest = json.loads((tmp_path / "idx" / MANIFEST_FILE).read_text())
    assert manifest["kind"] == large_kind() and manifest["dim"] == DIM and manifest["count"] == 2000
    assert manifest["metric"] == "inner_product" and manifest["normalization"] == "l2"
    assert manifest["params"]["nlist"] == index.params["nlist"]
    assert len((tmp_path / "idx" / MAPPING_FILE).read_text().splitlines()) == 2000

    loaded = EmbeddingIndex.load(tmp_path / "idx")
    np.testing.assert_array_equal(trained_state(loaded), trained)
    assert loaded.row_of("tile-01234") == 1234
    assert loaded.metadata_of(7) == places(2000)[7]
    before = loaded.search(x[:5], k=5)
    np.testing.assert_array_equal(before.rows, index.search(x[:5], k=5).rows)

    rows = loaded.add(x[2000:], tile_ids(2000, 1000))
    np.testing.assert_array_equal(rows, np.arange(2000, 3000))
    # No retraining: centroids and quantiser ranges are exactly those trained on the first batch.
    np.testing.assert_array_equal(trained_state(loaded), trained)
    assert len(loaded) == 3000 and loaded.row_of("tile-01234") == 1234 and loaded.id_of(2500) == "tile-02500"
    top1 = loaded.search(x[2990:3000], k=1)
    assert [ids[0] for ids in top1.ids] == tile_ids(2990, 10)


def test_flat_round_trip_gives_identical_results(tmp_path: Path) -> None:
    x = clustered(400, seed=4)
    index = EmbeddingIndex(DIM, 400)
    index.add(x, tile_ids(0, 400), places(400))
    loaded = EmbeddingIndex.load(index.save(tmp_path / "flat"))
    a, b = index.search(x[:6], k=4), loaded.search(x[:6], k=4)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.metadata == b.metadata


def test_load_rejects_inconsistent_folder(tmp_path: Path) -> None:
    index = EmbeddingIndex(DIM, 50)
    index.add(clustered(50), tile_ids(0, 50))
    folder = index.save(tmp_path / "idx")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["count"] = 51
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="51"):
        EmbeddingIndex.load(folder)
    with pytest.raises(FileNotFoundError):
        EmbeddingIndex.load(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------ filters
@pytest.mark.parametrize("kind", ["flat", large_kind()])
def test_filters_return_only_matching_rows_and_the_best_of_them(kind: str) -> None:
    x, meta = clustered(3000, seed=6), places(3000)
    meta[0] = {"place": "no coordinates"}  # rows without the metadata never match an active filter
    index = EmbeddingIndex(DIM, 3000, kind=kind)
    index.add(x, tile_ids(0, 3000), meta)
    flt = SearchFilter(bbox=(-5.0, -3.0, 8.0, 6.0), date_range=("2023-03-01", "2023-06-30"))
    allowed = np.array(
        [
            "lon" in m
            and -5 <= m["lon"] <= 8
            and -3 <= m["lat"] <= 6
            and "2023-03-01" <= m["date"] <= "2023-06-30"
            for m in meta
        ]
    )
    assert 50 < allowed.sum() < 500  # a selective filter: most top-k rows of an unfiltered search fail it
    q = x[:8]
    result = index.search(q, k=10, filter=flt)
    assert all(len(ids) == 10 for ids in result.ids)
    for hits in result.metadata:
        for m in hits:
            assert -5 <= m["lon"] <= 8 and -3 <= m["lat"] <= 6 and "2023-03" <= m["date"][:7] <= "2023-06"
    subset = np.flatnonzero(allowed)
    truth_local, _ = brute_force(x[subset], q, 10)
    truth = subset[truth_local]
    if kind == "flat":
        np.testing.assert_array_equal(result.rows, truth)
    else:
        assert recall(result.rows, truth) >= 0.9


def test_filter_matching_nothing_returns_no_hits() -> None:
    index = EmbeddingIndex(DIM, 100)
    index.add(clustered(100), tile_ids(0, 100), places(100))
    result = index.search(
        clustered(2, seed=8), k=3, filter=SearchFilter(date_range=("1990-01-01", "1990-12-31"))
    )
    assert result.ids == [[], []]
    assert (result.rows == -1).all() and np.isneginf(result.scores).all()


def test_search_filter_validation() -> None:
    with pytest.raises(ValueError, match="min <= max"):
        SearchFilter(bbox=(10.0, 0.0, -10.0, 5.0))
    with pytest.raises(ValueError, match="start <= end"):
        SearchFilter(date_range=("2024-05-01", "2024-01-01"))
    with pytest.raises(ValueError, match="date_range"):
        SearchFilter(date_range=("not a date", "2024-01-01"))


# ------------------------------------------------------------------------------------------------- errors
def test_dimension_mismatch_is_rejected() -> None:
    index = EmbeddingIndex(DIM, 10)
    with pytest.raises(ValueError, match=rf"\(n, {DIM}\).*\(10, {DIM + 1}\)"):
        index.add(clustered(10, dim=DIM + 1), tile_ids(0, 10))
    index.add(clustered(10), tile_ids(0, 10))
    with pytest.raises(ValueError, match=rf"\(n, {DIM}\)"):
        index.search(clustered(2, dim=16), k=1)


def test_unnormalised_input_raises_unless_normalize_is_asked() -> None:
    x = clustered(30)
    index = EmbeddingIndex(DIM, 30)
    with pytest.raises(ValueError, match=r"L2-normalised.*norm 3"):
        index.add(3.0 * x, tile_ids(0, 30))
    index.add(3.0 * x, tile_ids(0, 30), normalize=True)
    with pytest.raises(ValueError, match="L2-normalised"):
        index.search(2.0 * x[:1], k=1)
    result = index.search(2.0 * x[:1], k=1, normalize=True)
    assert result.ids == [["tile-00000"]]
    assert result.scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="all-zero"):
        index.search(np.zeros((1, DIM), np.float32), k=1, normalize=True)


def test_empty_index_and_k_out_of_range() -> None:
    index = EmbeddingIndex(DIM, 20)
    with pytest.raises(ValueError, match="empty"):
        index.search(clustered(1), k=1)
    index.add(clustered(20), tile_ids(0, 20))
    with pytest.raises(ValueError, match="between 1 and the collection size 20, found 21"):
        index.search(clustered(1), k=21)
    with pytest.raises(ValueError, match="found 0"):
        index.search(clustered(1), k=0)


def test_bad_ids_and_metadata_are_rejected() -> None:
    index = EmbeddingIndex(DIM, 20)
    with pytest.raises(ValueError, match="one entry per embedding"):
        index.add(clustered(5), tile_ids(0, 4))
    with pytest.raises(ValueError, match="unique within a batch"):
        index.add(clustered(2), ["a", "a"])
    with pytest.raises(ValueError, match="metadata must have one entry"):
        index.add(clustered(3), tile_ids(0, 3), [{}])
    index.add(clustered(3), tile_ids(0, 3))
    with pytest.raises(ValueError, match=r"already present.*tile-00002"):
        index.add(clustered(2, seed=3), ["new", "tile-00002"])
    assert len(index) == 3  # a rejected batch adds nothing


def test_ivf_first_batch_must_be_large_enough_to_train() -> None:
    index = EmbeddingIndex(DIM, 100_000, kind=large_kind(), nlist=64)
    with pytest.raises(ValueError, match=r"nlist=64.*found 10"):
        index.add(clustered(10), tile_ids(0, 10))
    assert not index.is_trained and len(index) == 0


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="kind must be"):
        EmbeddingIndex(DIM, 10, kind="lsh")
    with pytest.raises(ValueError, match="expected_size"):
        EmbeddingIndex(DIM)
    with pytest.raises(ValueError, match="dim must be"):
        EmbeddingIndex(0, 10)
    with pytest.raises(ValueError, match="pq_m must divide"):
        EmbeddingIndex(DIM, 10, kind="ivf_pq", pq_m=5)


def test_thread_count_is_set_for_faiss() -> None:
    previous = faiss.omp_get_max_threads()
    try:
        EmbeddingIndex(DIM, 10, num_threads=1)
        assert faiss.omp_get_max_threads() == 1
        with pytest.raises(ValueError, match="num_threads"):
            set_num_threads(0)
    finally:
        set_num_threads(previous)
