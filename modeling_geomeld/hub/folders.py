"""Complete Hub folders: whatever GeoMeld saves (a pretraining release, a fine-tuned head, a merged LoRA model)
holds the weights (safetensors), the config with an ``auto_map`` for every head and the code it names
(`GeoMeldPreTrainedModel.save_pretrained`), the processor (``preprocessor_config.json`` or
``processor_config.json``, so ``AutoImageProcessor.from_pretrained(folder)`` works) and the model card.
A PEFT adapter folder gets its card and an ``auto_mapping`` naming the transformers Auto class of its head,
so ``peft.AutoPeftModel`` loads it.

Nothing that only training needs is written into these folders: no optimizer, scheduler or RNG pickles and no
``training_args.bin``; those live in the Trainer's ``checkpoint-N`` folders (`training.checkpoints`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modeling_geomeld.hub.cards import (
    AUTO_CLASSES,
    CardInfo,
    DataSource,
    Kind,
    Score,
    hub_id_or_none,
    sources_for,
    write_model_card,
)

#: the only kinds of file a release folder holds (weights, configs, code, card, licence, notes, the loss plot)
RELEASE_SUFFIXES: frozenset[str] = frozenset({".safetensors", ".json", ".md", ".py", ".txt", ".png", ".csv"})
#: files the Trainer writes that are pickles or training state, never part of a release
TRAINING_ONLY = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth")


def model_kind(model: Any) -> Kind:
    """The card kind of a GeoMeld model (a `PeftModel` counts as its base's head)."""
    from modeling_geomeld import GeoMeldForImageClassification, GeoMeldForSemanticSegmentation

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if isinstance(base, GeoMeldForSemanticSegmentation):
        return "segmentation"
    if isinstance(base, GeoMeldForImageClassification):
        return "classification"
    return "pretrained"


def default_training_data(model: Any) -> list[DataSource]:
    """The sources of what the model's config says it reads (its input modalities, and for a pretraining
    model its reconstruction targets): the least a card must credit."""
    config = model.config
    names = list(config.encoder_cfg.input_modalities or {})
    if model_kind(model) == "pretrained" and getattr(config, "use_mpmae", False):
        names += list(config.decoder_cfg.target_modalities or {})
    return sources_for(dict.fromkeys(names))


def save_release_processor(processor: Any, folder: str | Path) -> None:
    """Save `processor` into `folder` as a release would: for inference, keeping the input size (no crop),
    whatever crops the training used."""
    release = copy.deepcopy(processor)
    image = getattr(release, "image_processor", release)
    if hasattr(image, "crop_size"):
        image.crop_size, image.crop_mode = None, "center"
    release.save_pretrained(str(folder))


def remove_training_state(folder: str | Path) -> list[str]:
    """Delete training-only files (pickles) from a release `folder`; returns their names."""
    removed = []
    for name in TRAINING_ONLY:
        path = Path(folder) / name
        if path.is_file():
            path.unlink()
            removed.append(name)
    return removed


def foreign_files(folder: str | Path) -> list[str]:
    """Files of `folder` (recursively) that a release must not hold: anything but `RELEASE_SUFFIXES`."""
    root = Path(folder)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix not in RELEASE_SUFFIXES)


def save_folder(model: Any, processor: Any, folder: str | Path, *, save_model: bool = True) -> Path:
    """Weights (safetensors), config with auto_map and code, and the processor (no crop: inference keeps the input size) into `folder`,
    with any training-only pickle removed. ``save_model=False`` when the weights are there already
    (``Trainer.save_model``)."""
    folder = Path(folder)
    if processor is None:
        raise ValueError(f"a complete folder needs the processor the model was trained with, to save into {folder}")
    if save_model:
        model.save_pretrained(folder)
    remove_training_state(folder)
    save_release_processor(processor, folder)
    return folder


