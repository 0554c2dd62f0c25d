"""Model cards (``README.md``) for every folder GeoMeld saves: pretraining releases, fine-tuned heads, merged
LoRA models and PEFT adapters.

The YAML header is written by ``huggingface_hub.ModelCardData`` / ``EvalResult``, so it is exactly what the Hub
parses (``huggingface_hub.ModelCard.load`` reads it back):

* ``pipeline_tag`` from the head: ``image-feature-extraction`` (encoder), ``zero-shot-image-classification``
  (encoder trained with its text tower), ``image-classification``, ``image-segmentation``;
* ``library_name``: ``transformers`` (``peft`` for an adapter);
* ``base_model`` and ``datasets`` only as Hub ids: a local path never enters the card, in the metadata or the
  text (absolute paths in the text are cut to their last part);
* ``license`` from the licences of the training data (the modality registry's ``license`` fields and any
  further source the caller names): one Hub licence id when every source shares it, else ``license: other``
  with ``license_name`` and ``license_link: LICENSE.md``, a file written beside the card with one row per
  source (the Hub's way to link a licence file inside the repository);
* ``model-index`` only from evaluations that were run (metric, value, dataset, split, seeds);
* a ``geomeld`` block (kind, objectives, data, steps, ``pipeline_check``) that ``space_app.about`` reads.

A checkpoint whose weights are random or trained for a few steps is a *pipeline check*: the card says so in
its first paragraph and tags it ``pipeline-check``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from huggingface_hub import EvalResult, ModelCard, ModelCardData

Kind = Literal["pretrained", "classification", "segmentation"]
KINDS: tuple[str, ...] = ("pretrained", "classification", "segmentation")
#: the Auto class that loads each kind's head (what the usage snippet and an adapter's base use)
AUTO_CLASSES: dict[str, str] = {
    "pretrained": "AutoModel",
    "classification": "AutoModelForImageClassification",
    "segmentation": "AutoModelForSemanticSegmentation",
}
#: Hub licence ids (https://hf.co/docs/hub/repositories-licenses) that registry licence texts start with
HUB_LICENCES: frozenset[str] = frozenset(
    {
        "apache-2.0", "mit", "bsd-3-clause", "cc0-1.0", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
        "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "odbl", "odc-by", "pddl",
    }
)  # fmt: skip
LICENCE_FILE = "LICENSE.md"
CODE_LICENCE = "apache-2.0"
PIPELINE_CHECK_TAG = "pipeline-check"
#: an absolute path inside text (not the `//` of a URL): cut to its last component when a card is written
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])(?:~|/)(?:[^\s`'\"()|<>\[\]]+/)+([^\s`'\"()|<>\[\]]*)")


@dataclass(frozen=True)
class DataSource:
    """One source of training data and the licence its terms come under.

    Attributes:
        name: the public product or dataset (``"ESA WorldCover 10 m v100 (2020) / v200 (2021)"``).
        licence: its licence as published (``"CC-BY-4.0, (c) ESA WorldCover project"``).
        hub_id: its Hub dataset id, when it is on the Hub (goes into ``datasets``).
    """

    name: str
    licence: str
    hub_id: str | None = None

    @classmethod
    def from_modality(cls, name: str) -> DataSource:
        """The registry's source and licence of modality ``name`` (``"sentinel2_l2a"`` -> Sentinel-2)."""
        from modeling_geomeld.modalities import get_modality

        mod = get_modality(name)
        if not mod.license:
            raise ValueError(f"modality {mod.name!r} declares no licence in the registry; a card cannot state its terms")
        return cls(name=mod.source or mod.name, licence=mod.license)


def sources_for(modalities: Iterable[str], extra: Iterable[DataSource] = ()) -> list[DataSource]:
    """The distinct data sources of the modalities (registry names or ``<modality>_<variant>``) plus `extra`."""
    out: list[DataSource] = []
    for source in [DataSource.from_modality(m) for m in modalities] + list(extra):
        if source not in out:
            out.append(source)
    return out


