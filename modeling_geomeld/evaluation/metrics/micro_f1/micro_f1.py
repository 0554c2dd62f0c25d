"""Micro-averaged F1 for multi-label classification (GEO-Bench m-bigearthnet, 43 labels).

A thin `evaluate.Metric` over `modeling_geomeld.evaluation.micro_f1`, so that library code and
`evaluate.load(<this folder>)` compute the same number. Loads offline.
"""

import datasets
import evaluate

from modeling_geomeld.evaluation import micro_f1

_DESCRIPTION = "F1 pooled over every (sample, label) cell of multi-hot predictions and references."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of int): multi-hot predictions, one row of 0/1 per sample.
    references (list of list of int): multi-hot references, same shape.
    zero_division (float, default 0.0): returned when neither input has a positive.
Returns:
    micro_f1 (float): in [0, 1].
Examples:
    >>> metric = evaluate.load("modeling_geomeld/evaluation/metrics/micro_f1")
    >>> metric.compute(predictions=[[1, 0], [1, 1]], references=[[1, 0], [0, 1]])
    {'micro_f1': 0.8}
"""
_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MicroF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int8")),
                    "references": datasets.Sequence(datasets.Value("int8")),
                }
            ),
        )

    def _compute(self, predictions: list, references: list, zero_division: float = 0.0) -> dict:
        return {"micro_f1": micro_f1(predictions, references, zero_division=zero_division)}
