"""Accuracy for single-label classification (GEO-Bench m-so2sat and the other classification tasks).

A thin `evaluate.Metric` over `modeling_geomeld.evaluation.accuracy`, so that library code and
`evaluate.load(<this folder>)` compute the same number. Loads offline.
"""

import datasets
import evaluate

from modeling_geomeld.evaluation import accuracy

_DESCRIPTION = "Fraction of predicted class indices equal to the reference class index."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class index per sample.
    references (list of int): true class index per sample.
Returns:
    accuracy (float): in [0, 1].
Examples:
    >>> metric = evaluate.load("modeling_geomeld/evaluation/metrics/accuracy")
    >>> metric.compute(predictions=[0, 1, 2], references=[0, 1, 1])
    {'accuracy': 0.6666666666666666}
"""
_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions: list, references: list) -> dict:
        return {"accuracy": accuracy(predictions, references)}
