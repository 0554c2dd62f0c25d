"""What the Space says about itself: which checkpoint it serves, how that was trained, whether it is only a
pipeline check, and the attribution its data's licences require.

The facts come from the checkpoint folder, never from the app's own assumptions:

* ``README.md``, the model card that ``geomeld pretrain`` writes (``modeling_geomeld.hub.cards``), parsed by
  ``huggingface_hub.ModelCard``: its name and its ``geomeld`` metadata block (objectives, data, steps, and
  whether the card itself calls the checkpoint a pipeline check). Cards written before that block existed are
  read from the sentence "pretrained with OBJECTIVES on `DATA` for N steps".
* ``evaluation.json``, written by ``geomeld demo`` next to the weights: every metric on held-out spatial
  blocks with its baseline and a ``beats_baseline`` flag, and the corpora trained on with their licences.

A checkpoint is called a *pipeline check* when it has no model card (e.g. random weights saved to test the
plumbing), when its card says it is one (random or few-step weights), when nobody measured its retrieval against chance on held-out data, or when that measurement
did not beat chance: its rankings then show that the Space works, not what a model finds.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVALUATION_FILE = "evaluation.json"
#: metrics that say whether the Space's rankings mean anything
RETRIEVAL_METRICS = ("retrieval_image_to_text_R@5", "retrieval_text_to_image_R@5", "retrieval_image_to_text_R@1", "retrieval_text_to_image_R@1")
BASEMAP_CREDITS = (
    "Map: coastlines and borders from Natural Earth (public domain); populated places from GeoNames (CC-BY-4.0).",
)


@dataclass
class ModelInfo:
    """The checkpoint as its own files describe it."""

    folder: str
    name: str | None = None
    objectives: list[str] = field(default_factory=list)
    data: str | None = None
    steps: int | None = None
    inputs: list[str] = field(default_factory=list)
    corpora: list[dict[str, Any]] = field(default_factory=list)
    beating: list[str] = field(default_factory=list)
    not_beating: list[str] = field(default_factory=list)
    pipeline_check: bool = True
    reason: str = ""

    def banner_markdown(self) -> str:
        if self.steps is None:
            trained = "no record of how it was trained (no model card)"
        else:
            trained = (
                f"{self.name or 'GeoMeld-FM'}, pretrained with {', '.join(self.objectives) or 'unnamed objectives'}"
                f" on {self.data or 'unnamed data'} for {self.steps} steps"
            )
        lines = [f"**Checkpoint** `{self.folder}`: {trained}; image inputs: {', '.join(self.inputs)}."]
        if self.beating:
            lines.append(f"Beats its baseline on held-out blocks: {', '.join(self.beating)}.")
        if self.not_beating:
            lines.append(f"Does not beat its baseline: {', '.join(self.not_beating)}.")
        if self.pipeline_check:
            lines.insert(0, f"⚠️ **Pipeline check, not a trained retrieval model**: {self.reason} Rankings below show that the Space works, not what a model finds.")
        return "\n\n".join(lines)


_TRAINED = re.compile(r"pretrained with (?P<objectives>.+?)\s+on\s+`(?P<data>[^`]*)`\s+for\s+(?P<steps>\d+)\s+steps", re.S)


def _read_card(root: Path, info: ModelInfo) -> bool | None:
    """Fill `info` from the card in `root`; returns whether the card calls it a pipeline check (``None``: no card)."""
    from modeling_geomeld.hub.cards import read_card

    card = read_card(root)
    if card is None:
        return None
    meta, text = card
    block: Mapping[str, Any] = meta.get("geomeld") or {}
    index = meta.get("model-index") or [{}]
    info.name = index[0].get("name") or meta.get("model_name")
    if block:
        info.objectives = [str(o) for o in block.get("objectives") or []]
        info.data = f"`{block['data']}`" if block.get("data") else None
        info.steps = int(block["steps"]) if block.get("steps") is not None else None
    elif m := _TRAINED.search(text):  # a card from before the metadata block
        info.objectives = [o.strip() for o in m["objectives"].replace("\n", " ").split(",") if o.strip()]
        info.data = f"`{Path(m['data']).name or m['data']}`"
        info.steps = int(m["steps"])
    return bool(block.get("pipeline_check")) or "pipeline-check" in (meta.get("tags") or [])


def read_model_info(checkpoint: str | Path, inputs: Iterable[str]) -> ModelInfo:
    """Read the model card and the demo's evaluation of ``checkpoint``; missing files make it a pipeline check."""
    root = Path(checkpoint)
    info = ModelInfo(folder=root.name, inputs=list(inputs))
    card_says_check = _read_card(root, info)
    evaluation: Mapping[str, Any] = {}
    path = root / EVALUATION_FILE
    if path.is_file():
        try:
            evaluation = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            evaluation = {}
    if evaluation.get("data_summary"):
        info.data = str(evaluation["data_summary"])
    info.corpora = list(evaluation.get("corpora") or [])
    metrics: Mapping[str, Mapping[str, Any]] = evaluation.get("metrics") or {}
    for name, metric in metrics.items():
        (info.beating if metric.get("beats_baseline") else info.not_beating).append(name)
    retrieval = [name for name in RETRIEVAL_METRICS if name in metrics]
    if card_says_check is None:
        info.reason = "this checkpoint has no model card (README.md): it was not produced by `geomeld pretrain`."
    elif card_says_check:
        steps = f" ({info.steps} training steps)" if info.steps is not None else ""
        info.reason = f"its model card says so{steps}: random or few-step weights."
    elif not retrieval:
        info.reason = f"no {EVALUATION_FILE} with retrieval measured against chance on held-out data sits next to its weights."
    elif not any(metrics[n].get("beats_baseline") for n in retrieval):
        info.reason = "its held-out retrieval does not beat chance."
    else:
        info.pipeline_check = False
    return info


def attribution_html(modalities: Iterable[str], corpora: Iterable[Mapping[str, Any]] = ()) -> str:
    """The footer: the source and licence of every layer the dataset holds, the corpora, the map's data."""
    from modeling_geomeld.modalities import get_modality

    items = []
    for name in modalities:
        mod = get_modality(name)
        items.append(f"{html.escape(mod.source)} ({html.escape(mod.license)})")
    for corpus in corpora:
        items.append(f"{html.escape(str(corpus.get('name')))} ({html.escape(str(corpus.get('licence')))})")
    lines = [
        "<b>Data attribution.</b> Contains modified Copernicus Sentinel data and Copernicus DEM data where those layers are shown.",
        "Layers and corpora: " + "; ".join(items) + "." if items else "",
        *BASEMAP_CREDITS,
    ]
    return '<div id="attribution-text">' + " ".join(line for line in lines if line) + "</div>"
