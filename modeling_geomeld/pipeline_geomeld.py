"""GeoMeld pipelines for `transformers.pipeline`: GeoTIFFs or arrays in, embeddings, labels and class maps out.

Four tasks, each with the output format of transformers' own pipeline of that name, so code written for those
transfers: `image-feature-extraction` (pooled embedding, or the per-patch feature map), `zero-shot-image-
classification` (candidate labels through the text tower), `image-classification` and `image-segmentation`
(fine-tuned heads). Inputs:

- a GeoTIFF path: band names come from the file's band descriptions, or from `band_names={modality: [...]}`;
  the modality is the model's only input modality, the one `modality=` or `band_names` names, or the one
  whose bands the descriptions name;
- a dict `{modality: array}` (``(C, H, W)``), as the processor takes it;
- a dict `{modality: path}`: several files, one per modality, on one grid (arrays and paths may mix);
- a list of any of these (a batch; `batch_size=` groups them for the model).

The input keeps its size: no crop; a side that is not a multiple of the patch is padded with no-data, and
dense outputs are cut back to the input's size.

This file ships inside checkpoint folders (`save_pretrained` copies it and writes `custom_pipelines` into
config.json), so `pipeline(task, model=FOLDER, trust_remote_code=True)` works where this package is not
installed. Where it is, importing it registers the tasks with `PIPELINE_REGISTRY`; a registered task hands any
non-GeoMeld model to transformers' stock pipeline, so other models are unaffected. rasterio is imported only
when a path is read.
"""

from __future__ import annotations

import copy
import importlib
import logging as _py_logging
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import Pipeline, no_collate_fn
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from .image_processing_geomeld import GeoMeldImageProcessor
from .modalities import Modality, resolve

#: the default of `hypothesis_template` (transformers' is "This is a photo of {}.")
HYPOTHESIS_TEMPLATE = "A satellite image of {}."

# ---------------------------------------------------------------------------------------------------------
# Reading inputs


def _read_geotiff(path: Path) -> tuple[np.ndarray, list[str | None]]:
    """(C, H, W) array and the band descriptions of a raster; the file's no-data value becomes NaN."""
    try:  # optional: only paths need it (and a try keeps it out of the checkpoint's required imports)
        import rasterio
        from rasterio.errors import RasterioIOError
    except ImportError:
        raise ImportError(
            f"reading {path} needs rasterio (`pip install rasterio`); or pass arrays {{modality: array}}"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"expected a GeoTIFF at {path}, found no file")
    try:
        with rasterio.open(path) as ds:
            array = ds.read()
            descriptions = list(ds.descriptions)
            nodata = ds.nodata
    except RasterioIOError as err:
        raise ValueError(f"{path}: expected a raster file (GeoTIFF) that rasterio can read: {err}") from None
    if nodata is not None:
        array = np.where(array == nodata, np.nan, array.astype(np.float32))
    return array, descriptions


_S2_NUMBERED = re.compile(r"B0*(\d{1,2})(A?)")


def _canonical_band(mod: Modality, text: str | None) -> str | None:
    """The registry name a band description means ("B4" and "b04" -> "B04", "vv" -> "VV"), else `None`."""
    if not text:
        return None
    names = mod.band_names
    if text in names:
        return text
    folded = {n.lower(): n for n in names}
    key = text.strip().lower().replace(" ", "_").replace("-", "_")
    if key in folded:
        return folded[key]
    m = _S2_NUMBERED.fullmatch(text.strip().upper())
    if m:  # Sentinel-2 exports number bands without the zero (Earth Engine: "B4", "B8A")
        name = f"B{int(m.group(1))}A" if m.group(2) else f"B{int(m.group(1)):02d}"
        return name if name in names else None
    return None


