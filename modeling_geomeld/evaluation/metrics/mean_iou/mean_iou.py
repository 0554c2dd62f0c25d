"""Mean IoU for semantic segmentation (GEO-Bench m-cashew-plant, m-SA-crop-type and the other
segmentation tasks), with an ignore index.

A thin `evaluate.Metric` over `modeling_geomeld.evaluation.mean_iou`, so that library code and
`evaluate.load(<this folder>)` compute the same number. Loads offline.
"""

import datasets
import evaluate
import numpy as np

from modeling_geomeld.evaluation import mean_iou

_DESCRIPTION = (
    "Intersection over union per class from the confusion of predicted and reference label maps, averaged "
    "over the classes present in either; pixels whose reference is ignore_index are left out."
)
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of 2D int arrays): predicted label map per sample.
    references (list of 2D int arrays): reference label map per sample, same shapes.
    num_labels (int): number of classes.
    ignore_index (int, optional): reference value to leave out (e.g. -1 or 255).
Returns:
    mean_iou, mean_accuracy, overall_accuracy (float); per_category_iou, per_category_accuracy
    (numpy arrays, NaN for classes absent from both inputs).
Examples:
    >>> metric = evaluate.load("modeling_geomeld/evaluation/metrics/mean_iou")
    >>> metric.compute(predictions=[[[0, 1]]], references=[[[0, 0]]], num_labels=2)["mean_iou"]
    0.25
"""
_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MeanIoU(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("int64"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("int64"))),
                }
            ),
        )

    def _compute(
        self, predictions: list, references: list, num_labels: int, ignore_index: int | None = None
    ) -> dict:
        # maps of different sizes are allowed, so pool pixels map by map rather than stacking
        pred = np.concatenate([np.asarray(p, dtype=np.int64).ravel() for p in predictions])
        ref = np.concatenate([np.asarray(r, dtype=np.int64).ravel() for r in references])
        return mean_iou(pred, ref, num_labels=num_labels, ignore_index=ignore_index)
