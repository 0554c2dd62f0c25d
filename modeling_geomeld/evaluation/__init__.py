"""Evaluation metrics as plain numpy functions, shared by library code and our `evaluate` metric modules.

The GEO-Bench protocol (spec section 4) scores m-bigearthnet with micro-F1 over its 43 labels, m-so2sat and
the other classification tasks with accuracy, the segmentation tasks with mean IoU, and cross-modal
retrieval with recall@K in both directions. The numbers live here once: `modeling_geomeld/evaluation/metrics/<name>/`
wraps each function in a thin `evaluate.Metric` so that `evaluate.load(path)` works offline (nothing is
bundled with `evaluate`, and the hub copy cannot be fetched on an offline machine), and
`geomeld finetune` calls the same functions directly, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: metric modules shipped with the package, by name (folder `metrics/<name>/<name>.py`)
METRIC_NAMES: tuple[str, ...] = ("micro_f1", "accuracy", "mean_iou", "retrieval_recall")
METRICS_DIR = Path(__file__).resolve().parent / "metrics"
DEFAULT_KS: tuple[int, ...] = (1, 5, 10)


def load_metric(name: str, **kwargs: Any) -> Any:
    """``evaluate.load`` one of our metric modules from inside the installed package (no network).

    A bare ``evaluate.load("accuracy")`` asks the hub and fails offline; a local folder does not.
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; expected one of {list(METRIC_NAMES)}")
    import evaluate

    return evaluate.load(str(METRICS_DIR / name), **kwargs)


def _as_array(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.size == 0:
        raise ValueError(f"{what} is empty; expected at least one element")
    return array


def _check_same_shape(pred: np.ndarray, ref: np.ndarray) -> None:
    if pred.shape != ref.shape:
        raise ValueError(f"predictions have shape {pred.shape} but references have shape {ref.shape}")


def accuracy(predictions: Any, references: Any) -> float:
    """Fraction of predictions equal to their reference (single-label classification)."""
    pred = _as_array(predictions, "predictions")
    ref = _as_array(references, "references")
    _check_same_shape(pred, ref)
    return float(np.mean(pred == ref))


def _as_binary(values: Any, what: str) -> np.ndarray:
    array = _as_array(values, what)
    if array.ndim != 2:
        raise ValueError(f"{what} must be (samples, labels) multi-hot, got shape {array.shape}")
    bad = ~np.isin(array, (0, 1))
    if bad.any():
        raise ValueError(f"{what} must hold only 0 and 1, found {np.unique(array[bad])[:5].tolist()}")
    return array.astype(bool)


def micro_f1(predictions: Any, references: Any, zero_division: float = 0.0) -> float:
    """Micro-averaged F1 of multi-hot predictions, pooled over every (sample, label) cell.

    Micro averaging is what the paper reports for m-bigearthnet: frequent labels weigh more, unlike macro-F1.
    ``zero_division`` is returned when there is no positive in either input (sklearn's convention is 0).
    """
    pred = _as_binary(predictions, "predictions")
    ref = _as_binary(references, "references")
    _check_same_shape(pred, ref)
    tp = int(np.sum(pred & ref))
    fp = int(np.sum(pred & ~ref))
    fn = int(np.sum(~pred & ref))
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else float(zero_division)


def mean_iou(
    predictions: Any, references: Any, num_labels: int, ignore_index: int | None = None
) -> dict[str, Any]:
    """Mean intersection over union of label maps, with per-class IoU and pixel accuracies.

    Pixels whose reference is ``ignore_index`` are left out entirely. A class absent from both the predictions
    and the references of every map has an undefined IoU (NaN in ``per_category_iou``) and is left out of the
    mean, rather than counted as 0 or 1 (the convention of the Hugging Face ``mean_iou`` metric).

    Returns a dict with ``mean_iou``, ``mean_accuracy``, ``overall_accuracy``, ``per_category_iou`` and
    ``per_category_accuracy`` (the last two numpy arrays of length ``num_labels``).
    """
    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1, got {num_labels}")
    pred = _as_array(predictions, "predictions").astype(np.int64).ravel()
    ref = _as_array(references, "references").astype(np.int64)
    _check_same_shape(_as_array(predictions, "predictions"), ref)
    ref = ref.ravel()
    keep = ref != ignore_index if ignore_index is not None else np.ones(ref.shape, dtype=bool)
    pred, ref = pred[keep], ref[keep]
    for what, values in (("references", ref), ("predictions", pred)):
        outside = (values < 0) | (values >= num_labels)
        if outside.any():
            raise ValueError(
                f"{what} hold labels {np.unique(values[outside])[:5].tolist()} outside 0..{num_labels - 1}"
                f" (ignore_index={ignore_index})"
            )
    # confusion[r, p] counts pixels of reference class r predicted as p
    confusion = np.bincount(ref * num_labels + pred, minlength=num_labels**2).reshape(num_labels, num_labels)
    intersection = np.diag(confusion).astype(np.float64)
    ref_area = confusion.sum(axis=1).astype(np.float64)
    union = ref_area + confusion.sum(axis=0) - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, intersection / union, np.nan)
        class_acc = np.where(ref_area > 0, intersection / ref_area, np.nan)
    total = ref_area.sum()
    return {
        "mean_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "mean_accuracy": float(np.nanmean(class_acc)) if np.isfinite(class_acc).any() else float("nan"),
        "overall_accuracy": float(intersection.sum() / total) if total else float("nan"),
        "per_category_iou": iou,
        "per_category_accuracy": class_acc,
    }