def _names_from_descriptions(
    path: Path, key: str, mod: Modality, descriptions: Sequence[str | None], wanted: Sequence[str]
) -> list[str]:
    """Band names of a file from its descriptions; `ValueError` naming expected and found when they do not
    name every band the model takes (or name one twice)."""
    names = [
        _canonical_band(mod, d) or (d or f"<band {i + 1}: no description>")
        for i, d in enumerate(descriptions)
    ]
    missing = [b for b in wanted if b not in names]
    if missing or len(set(names)) != len(names):
        raise ValueError(
            f"{path}: expected bands {list(wanted)} of {key} by name in the file's band descriptions, found "
            f"{list(descriptions)}; pass band_names={{{key!r}: [...]}} with the file's {len(descriptions)} bands in order"
        )
    return names


def _as_path(value: Any) -> Path | None:
    return Path(value) if isinstance(value, (str, Path)) else None


class _GeoMeldPipeline(Pipeline):
    """Shared input handling: read files or take arrays, run the GeoMeld processor at the input's size, and
    batch the results (dicts of modality tensors, which transformers' default collate cannot stack)."""

    # None: load when the folder has one, else build it (`__init__`) rather than fail
    _load_processor = False  # type: ignore[assignment]
    _load_image_processor = None
    _load_feature_extractor = False  # type: ignore[assignment]
    _load_tokenizer: bool | None = False  # type: ignore[assignment]
    # never: AutoVideoProcessor would derive a `GeoMeldVideoProcessor` from the folder's AutoImageProcessor
    # auto_map and ask "Do you wish to run the custom code? [y/N]" (15 s wait) on every interactive load
    _load_video_processor = False  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.image_processor: Any
        if self.image_processor is None or not hasattr(self.image_processor, "input_modalities"):
            # a folder saved without its processor: the model's own bands, registry statistics
            warnings.warn(
                "no GeoMeld image processor came with the model; using one built from its config (registry "
                "normalisation statistics, which may differ from the ones it was trained with)",
                UserWarning,
                stacklevel=2,
            )
            self.image_processor = GeoMeldImageProcessor.from_model_config(self.model.config)
        # inference keeps the input's size (the encoder is fully convolutional); the processor pads odd sizes
        self._size_keeping: Any = copy.copy(self.image_processor)
        self._size_keeping.crop_size = None

    # -- inputs ---------------------------------------------------------------------------------------
    def _input_modalities(self) -> dict[str, list[str]]:
        return dict(self.image_processor.input_modalities)

    def _key_of_single_file(
        self,
        path: Path,
        descriptions: Sequence[str | None],
        modality: str | None,
        band_names: Mapping[str, Any],
    ) -> str:
        """Which modality a lone file holds: the one named, the model's only one, or the one its bands name."""
        inputs = self._input_modalities()
        if modality is not None:
            return modality
        if len(band_names) == 1:
            return next(iter(band_names))
        if len(inputs) == 1:
            return next(iter(inputs))
        matching = []
        for name, wanted in inputs.items():
            mod = resolve(name)[0]
            found = {_canonical_band(mod, d) for d in descriptions}
            if set(wanted) <= found:
                matching.append(name)
        if len(matching) == 1:
            return matching[0]
        raise ValueError(
            f"{path}: one file for a model that takes {list(inputs)}; expected modality=NAME, band_names={{NAME: [...]}}, "
            f"or a dict {{modality: path}}; the file's band descriptions {list(descriptions)} name "
            f"{matching or 'none'} of them"
        )

    def _arrays(
        self, inputs: Any, band_names: Mapping[str, Sequence[str]] | None, modality: str | None
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """{modality key: (C, H, W) array} and the band names known for them."""
        names: dict[str, list[str]] = {k: list(v) for k, v in (band_names or {}).items()}
        path = _as_path(inputs)
        if path is not None:
            array, descriptions = _read_geotiff(path)
            key = self._key_of_single_file(path, descriptions, modality, names)
            inputs = {key: array}
            described = {key: descriptions}
            paths = {key: path}
        elif isinstance(inputs, Mapping) and inputs:
            arrays, described, paths = {}, {}, {}
            for key, value in inputs.items():
                p = _as_path(value)
                if p is None:
                    arrays[key] = value
                else:
                    arrays[key], described[key] = _read_geotiff(p)
                    paths[key] = p
            inputs = arrays
        else:
            raise ValueError(
                "expected a GeoTIFF path, a dict {modality: array or path}, or a list of them; "
                f"got {type(inputs).__name__}"
            )
        wanted_by_mod = self._input_modalities()
        for key, descriptions in described.items():
            if key in names:
                continue
            try:
                mod = resolve(key)[0]
            except KeyError as err:
                raise ValueError(err.args[0]) from None
            if mod.name not in wanted_by_mod:
                raise ValueError(
                    f"input {key!r} is not an input modality of this model; expected {list(wanted_by_mod)}"
                )
            names[key] = _names_from_descriptions(paths[key], key, mod, descriptions, wanted_by_mod[mod.name])
        return dict(inputs), names

    @staticmethod
    def _one_sample(arrays: dict[str, Any]) -> dict[str, Any]:
        """Each input as one (C, H, W) sample (a list of inputs is how a pipeline takes several)."""
        out = {}
        for key, value in arrays.items():
            a = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
            if a.ndim != 3:
                raise ValueError(
                    f"{key}: expected one sample (C, H, W) per input (a list for several), got shape {a.shape}"
                )
            out[key] = a
        return out

    def preprocess(  # type: ignore[override]
        self, inputs: Any, band_names: Mapping[str, Sequence[str]] | None = None, modality: str | None = None
    ) -> dict[str, Any]:
        arrays, names = self._arrays(inputs, band_names, modality)
        # the processor keeps the size, pads to the patch multiple with no-data and reports the input's size
        batch = self._size_keeping(self._one_sample(arrays), band_names=names).to(self.dtype)
        return {
            "pixel_values": dict(batch["pixel_values"]),
            "valid_mask": dict(batch["valid_mask"]),
            "size": batch["original_size"],
        }

    @staticmethod
    def _input_params(band_names: Mapping[str, Sequence[str]] | None, modality: str | None) -> dict[str, Any]:
        """The preprocess parameters every task shares, as `_sanitize_parameters` hands them on."""
        return {k: v for k, v in {"band_names": band_names, "modality": modality}.items() if v is not None}

    # -- batching -------------------------------------------------------------------------------------
    @staticmethod
    def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        """Concatenate preprocessed samples; smaller ones are padded with no-data to the largest grid."""
        keys = set(items[0]["pixel_values"])
        for item in items:
            if set(item["pixel_values"]) != keys:
                raise ValueError(
                    f"a batch needs the same modalities in every input, got {sorted(keys)} and {sorted(item['pixel_values'])}"
                )
        height = max(next(iter(i["pixel_values"].values())).shape[-2] for i in items)
        width = max(next(iter(i["pixel_values"].values())).shape[-1] for i in items)

        def pad(t: torch.Tensor) -> torch.Tensor:
            return F.pad(t, (0, width - t.shape[-1], 0, height - t.shape[-2]))  # zeros; False for valid_mask

        return {
            "pixel_values": {k: torch.cat([pad(i["pixel_values"][k]) for i in items]) for k in keys},
            "valid_mask": {k: torch.cat([pad(i["valid_mask"][k]) for i in items]) for k in keys},
            "size": torch.cat([i["size"] for i in items]),
        }

    def get_iterator(
        self,
        inputs: Any,
        num_workers: int,
        batch_size: int,
        preprocess_params: dict[str, Any],
        forward_params: dict[str, Any],
        postprocess_params: dict[str, Any],
    ) -> Any:
        from torch.utils.data import DataLoader

        dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        collate = no_collate_fn if batch_size == 1 else self._collate
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=collate)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    @staticmethod
    def _model_inputs(model_inputs: dict[str, Any]) -> dict[str, Any]:
        return {"pixel_values": model_inputs["pixel_values"], "valid_mask": model_inputs["valid_mask"]}


