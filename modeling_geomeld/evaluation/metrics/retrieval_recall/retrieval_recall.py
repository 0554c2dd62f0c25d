"""Cross-modal retrieval recall@K (image->text, text->image) and their mean mR.

A thin `evaluate.Metric` over `modeling_geomeld.evaluation.retrieval_recall`. Each "prediction" is one row of
the image x text similarity matrix and each "reference" the list of text indices that match that image, so
several captions per image are supported. A query is a hit at K if any of its positives is in its top K.
Loads offline.
"""

import datasets
import evaluate

from modeling_geomeld.evaluation import DEFAULT_KS, retrieval_recall

_DESCRIPTION = "Recall@K in both retrieval directions from a similarity matrix, and their mean (mR)."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of float): row i is the similarity of image i to every text.
    references (list of list of int): row i lists the texts that match image i.
    ks (list of int, default [1, 5, 10]): cut-offs.
Returns:
    image_to_text_R@K, text_to_image_R@K for each K, and mR (floats in [0, 1]).
Examples:
    >>> metric = evaluate.load("modeling_geomeld/evaluation/metrics/retrieval_recall")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[[0], [1]], ks=[1])["mR"]
    1.0
"""
_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RetrievalRecall(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions: list, references: list, ks: list | None = None) -> dict:
        return retrieval_recall(predictions, references, ks=tuple(ks) if ks else DEFAULT_KS)