def _l2_normalise(embeddings: Any, what: str) -> np.ndarray:
    array = _as_array(embeddings, what).astype(np.float64)
    if array.ndim != 2:
        raise ValueError(f"{what} must be (items, dim), got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(
            f"{what} has {int((norms == 0).sum())} all-zero rows; cosine similarity is undefined"
        )
    return array / norms


def _positive_sets(
    positives: Mapping[int, Iterable[int]] | Sequence[Iterable[int]] | None, shape: tuple[int, int]
) -> list[set[int]]:
    n_rows, n_cols = shape
    if positives is None:
        if n_rows != n_cols:
            raise ValueError(
                f"without positives the similarity matrix must be square (query i matches item i), got {shape}"
            )
        return [{i} for i in range(n_rows)]
    items = positives.items() if isinstance(positives, Mapping) else enumerate(positives)
    sets: list[set[int]] = [set() for _ in range(n_rows)]
    for row, cols in items:
        if not 0 <= int(row) < n_rows:
            raise ValueError(f"positives name query {row}, expected 0..{n_rows - 1}")
        for col in cols:
            if not 0 <= int(col) < n_cols:
                raise ValueError(f"positives of query {row} name item {col}, expected 0..{n_cols - 1}")
            sets[int(row)].add(int(col))
    return sets


def _recall_at(
    similarity: np.ndarray, positives: list[set[int]], ks: Sequence[int], direction: str
) -> dict[str, float]:
    empty = [i for i, p in enumerate(positives) if not p]
    if empty:
        raise ValueError(
            f"{direction}: queries {empty[:10]} have no positive; every query needs at least one"
        )
    # a stable sort of -similarity ranks ties by item index, so scores are deterministic
    order = np.argsort(-similarity, axis=1, kind="stable")
    out = {}
    for k in ks:
        top = order[:, :k]
        hits = [bool(positives[i].intersection(top[i].tolist())) for i in range(similarity.shape[0])]
        out[f"{direction}_R@{k}"] = float(np.mean(hits))
    return out