def complete_folder(
    model: Any,
    processor: Any,
    folder: str | Path,
    *,
    training_data: Sequence[DataSource] | None = None,
    save_model: bool = True,
    **card: Any,
) -> CardInfo:
    """Save `model` (safetensors, config, auto_map, code) and `processor` into `folder` and write its card.

    Args:
        training_data: the sources the weights were trained on; default: those of the model's modalities.
        save_model: ``False`` when the weights are in `folder` already (``Trainer.save_model``).
        **card: `write_model_card` arguments (``results``, ``pipeline_check``, ``base_model``, ``summary``, ...);
            ``kind`` and ``text_tower`` default to what the model is.
    """
    save_folder(model, processor, folder, save_model=save_model)
    card.setdefault("kind", model_kind(model))
    if card["kind"] == "pretrained":
        card.setdefault("text_tower", bool(getattr(model.config, "use_itc", False)))
    return write_model_card(folder, training_data=list(training_data or default_training_data(model)), **card)


def point_adapter_at_auto_class(folder: str | Path, kind: Kind) -> dict[str, Any]:
    """Rewrite ``adapter_config.json``'s ``auto_mapping`` to the transformers Auto class of the head.

    PEFT maps its ``task_type``s (``SEQ_CLS``, ``TOKEN_CLS``, ``CAUSAL_LM``, ...) to text models only; with
    ``task_type: null`` `AutoPeftModel` imports ``auto_mapping["parent_library"]`` and takes
    ``base_model_class`` from it, refusing libraries outside its allowlist (``transformers`` is on it,
    ``modeling_geomeld`` is not). `transformers.AutoModelForImageClassification` (or the head's Auto class)
    resolves GeoMeld once the package is imported, or with ``trust_remote_code=True`` from the base's code."""
    path = Path(folder) / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("task_type") is not None:
        raise ValueError(f"{path}: task_type {config['task_type']!r} maps to a PEFT text model class; GeoMeld adapters need null")
    config["auto_mapping"] = {"base_model_class": AUTO_CLASSES[kind], "parent_library": "transformers"}
    path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    return config


def absolute_local_base(folder: str | Path) -> str | None:
    """Make ``adapter_config.json``'s ``base_model_name_or_path`` absolute when it names a local folder.

    PEFT records the path the base was loaded from as given (``--checkpoint base``), and `AutoPeftModel`
    resolves it against the *caller's* working directory, so a relative base breaks the adapter as soon as it
    is loaded from anywhere else. A Hub id (no such local folder) is left as it is. Returns the value."""
    path = Path(folder) / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if base and not Path(base).is_absolute() and Path(base).is_dir():
        config["base_model_name_or_path"] = str(Path(base).resolve())
        path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        return config["base_model_name_or_path"]
    return base


def complete_adapter_folder(peft_model: Any, folder: str | Path, *, base_model: str | None = None, **card: Any) -> CardInfo:
    """Save a PEFT adapter (``adapter_model.safetensors``, ``adapter_config.json`` with an ``auto_mapping`` that
    `AutoPeftModel` follows) and its card (``library_name: peft``, ``base_model``, the loading snippets)."""
    folder = Path(folder)
    peft_model.save_pretrained(folder)
    kind = model_kind(peft_model)
    point_adapter_at_auto_class(folder, kind)
    absolute_local_base(folder)
    base = base_model or peft_model.peft_config[peft_model.active_adapter].base_model_name_or_path
    config = peft_model.get_base_model().config
    labels = {int(k): v for k, v in (config.id2label or {}).items()} if kind != "pretrained" else {}
    card.setdefault("training_data", default_training_data(peft_model.get_base_model()))
    if not base:  # built from a config: no folder holds the weights the adapter was trained on
        note = (
            "The base of this adapter is a random initialisation that no folder holds, so the adapter cannot be "
            "loaded on its own; use the merged model saved beside it (`merged/`)."
        )
        card["sections"] = [("Base model", note), *card.get("sections", ())]
    shown = hub_id_or_none(base) or "path/or/hub-id/of/the/base"
    return write_model_card(folder, kind=kind, base_model=base, adapter={"base_model": shown, "id2label": labels, "base_saved": bool(base)}, **card)


__all__ = [
    "RELEASE_SUFFIXES",
    "Score",
    "complete_adapter_folder",
    "complete_folder",
    "default_training_data",
    "foreign_files",
    "model_kind",
    "remove_training_state",
    "save_folder",
    "save_release_processor",
]
