"""Data collators for the stock `transformers.Trainer` (and any `DataLoader`): rows as a user has them ->
`pixel_values` {modality: (B, C, H, W)}, `valid_mask` {modality: (B, H, W)} and `labels`.

Rows may come in four forms, told apart by their keys:

* a row of a built GeoMeld dataset (`datasets.load_dataset(DIR)` / `dataset_scripts.loading.load_geomeld`):
  layer bytes with `<layer>_shape`, `<layer>_dtype`, `<layer>_bands`, decoded by `pretraining.row_to_sample`;
* flat arrays per modality, `{"sentinel2": (C, H, W), "label": ...}`, as GEO-Bench tasks
  (`GeoBenchTask.dataset`, `read_sample`) and `loading.geomeld_transform` give them; band names from a
  `<modality>_bands` column (list or comma-joined), else the collator's `band_names`, and a
  `<modality>_mask` column (False = no data) where there is one;
* the pretraining collator's samples, `{"arrays": {...}, "bands": {...}}`;
* already processed rows, `{"pixel_values": {m: (C, H, W)}, "valid_mask": {m: (H, W)}, "labels": ...}`
  (a `finetuning.TaskData` item), stacked as they are; `torch.utils.data.default_collate` batches the same
  rows the same way when every row holds every modality.

Normalisation, band order by name and no-data masks are the processor's (`GeoMeldImageProcessor`); a
modality some rows of a batch lack is filled with zeros and a False mask, so the batch stacks and the model
ignores it. Labels: `ClassificationCollator` gives int64 (B,) class indices, or float (B, K) multi-hot for
multi-label; `SegmentationCollator` int64 (B, H, W) with `ignore_index` (-1) where the class is unknown.
Mistakes (a band name the model does not know, a float where a class index belongs, a class name outside
`label2id`) raise `ValueError` naming the row, what was expected and what was found.

`PretrainingCollator` / `RowCollator` (pretraining batches, targets and captions) are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from modeling_geomeld.image_processing_geomeld import to_output_grid
from modeling_geomeld.modalities import get_modality, resolve
from modeling_geomeld.modeling_geomeld import input_pixel_count
from modeling_geomeld.training.pretraining import PretrainingCollator, RowCollator, _stack, row_to_sample

__all__ = [
    "ClassificationCollator",
    "GeoMeldDataCollator",
    "PixelValues",
    "PretrainingCollator",
    "RowCollator",
    "SegmentationCollator",
    "row_images",
]


class PixelValues(dict[str, torch.Tensor]):
    """`{modality: (B, C, H, W)}` whose `numel()` is its pixel count.

    transformers' `Trainer.floating_point_ops` (5.x) reads `inputs[model.main_input_name].numel()` directly,
    so a plain dict crashes it; the Trainer keeps a mapping's type when it moves a batch to the device
    (`type(data)({...})`), so this dict reaches it intact and counts what `GeoMeldPreTrainedModel.estimate_tokens`
    counts."""

    def numel(self) -> int:
        return input_pixel_count(dict(self))


def _where(row: Mapping[str, Any], index: int) -> str:
    name = row.get("tile_id") or row.get("sample_name")
    return f"row {index}" + (f" ({name})" if name else "")


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _band_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [b.strip() for b in value.split(",") if b.strip()]
    return [str(b) for b in value]


def row_images(
    row: Mapping[str, Any], band_names: Mapping[str, Sequence[str]] | None = None, skip: Sequence[str] = ()
) -> tuple[dict[str, np.ndarray], dict[str, list[str] | None]]:
    """The modality arrays of one unprocessed row and their band names (`None`: not given), for the first
    three row forms of the module docstring. Keys that are no registry modality (ids, captions, labels) and
    the keys in `skip` are left out."""
    if "arrays" in row:
        return dict(row["arrays"]), {k: list(v) for k, v in row.get("bands", {}).items()}
    if any(k.endswith("_dtype") and k[: -len("_dtype")] in row for k in row):  # a built dataset's layer bytes
        sample = row_to_sample(row)
        return sample["arrays"], dict(sample["bands"])
    images: dict[str, np.ndarray] = {}
    bands: dict[str, list[str] | None] = {}
    for key, value in row.items():
        if value is None or key in skip or key.endswith(("_mask", "_bands")):
            continue
        try:
            resolve(key)
        except KeyError:
            continue  # not a modality: another column
        array = _numpy(value)
        mask = row.get(f"{key}_mask")
        if mask is not None:  # geomeld_transform's zeros where a band or the layer is absent are no data
            array = np.where(_numpy(mask).astype(bool), array.astype(np.float32), np.float32(np.nan))
        images[key] = array
        bands[key] = _band_list(row.get(f"{key}_bands")) or _band_list((band_names or {}).get(key))
    return images, bands


class GeoMeldDataCollator:
    """Rows -> `pixel_values` and `valid_mask` through `processor` (a `GeoMeldProcessor` or
    `GeoMeldImageProcessor`); the task collators add `labels`.

    Args:
        processor: normalises, orders bands by name, masks no-data (and crops, where it is set to).
        band_names: `{modality: [band names]}` for flat rows without a `<modality>_bands` column (a GEO-Bench
            task's `bands`, say); without either, arrays must hold the model's bands in canonical order.
        label_column: the row key holding the label (`"labels"` is accepted too, as transformers' collators do).
    """

    def __init__(
        self,
        processor: Any,
        *,
        band_names: Mapping[str, Sequence[str]] | None = None,
        label_column: str = "label",
    ):
        self.processor = processor
        self.image_processor = getattr(processor, "image_processor", processor)
        self.band_names = {k: list(v) for k, v in (band_names or {}).items()}
        self.label_column = label_column

    # -- images ---------------------------------------------------------------------------------------
    def _process(self, row: Mapping[str, Any], index: int) -> dict[str, Any]:
        """One row -> {"pixel_values": {m: (1, C, H, W)}, "valid_mask": {m: (1, H, W)}}."""
        if "pixel_values" in row:  # already processed (a TaskData item)
            pixels = {k: torch.as_tensor(v)[None] for k, v in row["pixel_values"].items()}
            masks = {k: torch.as_tensor(v)[None] for k, v in (row.get("valid_mask") or {}).items()}
            for k, v in pixels.items():
                masks.setdefault(k, torch.isfinite(v).all(1))
            return {"pixel_values": pixels, "valid_mask": masks}
        inputs = self.image_processor.input_modalities
        images, bands = row_images(row, self.band_names, skip=(self.label_column, "labels"))
        served = {k: v for k, v in images.items() if resolve(k)[0].name in inputs}
        if not served:
            raise ValueError(
                f"{_where(row, index)}: expected at least one of the model's input modalities {list(inputs)}, "
                f"found keys {sorted(row)}; with a Trainer over a datasets.Dataset, set "
                "TrainingArguments(remove_unused_columns=False): it drops columns the model's forward does not name"
            )
        names = {k: b for k, b in bands.items() if k in served and b is not None}
        seed = int(torch.randint(0, 2**31 - 1, ()).item())  # random crops follow torch's (Trainer-seeded) RNG
        try:
            out = self.image_processor(served, band_names=names, seed=seed)
        except ValueError as err:
            raise ValueError(f"{_where(row, index)}: {err}") from None
        # what the processor did to this row's grid (crop, pad): per-pixel labels must follow it
        layout = {k: out[k] for k in ("original_size", "transforms", "valid_mask") if k in out}
        return {"pixel_values": out["pixel_values"], "valid_mask": out["valid_mask"], "layout": layout}

    def images(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """`pixel_values` (a `PixelValues`) and `valid_mask` of a batch; modalities some rows lack are zeros
        with a False mask."""
        return self._images(rows)[0]

    def _images(self, rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], list[Mapping[str, Any] | None]]:
        """`images`, and per row the processor's report of its layout (None for already processed rows)."""
        if not rows:
            raise ValueError("expected a non-empty list of rows, found none")
        per = [self._process(r, i) for i, r in enumerate(rows)]
        layouts = [p.pop("layout", None) for p in per]
        grids = [tuple(next(iter(p["pixel_values"].values())).shape[-2:]) for p in per]
        if len(set(grids)) > 1:
            sizes = sorted({f"{h}x{w}" for h, w in grids})
            raise ValueError(
                f"rows of a batch must share one grid after processing, found {sizes}; give the processor a "
                "crop_size (crop_mode='random' for training) or batch rows of one size"
            )
        batch = {
            "pixel_values": PixelValues(_stack(per, "pixel_values", grids[0], fill=0.0)),
            "valid_mask": _stack(per, "valid_mask", grids[0], fill=False),
        }
        return batch, layouts

    # -- labels ---------------------------------------------------------------------------------------
    def _label(self, row: Mapping[str, Any]) -> Any:
        for key in (self.label_column, "labels", "label"):
            if key in row and row[key] is not None:
                return row[key]
        return None

    def labels(
        self, rows: Sequence[Mapping[str, Any]], grid: tuple[int, int], layouts: Sequence[Mapping[str, Any] | None] = ()
    ) -> torch.Tensor | None:
        """None: this collator gives unlabelled batches (embeddings, inference); the task collators add labels.
        `layouts`: per row, what the processor did to its grid (segmentation labels follow crops and padding)."""
        return None

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch, layouts = self._images(rows)
        grid = tuple(next(iter(batch["pixel_values"].values())).shape[-2:])
        labels = self.labels(rows, (int(grid[0]), int(grid[1])), layouts)
        if labels is not None:
            batch["labels"] = labels
        return batch


def _class_index(value: Any, where: str, num_labels: int | None, label2id: Mapping[str, int] | None) -> int:
    if isinstance(value, str):
        if not label2id or value not in label2id:
            known = sorted(label2id) if label2id else "none (pass label2id to name classes)"
            raise ValueError(f"{where}: label {value!r} is not a known class name; expected one of {known}")
        return int(label2id[value])
    array = _numpy(value)
    if array.ndim != 0 and array.size == 1:
        array = array.reshape(())
    if array.ndim != 0:
        raise ValueError(
            f"{where}: expected one class index per row (single-label), found an array of shape {array.shape}; "
            "multi-hot labels need ClassificationCollator(multi_label=True)"
        )
    if array.dtype.kind not in "iu":
        raise ValueError(f"{where}: expected an integer class index, found {array.dtype} {array.item()!r}")
    index = int(array)
    if index < 0 or (num_labels is not None and index >= num_labels):
        span = f"in 0..{num_labels - 1}" if num_labels is not None else ">= 0"
        raise ValueError(f"{where}: expected a class index {span}, found {index}")
    return index


class ClassificationCollator(GeoMeldDataCollator):
    """Image-level labels: an int class index or a class name (`label2id`) per row -> int64 (B,); with
    `multi_label=True`, a multi-hot vector of `num_labels` 0/1 values or a list of class names -> float (B, K)
    (what `GeoMeldForImageClassification` takes with `problem_type="multi_label_classification"`)."""

    def __init__(
        self,
        processor: Any,
        *,
        num_labels: int | None = None,
        multi_label: bool = False,
        label2id: Mapping[str, int] | None = None,
        band_names: Mapping[str, Sequence[str]] | None = None,
        label_column: str = "label",
    ):
        super().__init__(processor, band_names=band_names, label_column=label_column)
        if multi_label and num_labels is None:
            raise ValueError("multi_label=True needs num_labels (the length of every multi-hot vector)")
        self.num_labels = num_labels
        self.multi_label = multi_label
        self.label2id = dict(label2id) if label2id else None

    @classmethod
    def for_model(cls, model: Any, processor: Any, **kwargs: Any) -> ClassificationCollator:
        """The collator matching a classification model's config (num_labels, label2id, problem type)."""
        config = model.config
        named = {
            str(k): int(v) for k, v in (config.label2id or {}).items() if not str(k).startswith("LABEL_")
        }
        kwargs.setdefault("num_labels", config.num_labels)
        kwargs.setdefault("multi_label", config.problem_type == "multi_label_classification")
        kwargs.setdefault("label2id", named or None)
        return cls(processor, **kwargs)

    def _multi_hot(self, value: Any, where: str) -> np.ndarray:
        k = int(self.num_labels or 0)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            hot = np.zeros(k, np.float32)
            hot[[_class_index(v, where, k, self.label2id) for v in value]] = 1.0
            return hot
        array = _numpy(value)
        if array.shape != (k,) or array.dtype.kind not in "biuf" or not np.isin(array, (0, 1)).all():
            found = f"shape {array.shape}, dtype {array.dtype}" + (
                f", values {np.unique(array)[:8].tolist()}" if array.size else ""
            )
            raise ValueError(
                f"{where}: expected a multi-hot vector of {k} 0/1 values (or a list of class names), found {found}"
            )
        return array.astype(np.float32)

    def labels(
        self, rows: Sequence[Mapping[str, Any]], grid: tuple[int, int], layouts: Sequence[Mapping[str, Any] | None] = ()
    ) -> torch.Tensor | None:
        values = [self._label(r) for r in rows]
        if all(v is None for v in values):
            return None
        missing = [i for i, v in enumerate(values) if v is None]
        if missing:
            raise ValueError(
                f"rows {missing} have no {self.label_column!r}; expected a label on every row or none"
            )
        where = [_where(r, i) for i, r in enumerate(rows)]
        if self.multi_label:
            return torch.from_numpy(
                np.stack([self._multi_hot(v, w) for v, w in zip(values, where, strict=True)])
            )
        indices = [
            _class_index(v, w, self.num_labels, self.label2id) for v, w in zip(values, where, strict=True)
        ]
        return torch.tensor(indices, dtype=torch.long)


class SegmentationCollator(GeoMeldDataCollator):
    """Per-pixel labels -> int64 (B, H, W), `ignore_index` where unknown: a row's `label` ((H, W) or (1, H, W)
    integer class indices, negative = unknown), or with `label_layer` a categorical layer of the row (a built
    dataset's `esa_worldcover` or `dynamic_world`, product codes mapped to class indices by the registry).

    A layer whose classes are per task (the generic `label` layer that `geomeld finetune --task labels:...`
    builds) has no codes in the registry: pass `label_codes`, the class list's codes in index order (the
    `code:` of each class), or every pixel would be unknown and the loss zero.

    Labels are not resampled: the label grid must be the image's; the processor's crops (`crop_size`, random
    or centre, as training sets) and padding are applied to it from the processor's own report
    (`GeoMeldImageProcessor.to_output_grid`), the padding as `ignore_index`."""

    def __init__(
        self,
        processor: Any,
        *,
        num_labels: int | None = None,
        ignore_index: int = -1,
        label_layer: str | None = None,
        label_codes: Sequence[int] | None = None,
        band_names: Mapping[str, Sequence[str]] | None = None,
        label_column: str = "label",
    ):
        super().__init__(processor, band_names=band_names, label_column=label_column)
        if label_layer is not None and not get_modality(label_layer).is_categorical:
            raise ValueError(
                f"label_layer must be a categorical layer, {label_layer!r} is {get_modality(label_layer).kind}"
            )
        if label_codes is not None and label_layer is None:
            raise ValueError("label_codes map a label_layer's stored codes; expected label_layer too, found none")
        if label_layer is not None and label_codes is None and not get_modality(label_layer).classes:
            raise ValueError(
                f"label_layer {label_layer!r} declares no classes (they are per task): expected label_codes, the "
                "class list's codes in index order (e.g. [1, 2, 4] for `classes: [{code: 1}, {code: 2}, {code: 4}]`), "
                "found none"
            )
        self.code_lut: np.ndarray | None = None
        if label_codes is not None:
            codes = [int(c) for c in label_codes]
            if len(set(codes)) != len(codes) or not all(0 <= c <= 255 for c in codes):
                raise ValueError(f"label_codes: expected distinct class codes in 0..255, found {list(label_codes)}")
            if num_labels is not None and len(codes) != num_labels:
                raise ValueError(f"label_codes: expected {num_labels} codes (num_labels), found {len(codes)}")
            self.code_lut = np.full(256, ignore_index, dtype=np.int64)
            self.code_lut[codes] = np.arange(len(codes))
        self.num_labels = num_labels
        self.ignore_index = ignore_index
        self.label_layer = label_layer

    @classmethod
    def for_model(cls, model: Any, processor: Any, **kwargs: Any) -> SegmentationCollator:
        """The collator matching a segmentation model's config (num_labels, its ignore index)."""
        kwargs.setdefault("num_labels", model.config.num_labels)
        kwargs.setdefault("ignore_index", model.config.semantic_loss_ignore_index)
        return cls(processor, **kwargs)

    def _row_label(self, row: Mapping[str, Any], where: str) -> np.ndarray | None:
        if self.label_layer is None:
            value = self._label(row)
            return None if value is None else _numpy(value)
        if "pixel_values" in row:
            value = self._label(row)
            return None if value is None else _numpy(value)
        images, _ = row_images(row)
        layer = next((a for k, a in images.items() if resolve(k)[0].name == self.label_layer), None)
        if layer is None:
            raise ValueError(
                f"{where}: expected the label layer {self.label_layer!r}, found layers {sorted(images)}"
            )
        if self.code_lut is not None:
            codes = np.asarray(layer)[0]
            codes = np.where(np.isfinite(codes), codes, 255).astype(np.int64) if codes.dtype.kind == "f" else codes.astype(np.int64)
            return self.code_lut[np.clip(codes, 0, 255)]
        return get_modality(self.label_layer).codes_to_indices(np.asarray(layer)[0])

    def _check(self, label: np.ndarray, where: str, grid: tuple[int, int]) -> np.ndarray:
        if label.ndim == 3 and label.shape[0] == 1:
            label = label[0]
        if label.dtype.kind not in "iu":
            raise ValueError(
                f"{where}: expected integer class indices (H, W) as the label, found dtype {label.dtype}"
            )
        if label.shape != grid:  # `_follow` has already cropped and padded a label given on the input's grid
            raise ValueError(
                f"{where}: expected a label of the image's grid (processed: {grid[0]}x{grid[1]}), found shape "
                f"{label.shape}; labels are not resampled: give them on the image's grid (the processor's crops "
                "and padding are applied to them)"
            )
        out = label.astype(np.int64)
        unknown = (out < 0) | (out == self.ignore_index)
        if self.num_labels is not None and (out[~unknown] >= self.num_labels).any():
            raise ValueError(
                f"{where}: expected class indices 0..{self.num_labels - 1} (negative or {self.ignore_index} = unknown), "
                f"found {int(out[~unknown].max())}"
            )
        out[unknown] = self.ignore_index
        return out

    def _follow(self, label: np.ndarray, layout: Mapping[str, Any] | None) -> np.ndarray:
        """A label on the row's input grid, cropped and padded as the processor did the image (its report)."""
        if layout is None or "transforms" not in layout:
            return label
        flat = label[0] if label.ndim == 3 and label.shape[0] == 1 else label
        size = tuple(int(v) for v in np.asarray(layout["original_size"]).reshape(-1, 2)[0])
        if flat.ndim != 2 or flat.shape != size or flat.dtype.kind not in "iu":
            return label  # `_check` says what is wrong with it
        return to_output_grid(flat.astype(np.int64), layout, fill=self.ignore_index)

    def labels(
        self, rows: Sequence[Mapping[str, Any]], grid: tuple[int, int], layouts: Sequence[Mapping[str, Any] | None] = ()
    ) -> torch.Tensor | None:
        where = [_where(r, i) for i, r in enumerate(rows)]
        found = [self._row_label(r, w) for r, w in zip(rows, where, strict=True)]
        if all(v is None for v in found):
            return None
        missing = [i for i, v in enumerate(found) if v is None]
        if missing:
            raise ValueError(f"rows {missing} have no label; expected one on every row or none")
        layouts = list(layouts) or [None] * len(rows)
        checked = [
            self._check(self._follow(v, lay), w, grid) for v, w, lay in zip(found, where, layouts, strict=True) if v is not None
        ]
        return torch.from_numpy(np.stack(checked))