def retrieval_recall(
    similarity: Any = None,
    positives: Mapping[int, Iterable[int]] | Sequence[Iterable[int]] | None = None,
    *,
    image_embeddings: Any = None,
    text_embeddings: Any = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Recall@K for image->text and text->image retrieval, and their mean ``mR``.

    Give either ``similarity`` (images x texts) or both embedding matrices (cosine similarity of the
    L2-normalised rows). ``positives[i]`` lists the texts that match image ``i`` (several captions per image
    are fine); by default image ``i`` matches text ``i``. A query is a hit at K if any of its positives is
    among its K most similar items; ties in similarity rank the lower index first.
    """
    if similarity is None:
        if image_embeddings is None or text_embeddings is None:
            raise ValueError("give a similarity matrix, or both image_embeddings and text_embeddings")
        similarity = (
            _l2_normalise(image_embeddings, "image_embeddings")
            @ _l2_normalise(text_embeddings, "text_embeddings").T
        )
    elif image_embeddings is not None or text_embeddings is not None:
        raise ValueError("give a similarity matrix or embeddings, not both")
    sim = _as_array(similarity, "similarity").astype(np.float64)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be (images, texts), got shape {sim.shape}")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    image_to_text = _positive_sets(positives, sim.shape)
    text_to_image: list[set[int]] = [set() for _ in range(sim.shape[1])]
    for image, texts in enumerate(image_to_text):
        for text in texts:
            text_to_image[text].add(image)
    out = _recall_at(sim, image_to_text, ks, "image_to_text")
    out.update(_recall_at(sim.T, text_to_image, ks, "text_to_image"))
    out["mR"] = float(np.mean(list(out.values())))
    return out


# ------------------------------------------------------------------------------------ metric vs its baseline
def chance_margin(rate: float, n: int, z: float = 2.0) -> float:
    """``z`` binomial standard errors of a rate ``rate`` over ``n`` trials: how far above chance (or above the
    majority class) a recall or an accuracy must be before it is more than luck on ``n`` held-out items."""
    rate = min(max(float(rate), 0.0), 1.0)
    return float(z * np.sqrt(rate * (1.0 - rate) / max(int(n), 1)))


def compare(
    value: float, baseline: float, *, lower_is_better: bool, baseline_name: str, n: int | None = None, unit: str = "",
    margin: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    """One comparison of a metric with its baseline, as ``results.json`` lists it.

    ``beats_baseline`` needs the value past the baseline by more than ``margin`` (absolute; a tie never
    beats): pass ``chance_margin`` for rates on few items, a relative share of the baseline for losses.
    Errors and losses (``lower_is_better``) also carry ``ratio`` = value / baseline (below 1 is better).
    """
    value, baseline = float(value), float(baseline)
    finite = np.isfinite(value) and np.isfinite(baseline)
    beats = bool(finite and (value < baseline - margin if lower_is_better else value > baseline + margin))
    out: dict[str, Any] = {"value": value, "baseline": baseline, "baseline_name": baseline_name, "beats_baseline": beats,
                           "lower_is_better": lower_is_better, "margin": float(margin)}  # fmt: skip
    if lower_is_better:
        out["ratio"] = value / baseline if finite and baseline > 0 else float("nan")
    if n is not None:
        out["n"] = int(n)
    if unit:
        out["unit"] = unit
    return out


def linear_probe(
    train_x: Any, train_y: Any, test_x: Any, test_y: Any, l2: float = 1e-2
) -> dict[str, float]:
    """Accuracy of a ridge-regression one-vs-rest linear probe on frozen embeddings, and of the majority class.

    The probe and the majority class are both fitted on the training rows only and scored on the test rows.
    """
    xtr, xte = np.asarray(train_x, dtype=np.float64), np.asarray(test_x, dtype=np.float64)
    ytr, yte = np.asarray(train_y), np.asarray(test_y)
    if len(xtr) != len(ytr) or len(xte) != len(yte) or not len(xtr) or not len(xte):
        raise ValueError(f"expected matching, non-empty rows: train {len(xtr)}/{len(ytr)}, test {len(xte)}/{len(yte)}")
    classes = np.unique(ytr)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-8
    a, b = (xtr - mean) / std, (xte - mean) / std
    a, b = np.hstack([a, np.ones((len(a), 1))]), np.hstack([b, np.ones((len(b), 1))])
    targets = (ytr[:, None] == classes[None, :]).astype(np.float64) * 2 - 1
    weights = np.linalg.solve(a.T @ a + l2 * len(a) * np.eye(a.shape[1]), a.T @ targets)
    predicted = classes[np.argmax(b @ weights, axis=1)]
    values, counts = np.unique(ytr, return_counts=True)
    majority = values[np.argmax(counts)]
    return {"accuracy": float(np.mean(predicted == yte)), "majority_accuracy": float(np.mean(yte == majority)),
            "classes": len(classes), "train": len(ytr), "test": len(yte)}  # fmt: skip