@dataclass(frozen=True)
class Score:
    """One evaluation that was run: `metric` on `split` of `dataset`, the mean over `seeds` (with its `std`)."""

    metric: str
    value: float
    dataset: str
    split: str
    seeds: tuple[int, ...] = ()
    std: float | None = None
    dataset_id: str | None = None
    baseline: float | None = None
    baseline_name: str = ""


@dataclass
class CardInfo:
    """What `write_model_card` wrote: the card and the licence metadata it derived."""

    card: ModelCard
    path: Path
    license: str
    licence_file: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def hub_id_or_none(value: str | None) -> str | None:
    """`value` when it reads as a Hub id (``name`` or ``owner/name``) and is no local path, else ``None``."""
    if not value:
        return None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    text = str(value)
    if text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1 or Path(text).expanduser().exists():
        return None
    try:
        validate_repo_id(text)
    except HFValidationError:
        return None
    return text


def public_text(text: str) -> str:
    """`text` with every absolute path cut to its last component (a card never names the writer's disk)."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "", text)


def licence_slug(text: str) -> str:
    """``"CC-BY-4.0, (c) ESA WorldCover project"`` -> ``"cc-by-4.0"``; other texts -> a lowercase id."""
    head = re.split(r"[,(;]", text, maxsplit=1)[0].strip().lower()
    return re.sub(r"[^a-z0-9.]+", "-", head).strip("-") or "unknown"


def card_licence(sources: Sequence[DataSource]) -> dict[str, str]:
    """The ``license`` metadata for weights trained on `sources`: the Hub id every source shares, or
    ``other`` with a ``license_name`` naming them all and ``license_link`` to the licence file."""
    if not sources:
        raise ValueError("a model card needs the training data's sources to state a licence; got none")
    slugs = list(dict.fromkeys(licence_slug(s.licence) for s in sources))
    if len(slugs) == 1 and slugs[0] in HUB_LICENCES:
        return {"license": slugs[0]}
    return {"license": "other", "license_name": "-and-".join(slugs), "license_link": LICENCE_FILE}


def pipeline_tag(kind: Kind, *, text_tower: bool = False) -> str:
    """The Hub task of a head (the pipeline that runs it)."""
    if kind == "classification":
        return "image-classification"
    if kind == "segmentation":
        return "image-segmentation"
    if kind == "pretrained":
        return "zero-shot-image-classification" if text_tower else "image-feature-extraction"
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _usage(kind: Kind, adapter: Mapping[str, Any] | None) -> str:
    auto = AUTO_CLASSES[kind]
    if adapter is None:
        return (
            "```python\n"
            "import modeling_geomeld  # registers GeoMeld with the Auto classes (or pass trust_remote_code=True)\n"
            f"from transformers import {auto}, AutoImageProcessor\n"
            f'model = {auto}.from_pretrained("path/or/hub-id")\n'
            'processor = AutoImageProcessor.from_pretrained("path/or/hub-id")\n'
            "```\n"
        )
    if adapter.get("base_saved") is False:  # a random-init base: PEFT has nothing to load the adapter onto
        merged = _usage(kind, None).replace('"path/or/hub-id"', '"path/or/hub-id/of/this/adapter/merged"')
        return (
            "The adapter's base is a random initialisation that no folder holds, so PEFT cannot load the adapter on\n"
            "its own. Load the merged model saved beside it (`merged/`, the same weights with the adapter folded in):\n\n"
            + merged
        )
    labels = adapter.get("id2label") or {}
    label_args = f", id2label={dict(labels)!r}, label2id={ {v: k for k, v in labels.items()}!r}" if labels else ""
    base = adapter.get("base_model") or "BASE"
    return (
        "Load the adapter on its base model with PEFT (`AutoPeftModel` reads `base_model_name_or_path` and\n"
        f"`auto_mapping` = `transformers.{auto}` from `adapter_config.json`):\n\n"
        "```python\n"
        "import modeling_geomeld  # registers GeoMeld with the Auto classes (or pass trust_remote_code=True)\n"
        "from peft import AutoPeftModel\n"
        f'model = AutoPeftModel.from_pretrained("path/or/hub-id/of/this/adapter"{label_args})\n'
        "```\n\n"
        "or, with the base model named explicitly:\n\n"
        "```python\n"
        f"from transformers import {auto}\n"
        "from peft import PeftModel\n"
        f'base = {auto}.from_pretrained("{base}"{label_args})\n'
        'model = PeftModel.from_pretrained(base, "path/or/hub-id/of/this/adapter")\n'
        "```\n"
    )


def _results_table(results: Sequence[Score]) -> str:
    lines = ["| metric | value | baseline | dataset | split | seeds |", "|---|---|---|---|---|---|"]
    for r in results:
        value = f"{r.value:.4f}" + (f" ± {r.std:.4f}" if r.std is not None and len(r.seeds) > 1 else "")
        base = f"{r.baseline:.4f} ({r.baseline_name})" if r.baseline is not None else ""
        lines.append(f"| {r.metric} | {value} | {base} | {r.dataset} | {r.split} | {', '.join(map(str, r.seeds))} |")
    return "\n".join(lines)


def _sources_table(sources: Sequence[DataSource]) -> str:
    lines = ["| source | licence |", "|---|---|"]
    lines += [f"| {s.name}{f' (`{s.hub_id}`)' if s.hub_id else ''} | {s.licence} |" for s in sources]
    return "\n".join(lines)


def write_model_card(
    folder: str | Path,
    *,
    kind: Kind,
    training_data: Sequence[DataSource],
    name: str = "GeoMeld-FM",
    summary: str = "",
    base_model: str | None = None,
    datasets: Sequence[str] = (),
    results: Sequence[Score] | None = None,
    pipeline_check: bool = False,
    pipeline_check_reason: str = "",
    text_tower: bool = False,
    adapter: Mapping[str, Any] | None = None,
    sections: Sequence[tuple[str, str]] = (),
    tags: Sequence[str] = (),
    geomeld: Mapping[str, Any] | None = None,
) -> CardInfo:
    """Write ``folder/README.md`` (and ``folder/LICENSE.md`` when the data's licences differ); see the module
    docstring for the metadata.

    Args:
        kind: the head: ``pretrained`` (the encoder), ``classification`` or ``segmentation``.
        training_data: every source the weights were trained on (`sources_for(modalities)`).
        summary: a paragraph on what the model is and how it was trained (paths are cut to their last part).
        base_model: what it was fine-tuned from; kept only as a Hub id.
        datasets: dataset names or Hub ids; only Hub ids enter the metadata, every name is in the text.
        results: evaluations that were run; ``None`` or empty writes no ``model-index``.
        pipeline_check: random or few-step weights: the card says it is a pipeline check, not a model.
        text_tower: the encoder was trained with its text tower (``zero-shot-image-classification``).
        adapter: for a PEFT adapter folder, ``{"base_model": ..., "id2label": ..., "base_saved": bool}``: ``library_name: peft`` and
            the snippets that load it (the merged model's when ``base_saved`` is False: no folder holds the base).
        sections: further ``(title, markdown)`` sections (training losses, statistics, ...).
        geomeld: extra facts for the ``geomeld`` metadata block (objectives, steps, ...).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    licence = card_licence(training_data)
    hub_base = hub_id_or_none(base_model)
    hub_datasets = [d for d in dict.fromkeys([*(hub_id_or_none(d) for d in datasets), *(s.hub_id for s in training_data)]) if d]
    dataset_names = [public_text(str(d)) if hub_id_or_none(d) else Path(str(d)).name or str(d) for d in datasets]
    eval_results = [
        EvalResult(
            task_type=pipeline_tag(kind, text_tower=text_tower),
            dataset_type=hub_id_or_none(r.dataset_id) or licence_slug(r.dataset),
            dataset_name=r.dataset,
            dataset_split=r.split,
            metric_type=r.metric,
            metric_value=float(r.value),
            metric_args={"seeds": list(r.seeds), **({"std": float(r.std)} if r.std is not None else {})},
        )
        for r in (results or ())
    ]
    block = {"kind": kind, "pipeline_check": bool(pipeline_check), **dict(geomeld or {})}
    if dataset_names:
        block.setdefault("data", ", ".join(dataset_names))
    all_tags = list(dict.fromkeys(["geomeld", "remote-sensing", "earth-observation", *tags]))
    if pipeline_check:
        all_tags.append(PIPELINE_CHECK_TAG)
    if adapter is not None:
        all_tags += ["lora", "peft"]
    data = ModelCardData(
        library_name="peft" if adapter is not None else "transformers",
        pipeline_tag=pipeline_tag(kind, text_tower=text_tower),
        base_model=hub_base,
        datasets=hub_datasets or None,
        tags=all_tags,
        model_name=name,
        eval_results=eval_results or None,
        geomeld=block,
        license=licence["license"],
        license_name=licence.get("license_name"),
        license_link=licence.get("license_link"),
    )
    parts = [f"# {name}", ""]
    if pipeline_check:
        reason = pipeline_check_reason or "its weights are random or trained for a few steps only."
        parts += [
            f"> **Pipeline check, not a model.** This checkpoint exists to show that training, saving and loading work: "
            f"{reason} Do not use its outputs as predictions or its features as representations.",
            "",
        ]
    if summary:
        parts += [summary.strip(), ""]
    if base_model:
        shown = hub_base or f"a local checkpoint (`{Path(str(base_model)).name}`)"
        parts += [f"Fine-tuned from {shown}." if kind != "pretrained" else f"Started from {shown}.", ""]
    parts += ["## Usage", "", _usage(kind, adapter)]
    parts += ["## Training data", ""]
    if dataset_names:
        parts += [f"Datasets: {', '.join(f'`{n}`' for n in dataset_names)}.", ""]
    parts += [f"Sources: {', '.join(s.name for s in training_data)} (licences under Licence).", ""]
    parts += ["## Evaluation", ""]
    if eval_results:
        parts += [_results_table(list(results or ())), ""]
    else:
        parts += ["No evaluation was run on this checkpoint; the card reports none.", ""]
    for title, text in sections:
        parts += [f"## {title}", "", text.strip(), ""]
    parts += [
        "## Licence",
        "",
        f"Code: {CODE_LICENCE}. Weights: the terms of the training data, source by source"
        + (f" (`{LICENCE_FILE}`)." if licence["license"] == "other" else f": {licence['license']}."),
        "",
        _sources_table(training_data),
        "",
    ]
    body = public_text("\n".join(parts))
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    path = folder / "README.md"
    card.save(path)
    licence_path = None
    if licence["license"] == "other":
        licence_path = folder / LICENCE_FILE
        licence_path.write_text(
            public_text(
                f"# Licences of the training data ({licence['license_name']})\n\n"
                "The weights in this folder were trained on the sources below and come under their terms, each "
                f"source's own. The code is {CODE_LICENCE}.\n\n" + _sources_table(training_data) + "\n"
            ),
            encoding="utf-8",
        )
    return CardInfo(card=card, path=path, license=licence["license"], licence_file=licence_path, metadata=data.to_dict())


def read_card(folder: str | Path) -> tuple[dict[str, Any], str] | None:
    """The parsed YAML metadata and the Markdown body of ``folder/README.md`` (``None`` when there is none)."""
    path = Path(folder) / "README.md"
    if not path.is_file():
        return None
    card = ModelCard.load(path)
    return card.data.to_dict(), card.text


#: pretraining shorter than this is a pipeline check unless an evaluation says otherwise: published
#: ConvNeXt V2 / MMEarth encoders train for hundreds of thousands of steps, and a few hundred steps on a
#: handful of tiles show that the code runs, not what a model learns
PIPELINE_CHECK_STEPS = 1000


def pretraining_objectives(config: Any, history: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The objectives a `GeoMeldConfig` switches on, by their names in the paper; given the Trainer's log
    `history`, only those that logged a loss (ITC runs only on batches with captions)."""
    switched = (("MP-MAE", config.use_mpmae, "mpmae_loss"), ("JEPA", config.use_jepa, "jepa_loss"), ("ITC", config.use_itc, "itc_loss"))
    logged = {key for _, _, key in switched if any(key in h for h in history)}
    return [name for name, on, key in switched if on and (not logged or key in logged)]  # no parts logged: as configured


def write_pretraining_card(
    folder: str | Path,
    config: Any,
    *,
    dataset: str,
    preset: str,
    history: Sequence[Mapping[str, Any]],
    steps: int,
    training_data: Sequence[DataSource],
    statistics: str = "",
    pipeline_check: bool | None = None,
    results: Sequence[Score] | None = None,
    loss_plot: str | None = None,
) -> CardInfo:
    """The card of a `geomeld pretrain` release: architecture, objectives and data, the last logged training
    losses, the objective's weights and why, the normalisation statistics (`statistics`, a Markdown section
    from `training.statistics.statistics_markdown`). ``pipeline_check=None``: fewer than
    `PIPELINE_CHECK_STEPS` steps."""
    enc = config.encoder_cfg
    objectives = pretraining_objectives(config, history)
    data_name = hub_id_or_none(dataset) or Path(str(dataset)).name or str(dataset)
    if pipeline_check is None:
        pipeline_check = steps < PIPELINE_CHECK_STEPS
    last = {k: v for k, v in (history[-1] if history else {}).items() if isinstance(v, float)}
    losses = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(last.items()) if "loss" in k or k.startswith("mpmae/"))
    summary = (
        f"A multimodal ConvNeXt V2 encoder (depths {list(enc.depths)}, dims {list(enc.dims)}) pretrained with "
        f"{', '.join(objectives)} on `{data_name}` for {steps} steps. Inputs: "
        + ", ".join(f"{m} ({len(b)} bands)" for m, b in enc.input_modalities.items())
        + f"; masking ratio {enc.mask_ratio}, patch {enc.patch_size} at {enc.image_size} px."
    )
    objective = (
        f"`L = L_MP-MAE + alpha L_JEPA + beta L_ITC` with alpha = {config.jepa_weight:g} and beta = {config.itc_weight:g}. "
        "MP-MAE is the uncertainty-weighted sum of per-target reconstruction losses (Kendall et al. 2018), each O(1) "
        "in normalised units, and the JEPA smooth-L1 on layer-normed features is O(1) too, so alpha = 1 weighs it like "
        "one more target; the InfoNCE loss starts at ln(batch size) and its gradient reaches only the pooled "
        "embedding, so beta = 0.1 keeps it from dominating the dense objectives."
    )
    sections = [("Training losses (last logged step)", "| part | value |\n|---|---|\n" + losses)]
    if loss_plot:
        sections.append(("Training losses by step", f"![training losses by optimiser step]({loss_plot})"))
    sections.append(("Objective", objective))
    if statistics:
        title, _, body = statistics.strip().partition("\n")
        sections.append((title.lstrip("# ").strip(), body))
    sections.append((
        "Limitations",
        "Losses above are training losses; evaluate downstream (`geomeld finetune`) before relying on the encoder. "
        "Band order is carried by name: give the processor `band_names` for files in another order.",
    ))  # fmt: skip
    return write_model_card(
        folder,
        kind="pretrained",
        training_data=training_data,
        name=f"GeoMeld-FM ({preset})",
        summary=summary,
        datasets=[dataset],
        results=results,
        pipeline_check=pipeline_check,
        pipeline_check_reason=f"it was pretrained for {steps} steps (fewer than {PIPELINE_CHECK_STEPS}) and no downstream evaluation is recorded.",
        text_tower="ITC" in objectives,  # a text tower never contrasted is no zero-shot classifier
        sections=sections,
        geomeld={"objectives": objectives, "data": data_name, "steps": int(steps), "preset": preset},
        tags=[f"preset-{preset}"],
    )
