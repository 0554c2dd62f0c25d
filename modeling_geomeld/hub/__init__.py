"""Complete Hub folders for everything GeoMeld saves (it drives the model; it is not part of a checkpoint).

* :mod:`.cards`: `write_model_card`, the one model-card writer (metadata through `huggingface_hub.ModelCardData`,
  licence from the training data, `model-index` only from evaluations that were run, pipeline checks said).
* :mod:`.folders`: `complete_folder` (weights + code + processor + card), `complete_adapter_folder` (a PEFT
  adapter that `AutoPeftModel` loads, with its card) and the release-folder checks.
"""

from modeling_geomeld.hub.cards import DataSource, Score, read_card, sources_for, write_model_card
from modeling_geomeld.hub.folders import complete_adapter_folder, complete_folder, foreign_files

__all__ = [
    "DataSource",
    "Score",
    "complete_adapter_folder",
    "complete_folder",
    "foreign_files",
    "read_card",
    "sources_for",
    "write_model_card",
]