def _vision_part(model: Any) -> Any:
    """The module holding the encoder: the model itself, or its `geomeld` part (task and pretraining models)."""
    return model if hasattr(model, "encoder") else model.geomeld


# ---------------------------------------------------------------------------------------------------------
# The four tasks


class GeoMeldImageFeatureExtractionPipeline(_GeoMeldPipeline):
    """Embeddings of GeoMeld-FM, as transformers' `image-feature-extraction` returns them (batch dimension 1).

    Call arguments: `pool` (default `True`: the layer-normed mean of the visible patch features, (1, C); `False`:
    the per-patch feature map (1, C, h, w), zero where nothing valid was seen), `projected` (with `pool`: the
    L2-normalised image embedding in the image-text space of a `GeoMeldModel`, (1, P)), `return_tensors` (torch
    tensors instead of nested lists), `band_names`, `modality`.
    """

    def _sanitize_parameters(
        self,
        pool: bool | None = None,
        projected: bool | None = None,
        return_tensors: bool | None = None,
        band_names: Mapping[str, Sequence[str]] | None = None,
        modality: str | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        pre = self._input_params(band_names, modality)
        post = {
            k: v
            for k, v in {"pool": pool, "projected": projected, "return_tensors": return_tensors}.items()
            if v is not None
        }
        return pre, {}, post

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        vision = _vision_part(self.model)
        enc = vision.encoder(**self._model_inputs(model_inputs))
        out = {"pooler_output": enc.pooler_output, "last_hidden_state": enc.last_hidden_state}
        if hasattr(vision, "visual_projection"):
            out["image_embeds"] = F.normalize(vision.visual_projection(enc.pooler_output), dim=-1)
        return out

    def postprocess(  # type: ignore[override]
        self,
        model_outputs: dict[str, Any],
        pool: bool = True,
        projected: bool = False,
        return_tensors: bool = False,
    ) -> Any:
        if projected:
            if not pool:
                raise ValueError("projected=True gives the pooled image embedding; it needs pool=True")
            if "image_embeds" not in model_outputs:
                raise ValueError(
                    f"projected=True needs a model with an image projection (GeoMeldModel), got {type(self.model).__name__}"
                )
            outputs = model_outputs["image_embeds"]
        else:
            outputs = model_outputs["pooler_output" if pool else "last_hidden_state"]
        return outputs if return_tensors else outputs.tolist()


class GeoMeldZeroShotImageClassificationPipeline(_GeoMeldPipeline):
    """Scores of free-text labels through the text tower of a `GeoMeldModel`: `[{"score", "label"}]`, sorted,
    softmax over the candidates (sums to 1), as transformers' `zero-shot-image-classification`.

    Call arguments: `candidate_labels` (required), `hypothesis_template` (default `"A satellite image of {}."`;
    `"{}"` when the labels are sentences already), `tokenizer_kwargs`, `band_names`, `modality`.
    """

    _load_tokenizer = None  # the folder's, else the text tower's own (`__init__`)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not hasattr(self.model, "get_text_features"):
            raise ValueError(
                f"zero-shot classification needs a GeoMeldModel with its text tower, got {type(self.model).__name__}; "
                "load the checkpoint with AutoModel"
            )
        if self.tokenizer is None:
            from .text import load_text_tokenizer, text_tower_path

            self.tokenizer = load_text_tokenizer(text_tower_path(self.model.config.text_model_name_or_path))

    def __call__(  # type: ignore[override]
        self, inputs: Any = None, candidate_labels: Sequence[str] | None = None, **kwargs: Any
    ) -> Any:
        if "images" in kwargs:  # transformers' keyword
            inputs = kwargs.pop("images")
        if inputs is None:
            raise ValueError("expected an input (a GeoTIFF path, a dict, or a list of them), got None")
        return super().__call__(inputs, candidate_labels=candidate_labels, **kwargs)

    def _sanitize_parameters(
        self,
        candidate_labels: Sequence[str] | None = None,
        hypothesis_template: str | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        band_names: Mapping[str, Sequence[str]] | None = None,
        modality: str | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        pre = self._input_params(band_names, modality)
        forward: dict[str, Any] = {}
        post: dict[str, Any] = {}
        if candidate_labels is not None:
            labels = [candidate_labels] if isinstance(candidate_labels, str) else list(candidate_labels)
            if not labels or any(not isinstance(c, str) for c in labels):
                raise ValueError(
                    f"candidate_labels must be a non-empty list of strings, got {candidate_labels!r}"
                )
            forward["candidate_labels"] = post["candidate_labels"] = labels
        if hypothesis_template is not None:
            if "{}" not in hypothesis_template:
                raise ValueError(
                    f"hypothesis_template must contain '{{}}' for the label, got {hypothesis_template!r}"
                )
            forward["hypothesis_template"] = hypothesis_template
        if tokenizer_kwargs is not None:
            forward["tokenizer_kwargs"] = tokenizer_kwargs
        return pre, forward, post

    def _forward(  # type: ignore[override]
        self,
        model_inputs: dict[str, Any],
        candidate_labels: list[str] | None = None,
        hypothesis_template: str = HYPOTHESIS_TEMPLATE,
        tokenizer_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if not candidate_labels:
            raise ValueError("zero-shot classification needs candidate_labels=[...], got none")
        # the GeoMeldProcessor's caption tokenization (pad to the longest, truncate at 64 tokens)
        options = {"padding": True, "truncation": True, "max_length": 64, **(tokenizer_kwargs or {})}
        tokenizer: Any = self.tokenizer
        text = tokenizer(
            [hypothesis_template.format(c) for c in candidate_labels], return_tensors="pt", **options
        )
        text = {k: v.to(self.device) for k, v in text.items()}
        out = self.model(**self._model_inputs(model_inputs), **text)
        return {"logits": out.logits_per_image}  # (B, L)

    def postprocess(  # type: ignore[override]
        self, model_outputs: dict[str, Any], candidate_labels: list[str] | None = None
    ) -> list[dict[str, Any]]:
        scores = model_outputs["logits"][0].float().softmax(dim=-1).tolist()
        pairs = sorted(zip(scores, candidate_labels or [], strict=True), key=lambda x: -x[0])
        return [{"score": s, "label": label} for s, label in pairs]


class GeoMeldImageClassificationPipeline(_GeoMeldPipeline):
    """Labels of a fine-tuned `GeoMeldForImageClassification`: `[{"label", "score"}]`, best first, as
    transformers' `image-classification`: `top_k` (default 5), `function_to_apply` (`"softmax"`, `"sigmoid"`,
    `"none"`; by default sigmoid for multi-label or one label, none for regression, softmax otherwise)."""

    _FUNCTIONS = ("softmax", "sigmoid", "none")

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        function_to_apply: str | None = None,
        band_names: Mapping[str, Sequence[str]] | None = None,
        modality: str | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        pre = self._input_params(band_names, modality)
        post: dict[str, Any] = {}
        if top_k is not None:
            if top_k < 1:
                raise ValueError(f"top_k must be >= 1, got {top_k}")
            post["top_k"] = top_k
        if function_to_apply is not None:
            fn = str(getattr(function_to_apply, "value", function_to_apply)).lower()
            if fn not in self._FUNCTIONS:
                raise ValueError(
                    f"function_to_apply must be one of {self._FUNCTIONS}, got {function_to_apply!r}"
                )
            post["function_to_apply"] = fn
        return pre, {}, post

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        return {"logits": self.model(**self._model_inputs(model_inputs)).logits}

    def _default_function(self) -> str:
        config = self.model.config
        if config.problem_type == "regression":
            return "none"
        if config.problem_type == "multi_label_classification" or config.num_labels == 1:
            return "sigmoid"
        return "softmax"

    def postprocess(  # type: ignore[override]
        self, model_outputs: dict[str, Any], function_to_apply: str | None = None, top_k: int = 5
    ) -> list[dict[str, Any]]:
        logits = model_outputs["logits"][0].float()
        fn = function_to_apply or self._default_function()
        scores = logits.softmax(-1) if fn == "softmax" else logits.sigmoid() if fn == "sigmoid" else logits
        id2label: dict[Any, str] = dict(self.model.config.id2label or {})
        ranked = sorted(enumerate(scores.tolist()), key=lambda pair: -pair[1])[:top_k]
        return [{"label": id2label[i], "score": float(s)} for i, s in ranked]


class GeoMeldImageSegmentationPipeline(_GeoMeldPipeline):
    """Class maps of a fine-tuned `GeoMeldForSemanticSegmentation`, at the input's size.

    As transformers' semantic `image-segmentation`: one `{"score", "label", "mask"}` per class present, in class
    order, `mask` a PIL "L" image (255 inside); `score` is the class's mean probability over its mask (transformers
    gives `None` for semantic maps). With `return_class_map=True` the result is `{"class_map": (H, W) int64 array
    of class indices, "segments": [...]}`, ready to write into a GeoTIFF on the input's grid.
    """

    def _sanitize_parameters(
        self,
        return_class_map: bool | None = None,
        band_names: Mapping[str, Sequence[str]] | None = None,
        modality: str | None = None,
        subtask: str | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if subtask not in (None, "semantic"):
            raise ValueError(
                f"GeoMeld segmentation heads are semantic; expected subtask='semantic' or none, got {subtask!r}"
            )
        pre = self._input_params(band_names, modality)
        post = {"return_class_map": return_class_map} if return_class_map is not None else {}
        return pre, {}, post

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        return {"logits": self.model(**self._model_inputs(model_inputs)).logits, "size": model_inputs["size"]}

    def postprocess(self, model_outputs: dict[str, Any], return_class_map: bool = False) -> Any:  # type: ignore[override]
        try:  # transformers' masks are PIL images; PIL comes with transformers' vision extra
            from PIL import Image
        except ImportError:
            raise ImportError("segmentation masks are PIL images: `pip install pillow`") from None
        height, width = (int(v) for v in model_outputs["size"][0])
        probs = (
            model_outputs["logits"][0, :, :height, :width].float().softmax(dim=0)
        )  # (K, H, W), padding cut off
        class_map = probs.argmax(dim=0).numpy()
        id2label: dict[Any, str] = dict(self.model.config.id2label or {})
        segments = []
        for k in np.unique(class_map):
            inside = class_map == k
            segments.append({
                "score": float(probs[int(k)].numpy()[inside].mean()),
                "label": id2label[int(k)],
                "mask": Image.fromarray((inside * 255).astype(np.uint8), mode="L"),
            })  # fmt: skip
        return (
            {"class_map": class_map.astype(np.int64), "segments": segments} if return_class_map else segments
        )


# ---------------------------------------------------------------------------------------------------------
# Registration and what checkpoints carry

#: task -> (pipeline class, the Auto class a checkpoint folder loads for it through its auto_map)
TASKS: dict[str, tuple[type[_GeoMeldPipeline], str]] = {
    "image-feature-extraction": (GeoMeldImageFeatureExtractionPipeline, "AutoModel"),
    "zero-shot-image-classification": (GeoMeldZeroShotImageClassificationPipeline, "AutoModel"),
    "image-classification": (GeoMeldImageClassificationPipeline, "AutoModelForImageClassification"),
    "image-segmentation": (GeoMeldImageSegmentationPipeline, "AutoModelForSemanticSegmentation"),
}
#: saved model class -> the tasks its folder can serve (a release has no head; task heads no text tower)
TASKS_BY_MODEL: dict[str, tuple[str, ...]] = {
    "GeoMeldModel": ("image-feature-extraction", "zero-shot-image-classification"),
    "GeoMeldForPreTraining": ("image-feature-extraction", "zero-shot-image-classification"),
    "GeoMeldVisionModel": ("image-feature-extraction",),
    "GeoMeldForImageClassification": ("image-feature-extraction", "image-classification"),
    "GeoMeldForSemanticSegmentation": ("image-feature-extraction", "image-segmentation"),
}


def custom_pipelines(model: Any) -> dict[str, dict[str, Any]]:
    """The `custom_pipelines` entry of config.json for a saved `model`, as `Pipeline.save_pretrained` writes it
    (`impl` as `module.Class` of the code in the folder, `pt` as transformers Auto class names)."""
    module = __name__.split(".")[-1]
    out = {}
    for task in TASKS_BY_MODEL.get(type(model).__name__, ("image-feature-extraction",)):
        cls, auto = TASKS[task]
        out[task] = {"impl": f"{module}.{cls.__name__}", "pt": [auto], "type": "image"}
    return out


def _is_geomeld(model: Any) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == "geomeld"


class _TaskDispatch:
    """Registered under a stock task name: a GeoMeld model gets GeoMeld's pipeline, any other the stock one (so
    importing this package changes nothing for other models). `pipeline()` reads the `_load_*` flags before it
    knows the model; they are the stock pipeline's."""

    geomeld_task_dispatch: ClassVar[bool] = True  # what configuration_geomeld looks for (served locally)
    geomeld_pipeline: ClassVar[type[Pipeline]]
    stock_pipeline: ClassVar[Any]

    def __new__(cls, model: Any, *args: Any, **kwargs: Any) -> Any:
        chosen = cls.geomeld_pipeline if _is_geomeld(model) else cls.stock_pipeline
        return chosen(model, *args, **kwargs)


def _stock_class(entry: Mapping[str, Any]) -> Any:
    impl = entry["impl"]
    if getattr(impl, "geomeld_task_dispatch", False):  # registered twice in one process
        return impl.stock_pipeline
    if isinstance(impl, str):
        module, name = impl.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)
    return impl


def register_pipelines() -> None:
    """Register the four tasks with `PIPELINE_REGISTRY` (and `GeoMeldModel` as a zero-shot image classifier, the
    Auto class that task loads), keeping each stock pipeline for other models and its default model."""
    from transformers import AutoModelForZeroShotImageClassification

    from .configuration_geomeld import GeoMeldConfig
    from .modeling_geomeld import GeoMeldModel

    AutoModelForZeroShotImageClassification.register(GeoMeldConfig, GeoMeldModel, exist_ok=True)
    base_logger = _py_logging.getLogger("transformers.pipelines.base")
    level = base_logger.level
    base_logger.setLevel(_py_logging.ERROR)  # "already registered. Overwriting": intended, and said here
    try:
        for task, (cls, _) in TASKS.items():
            entry = PIPELINE_REGISTRY.supported_tasks.get(task)
            if entry is None:
                PIPELINE_REGISTRY.register_pipeline(task, cls, type="image")
                continue
            stock = _stock_class(entry)
            flags = {
                f: getattr(stock, f, None)
                for f in (
                    "_load_processor",
                    "_load_image_processor",
                    "_load_feature_extractor",
                    "_load_tokenizer",
                    "_load_video_processor",
                )
            }
            # no image task's stock pipeline takes a video processor, and trying to load one from a GeoMeld
            # folder prompts for remote code (see `_GeoMeldPipeline._load_video_processor`)
            flags["_load_video_processor"] = False
            dispatch = type(
                f"{cls.__name__}Dispatch",
                (_TaskDispatch,),
                {"geomeld_pipeline": cls, "stock_pipeline": stock, **flags},
            )
            PIPELINE_REGISTRY.register_pipeline(
                task,
                dispatch,
                pt_model=tuple(entry.get("pt", ())),
                default=entry.get("default"),
                type=entry.get("type"),
            )
    finally:
        base_logger.setLevel(level)


__all__ = [
    "GeoMeldImageClassificationPipeline",
    "GeoMeldImageFeatureExtractionPipeline",
    "GeoMeldImageSegmentationPipeline",
    "GeoMeldZeroShotImageClassificationPipeline",
    "custom_pipelines",
    "register_pipelines",
]
