"""Metrics against straightforward loops, and the `evaluate` modules against the functions they wrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modeling_geomeld.evaluation import (
    METRIC_NAMES,
    accuracy,
    load_metric,
    mean_iou,
    micro_f1,
    retrieval_recall,
)

# -- references, written as plainly as possible -------------------------------------------------------


def ref_accuracy(pred: list[int], ref: list[int]) -> float:
    return sum(1 for p, r in zip(pred, ref, strict=True) if p == r) / len(ref)


def ref_micro_f1(pred: np.ndarray, ref: np.ndarray) -> float:
    tp = fp = fn = 0
    for i in range(pred.shape[0]):
        for j in range(pred.shape[1]):
            if pred[i, j] and ref[i, j]:
                tp += 1
            elif pred[i, j]:
                fp += 1
            elif ref[i, j]:
                fn += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def ref_ious(pred: np.ndarray, ref: np.ndarray, num_labels: int, ignore: int | None) -> list[float]:
    ious = []
    for c in range(num_labels):
        inter = union = 0
        for p, r in zip(pred.ravel().tolist(), ref.ravel().tolist(), strict=True):
            if ignore is not None and r == ignore:
                continue
            inter += p == c and r == c
            union += p == c or r == c
        ious.append(inter / union if union else math.nan)
    return ious


def ref_recall(sim: np.ndarray, positives: list[set[int]], k: int) -> float:
    hits = 0
    for i in range(sim.shape[0]):
        ranked = sorted(range(sim.shape[1]), key=lambda j: (-sim[i, j], j))
        hits += any(j in positives[i] for j in ranked[:k])
    return hits / sim.shape[0]


# -- accuracy and micro-F1 ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_accuracy_matches_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred, ref = rng.integers(0, 5, 57), rng.integers(0, 5, 57)
    assert accuracy(pred, ref) == pytest.approx(ref_accuracy(pred.tolist(), ref.tolist()))


def test_accuracy_rejects_mismatched_and_empty_inputs() -> None:
    with pytest.raises(ValueError, match=r"shape \(3,\).*shape \(2,\)"):
        accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])


@pytest.mark.parametrize("seed", range(4))
def test_micro_f1_matches_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred = (rng.random((13, 43)) < 0.1 * (seed + 1)).astype(int)
    ref = (rng.random((13, 43)) < 0.15).astype(int)
    assert micro_f1(pred, ref) == pytest.approx(ref_micro_f1(pred, ref))


def test_micro_f1_edge_cases() -> None:
    zeros = np.zeros((3, 4), dtype=int)
    assert micro_f1(zeros, zeros) == 0.0  # nothing to find, nothing found: sklearn's zero_division
    assert micro_f1(zeros, zeros, zero_division=1.0) == 1.0
    ref = np.eye(4, dtype=int)[:3]
    assert micro_f1(zeros, ref) == 0.0
    assert micro_f1(ref, ref) == 1.0
    with pytest.raises(ValueError, match=r"only 0 and 1.*\[2\]"):
        micro_f1([[0, 2]], [[0, 1]])
    with pytest.raises(ValueError, match="multi-hot"):
        micro_f1([0, 1], [0, 1])


# -- mean IoU -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "ignore"), [(0, None), (1, -1), (2, 255), (3, -1)])
def test_mean_iou_matches_loop(seed: int, ignore: int | None) -> None:
    rng = np.random.default_rng(seed)
    num_labels = 6
    # class 5 never occurs in either map: its IoU is undefined and must not enter the mean
    pred = rng.integers(0, 5, (3, 9, 11))
    ref = rng.integers(0, 5, (3, 9, 11))
    if ignore is not None:
        ref[rng.random(ref.shape) < 0.2] = ignore
    expected = ref_ious(pred, ref, num_labels, ignore)
    got = mean_iou(pred, ref, num_labels=num_labels, ignore_index=ignore)
    np.testing.assert_allclose(got["per_category_iou"], expected, equal_nan=True)
    assert math.isnan(got["per_category_iou"][5])
    assert got["mean_iou"] == pytest.approx(np.mean([v for v in expected if not math.isnan(v)]))
    kept = ref != ignore if ignore is not None else np.ones(ref.shape, bool)
    assert got["overall_accuracy"] == pytest.approx(np.mean(pred[kept] == ref[kept]))


def test_mean_iou_ignored_pixels_do_not_count_even_when_predicted_wrong() -> None:
    ref = np.array([[0, 1, -1, -1]])
    pred = np.array([[0, 1, 1, 0]])
    assert mean_iou(pred, ref, num_labels=2, ignore_index=-1)["mean_iou"] == 1.0
    assert mean_iou(pred, np.where(ref < 0, 0, ref), num_labels=2)["mean_iou"] < 1.0


def test_mean_iou_class_only_in_predictions_scores_zero() -> None:
    got = mean_iou(np.array([0, 0, 2]), np.array([0, 0, 0]), num_labels=3)
    np.testing.assert_allclose(got["per_category_iou"], [2 / 3, np.nan, 0.0], equal_nan=True)
    assert got["mean_iou"] == pytest.approx(1 / 3)


def test_mean_iou_rejects_labels_outside_range() -> None:
    with pytest.raises(ValueError, match=r"references hold labels \[7\] outside 0..2"):
        mean_iou([0, 1], [0, 7], num_labels=3)
    with pytest.raises(ValueError, match=r"predictions hold labels \[-1\]"):
        mean_iou([0, -1], [0, 1], num_labels=3, ignore_index=255)


# -- retrieval recall ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_retrieval_recall_matches_loop_with_ties_and_several_positives(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_images, captions_per_image = 12, 2
    # rounded scores make many ties; ties must rank the lower index first in both implementations
    sim = np.round(rng.random((n_images, n_images * captions_per_image)), 1)
    positives = [{captions_per_image * i + c for c in range(captions_per_image)} for i in range(n_images)]
    got = retrieval_recall(sim, [sorted(p) for p in positives])
    text_positives = [{i for i in range(n_images) if t in positives[i]} for t in range(sim.shape[1])]
    expected = {}
    for k in (1, 5, 10):
        expected[f"image_to_text_R@{k}"] = ref_recall(sim, positives, k)
        expected[f"text_to_image_R@{k}"] = ref_recall(sim.T, text_positives, k)
    expected["mR"] = float(np.mean(list(expected.values())))
    assert got == pytest.approx(expected)


def test_retrieval_recall_from_embeddings_is_cosine() -> None:
    rng = np.random.default_rng(5)
    images, texts = rng.normal(size=(15, 8)), rng.normal(size=(15, 8))
    scaled = texts * rng.uniform(0.1, 10, size=(15, 1))  # cosine ignores scale
    sim = (images / np.linalg.norm(images, axis=1, keepdims=True)) @ (
        texts / np.linalg.norm(texts, axis=1, keepdims=True)
    ).T
    expected = retrieval_recall(sim)
    assert retrieval_recall(image_embeddings=images, text_embeddings=scaled) == pytest.approx(expected)
    positives = [{i} for i in range(15)]
    assert expected["image_to_text_R@1"] == pytest.approx(ref_recall(sim, positives, 1))


def test_retrieval_recall_perfect_and_errors() -> None:
    perfect = retrieval_recall(np.eye(4) + 0.01)
    assert perfect["mR"] == 1.0
    with pytest.raises(ValueError, match="square"):
        retrieval_recall(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"text_to_image: queries \[2\] have no positive"):
        retrieval_recall(np.zeros((2, 3)), [[0], [1]])
    with pytest.raises(ValueError, match="not both"):
        retrieval_recall(np.eye(2), image_embeddings=np.eye(2), text_embeddings=np.eye(2))


# -- the `evaluate` modules ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def metrics() -> dict:
    return {name: load_metric(name) for name in METRIC_NAMES}


def test_evaluate_modules_match_the_functions(metrics: dict) -> None:
    rng = np.random.default_rng(11)
    pred, ref = rng.integers(0, 4, 20), rng.integers(0, 4, 20)
    got = metrics["accuracy"].compute(predictions=pred.tolist(), references=ref.tolist())
    assert got == {"accuracy": pytest.approx(accuracy(pred, ref))}

    hot_p, hot_r = rng.integers(0, 2, (6, 43)), rng.integers(0, 2, (6, 43))
    got = metrics["micro_f1"].compute(predictions=hot_p.tolist(), references=hot_r.tolist())
    assert got == {"micro_f1": pytest.approx(ref_micro_f1(hot_p, hot_r))}

    maps_p, maps_r = rng.integers(0, 3, (2, 5, 7)), rng.integers(-1, 3, (2, 5, 7))
    got = metrics["mean_iou"].compute(
        predictions=list(maps_p), references=list(maps_r), num_labels=4, ignore_index=-1
    )
    expected = mean_iou(maps_p, maps_r, num_labels=4, ignore_index=-1)
    assert got["mean_iou"] == pytest.approx(expected["mean_iou"])
    np.testing.assert_allclose(got["per_category_iou"], ref_ious(maps_p, maps_r, 4, -1), equal_nan=True)

    sim = rng.random((6, 6))
    got = metrics["retrieval_recall"].compute(
        predictions=sim.tolist(), references=[[i] for i in range(6)], ks=[1, 5]
    )
    assert got == pytest.approx(retrieval_recall(sim, ks=(1, 5)))
    assert got["image_to_text_R@1"] == pytest.approx(ref_recall(sim, [{i} for i in range(6)], 1))


def test_load_metric_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"unknown metric 'f1'.*micro_f1"):
        load_metric("f1")
