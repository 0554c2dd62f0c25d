"""GeoMeld image processor: validate, reorder by band name, mask no-data, normalise, pad (or crop on request).

Input is a dict of modality arrays, ``(C, H, W)`` for one sample or ``(B, C, H, W)`` for a batch, keyed
by registry names (``"sentinel2_l2a"``, ``"sentinel2_l1c"``, ``"sentinel1"``, ``"dem"``, ...). Bands are
matched by name: pass ``band_names={"sentinel2_l2a": [...]}`` for files in another order; without names
the array must hold the configured bands, or all of the modality's bands, in canonical order (accepted
with a one-time warning: an array in another order, the release's B8A-before-B08 say, cannot be told apart).

Sizes: by default (``crop_size=None``, for inference) the input keeps its size; the encoder is fully
convolutional, so the processor only pads the bottom and right edges up to the next multiple of
``patch_size``, with no-data (``valid_mask`` False, value 0 after normalisation). Training asks for fixed
crops with ``crop_size=N, crop_mode="center" | "random"``; an input smaller than ``N`` is padded up to it,
never refused. Whatever was done is in the batch: ``valid_region`` ``(y0, x0, h, w)`` per sample in
output pixels, ``original_size`` ``(H, W)``, and ``transforms``, a list of plain records (derive, crop, pad)
with offsets and sizes; :meth:`GeoMeldImageProcessor.crop_to_valid` cuts model outputs back to the region and
:meth:`GeoMeldImageProcessor.to_output_grid` puts input-grid arrays (segmentation labels) onto the output grid.

A band the model needs that can be derived is derived: a DEM holding elevation only gets ``slope``
(Horn's method, :func:`~modeling_geomeld.modalities.slope_degrees`, pixel size ``pixel_size_m``).

What the processor cannot honour it refuses with a ``ValueError`` naming what it expected and what it found:
a ``band_names`` key that is not an image key, two images of one modality, an unknown modality, bands
missing by name. Values that are not finite or lie outside the product's physical range
(:data:`PHYSICAL_RANGE`) become no-data and are counted per sample in the batch's ``invalid_pixels``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .modalities import (
    MODALITIES,
    Modality,
    declarations,
    register_modality,
    reorder_bands,
    resolve,
    slope_degrees,
    validate_band_selection,
)

#: The physical range of every continuous band in its stored unit; a value outside it is a corrupt or
#: unscaled pixel (3e38 fill values, a float64 overflow), never a measurement, and becomes no-data rather
#: than a NaN embedding. Generous on purpose: only the absurd is rejected.
PHYSICAL_RANGE: dict[str, dict[str, tuple[float, float]]] = {
    # reflectance x 10000 as distributed: 16-bit DNs (L1C of baseline >= 04.00 adds +1000, so no negatives)
    "sentinel2": {b: (0.0, 65535.0) for b in MODALITIES["sentinel2"].band_names},
    # backscatter in dB: sigma0 / gamma0 lie within -60..+40 dB over any surface
    "sentinel1": {b: (-100.0, 60.0) for b in MODALITIES["sentinel1"].band_names},
    # metres above the geoid (Dead Sea shore -430 m, Everest 8849 m) and degrees of slope
    "dem": {"elevation": (-500.0, 9000.0), "slope": (0.0, 90.0)},
    "canopy_height": {"height": (0.0, 120.0), "std": (0.0, 120.0)},
    "jrc_water": {"occurrence": (0.0, 100.0)},
    # 8-bit imagery in most years, 16-bit containers in some deliveries
    "naip": {b: (0.0, 65535.0) for b in MODALITIES["naip"].band_names},
}

#: batch fields that report what the processor did rather than feed the encoder; the models accept them
#: (so `model(**processor(...))` works) and ignore them
REPORT_FIELDS = ("invalid_pixels", "valid_region", "original_size", "transforms")

#: bands derived when the model needs them and the input lacks them: modality -> band -> the band it is made
#: from. Slope (from elevation, by `slope_degrees`) is the one today; another needs its function in `_bands`.
DERIVED_BANDS: dict[str, dict[str, str]] = {"dem": {"slope": "elevation"}}

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Layout:
    """Where a batch's input lands in the output: the input `window` `(y0, x0, h, w)` is kept, placed at the
    output's top-left, and the output is padded with no-data at the bottom and right up to `size`
    `(height, width)`. Bottom/right padding keeps output and input pixel `(y, x)` of the window aligned."""

    input_size: tuple[int, int]
    window: tuple[int, int, int, int]
    size: tuple[int, int]

    def crop(self, array: np.ndarray) -> np.ndarray:
        y, x, h, w = self.window
        return array[..., y : y + h, x : x + w]

    def pad(self, array: np.ndarray, fill: float | bool) -> np.ndarray:
        """Pad a cropped `(..., h, w)` array to `(..., *size)` with `fill` (the no-data of its kind)."""
        _, _, h, w = self.window
        extra = (self.size[0] - h, self.size[1] - w)
        if extra == (0, 0):
            return array
        widths = [(0, 0)] * (array.ndim - 2) + [(0, extra[0]), (0, extra[1])]
        return np.pad(array, widths, constant_values=fill)

    def records(self, crop_mode: str, crop_size: int | None, patch_size: int) -> list[dict[str, Any]]:
        """What was done, as plain JSON-ready records (none when the input passed through unchanged)."""
        (height, width), (y, x, h, w) = self.input_size, self.window
        out: list[dict[str, Any]] = []
        if (h, w) != (height, width):
            out.append(
                {"op": "crop", "mode": crop_mode, "y0": y, "x0": x, "height": h, "width": w,
                 "input_height": height, "input_width": width}
            )  # fmt: skip
        if (h, w) != self.size:
            reason = f"up to crop_size {crop_size}" if crop_size else f"to a multiple of patch_size {patch_size}"
            out.append(
                {"op": "pad", "where": "bottom_right", "bottom": self.size[0] - h, "right": self.size[1] - w,
                 "height": self.size[0], "width": self.size[1], "fill": "no-data", "reason": reason}
            )  # fmt: skip
        return out


def plan_layout(
    height: int,
    width: int,
    patch_size: int,
    crop_size: int | None = None,
    crop_mode: Literal["center", "random"] = "center",
    rng: np.random.Generator | None = None,
) -> Layout:
    """The layout of an `height` x `width` input: with no `crop_size` the whole input, padded to the next
    multiple of `patch_size`; with one, a `crop_size` window (centred, or drawn from `rng`) of each side longer
    than it and the whole of each shorter side, padded up to `crop_size`."""
    if crop_size is None:
        padded = (-(-height // patch_size) * patch_size, -(-width // patch_size) * patch_size)  # ceil to multiple
        return Layout((height, width), (0, 0, height, width), padded)

    def span(length: int) -> tuple[int, int]:
        if length <= crop_size:
            return 0, length
        if crop_mode == "random":
            if rng is None:
                raise ValueError("random crops need a generator (pass seed= to the processor)")
            return int(rng.integers(0, length - crop_size + 1)), crop_size
        return (length - crop_size) // 2, crop_size

    (y, h), (x, w) = span(height), span(width)  # rows first: the order seeded crops have always drawn in
    return Layout((height, width), (y, x, h, w), (crop_size, crop_size))


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value)


def crop_to_valid(array: ArrayT, batch: Mapping[str, Any]) -> ArrayT:
    """Cut `array` `(..., H', W')` -- a model output on the grid of the processor's `batch` (segmentation
    logits), or on a grid coarser by an integer factor (per-patch embeddings, a stage's features) -- to the
    batch's `valid_region`, i.e. back to the input pixels the output covers. On a coarser grid the region is
    rounded outwards: a cell holding any valid pixel is kept."""
    if "valid_region" not in batch:
        raise ValueError(
            f"batch has no 'valid_region'; expected the output of GeoMeldImageProcessor, found keys {list(batch)}"
        )
    region = _numpy(batch["valid_region"])
    if region.ndim != 2 or region.shape[1] != 4 or len(region) == 0:
        raise ValueError(f"valid_region must be (B, 4) rows of (y0, x0, h, w), got shape {region.shape}")
    if not (region == region[0]).all():
        raise ValueError(
            f"the samples of this batch have different valid regions {region.tolist()}; crop them one at a time"
        )
    grid = next(iter(batch["valid_mask"].values())).shape[-2:]
    cells = tuple(array.shape[-2:])
    if array.ndim < 2 or grid[0] % cells[0] or grid[1] % cells[1] or grid[0] // cells[0] != grid[1] // cells[1]:
        raise ValueError(
            f"array's grid {cells} must be the batch's {tuple(grid)} or coarser by one integer factor; "
            f"got shape {tuple(array.shape)}"
        )
    factor = grid[0] // cells[0]
    y0, x0, h, w = (int(v) for v in region[0])
    return array[..., y0 // factor : -(-(y0 + h) // factor), x0 // factor : -(-(x0 + w) // factor)]



def to_output_grid(array: ArrayT, batch: Mapping[str, Any], fill: float | int | bool) -> ArrayT:
    """Put `array` `(..., H, W)` on the input grid -- a segmentation task's labels, say -- onto the grid of the
    processor's `batch`: the crop it reports, then bottom/right padding with `fill` (the loss's ignore index
    for labels), so it lines up pixel for pixel with `pixel_values`."""
    missing = [k for k in ("original_size", "transforms", "valid_mask") if k not in batch]
    if missing:
        raise ValueError(f"batch lacks {missing}; expected the output of one GeoMeldImageProcessor call")
    sizes = _numpy(batch["original_size"])
    if not (sizes == sizes[0]).all() or tuple(array.shape[-2:]) != tuple(int(v) for v in sizes[0]):
        raise ValueError(
            f"array's grid {tuple(array.shape[-2:])} must be the input's {sizes[0].tolist()} (original_size)"
        )
    crop = next((t for t in batch["transforms"] if t["op"] == "crop"), None)
    y, x = (crop["y0"], crop["x0"]) if crop else (0, 0)
    h, w = (crop["height"], crop["width"]) if crop else tuple(array.shape[-2:])
    grid: tuple[int, int] = tuple(next(iter(batch["valid_mask"].values())).shape[-2:])
    shape = (*array.shape[:-2], *grid)
    if isinstance(array, torch.Tensor):
        out_t = torch.full(shape, fill, dtype=array.dtype, device=array.device)
        out_t[..., :h, :w] = array[..., y : y + h, x : x + w]
        return out_t
    out = np.full(shape, fill, dtype=array.dtype)
    out[..., :h, :w] = array[..., y : y + h, x : x + w]
    return out

#: modality keys whose unnamed multi-band input has been warned about once in this process
_UNNAMED_WARNED: set[str] = set()


class GeoMeldBatchFeature(BatchFeature):
    """A `BatchFeature` whose values may be dicts of tensors (one per modality); `.to()` moves them all."""

    def to(self, *args: Any, **kwargs: Any) -> GeoMeldBatchFeature:
        """Move every tensor (inside modality dicts too) as `BatchFeature.to` does: a dtype, positional
        (`.to("cuda", torch.bfloat16)`) or keyword, casts floating tensors only; ids, masks and bool maps
        keep their dtype and only change device."""
        device = kwargs.get("device") or next((a for a in args if not isinstance(a, torch.dtype)), None)
        non_blocking = bool(kwargs.get("non_blocking", False))

        def move(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                if v.is_floating_point():
                    return v.to(*args, **kwargs)
                return v.to(device=device, non_blocking=non_blocking) if device is not None else v
            if isinstance(v, dict):
                return {k: move(x) for k, x in v.items()}
            return v

        self.data = {k: move(v) for k, v in self.data.items()}
        return self


def _as_batch(name: str, array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    elif isinstance(array, (list, tuple)):
        array = np.stack([np.asarray(a) for a in array])
    array = np.asarray(array)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected a numeric array (int, uint or float), got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise ValueError(f"{name}: expected (C, H, W) or (B, C, H, W), got shape {array.shape}")
    return array


_ORDER_EXAMPLE = {"sentinel2": " (the release's B8A before B08, say)", "sentinel1": " (VH before VV, say)"}


def _warn_unnamed(key: str, order: Sequence[str]) -> None:
    if key in _UNNAMED_WARNED:
        return
    _UNNAMED_WARNED.add(key)
    warnings.warn(
        f"{key}: no band_names given, so the {len(order)} bands are read in canonical order {list(order)}; "
        f"an array in another order{_ORDER_EXAMPLE.get(key.split('_')[0], '')} would be misread: pass "
        f"band_names={{{key!r}: [...]}} with the file's own order",
        UserWarning,
        stacklevel=5,
    )


def _plausible(mod: Modality, bands: Sequence[str], array: np.ndarray) -> np.ndarray:
    """Per value (B, C, H, W): finite and inside the band's physical range (class maps: finite only)."""
    ok = np.isfinite(array)
    ranges = PHYSICAL_RANGE.get(mod.name, {})
    for i, band in enumerate(bands):
        # the table first, then the registry's own declaration (landsat8, aerial, user-declared sensors)
        bounds = ranges.get(band) or (mod.band(band).valid_range if band in mod.band_names else None)
        if bounds is not None:
            lo, hi = bounds
            ok[:, i] &= (array[:, i] >= lo) & (array[:, i] <= hi)
    return ok


class GeoMeldImageProcessor(BaseImageProcessor):
    r"""Turns raw modality arrays into the inputs of GeoMeld-FM.

    Args:
        input_modalities (`dict[str, list[str]]`): modality -> bands the encoder takes (its config's).
        target_modalities (`dict[str, list[str]]`, *optional*): modality -> bands of pretraining targets.
        s2_product (`"l2a"` | `"l1c"`, defaults to `"l2a"`): the Sentinel-2 product a plain `"sentinel2"` key
            means; it picks the normalisation statistics.
        stats (`dict`, *optional*): statistics overriding the registry defaults, `{"sentinel2_l2a": {"B01":
            [mean, std], ...}, "dem": {...}}` (as `geomeld stats` writes them into a dataset card).
        stats_source (`str`, *optional*): where `stats` came from (a dataset's `stats.json`, a GEO-Bench task's
            `band_stats.json`); saved with the processor and shown in the model card.
        crop_size (`int`, *optional*): a fixed output size for training; `None` (the default, for inference)
            keeps the input size, padded with no-data to the next multiple of `patch_size`. An input smaller
            than `crop_size` is padded up to it.
        crop_mode (`"center"` | `"random"`, defaults to `"center"`): how a `crop_size` window is placed;
            random crops take a `seed`.
        patch_size (`int`, defaults to 16): output sizes are multiples of it.
        pixel_size_m (`float`, *optional*): ground sampling distance of the input grid in metres, for bands
            derived from others (slope from elevation); defaults to the modality's (10 m for the DEM).
        custom_modalities (`list[dict]`, *optional*): declarations of user-declared modalities
            (`modalities.modality_to_dict`), registered before the band selections are checked. Filled in
            automatically with the declarations of the user-declared modalities the processor uses, so a saved
            processor loads in a process that never saw the user's registry file (as the config does).
    """

    model_input_names = ["pixel_values", "valid_mask"]

    def __init__(
        self,
        input_modalities: dict[str, list[str]] | None = None,
        target_modalities: dict[str, list[str]] | None = None,
        s2_product: Literal["l2a", "l1c"] = "l2a",
        stats: dict[str, dict[str, list[float]]] | None = None,
        stats_source: str | None = None,
        crop_size: int | None = None,
        crop_mode: Literal["center", "random"] = "center",
        patch_size: int = 16,
        pixel_size_m: float | None = None,
        custom_modalities: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        for entry in custom_modalities or []:  # before the band selections look the modalities up by name
            register_modality(entry, origin="processor custom_modalities")
        self.input_modalities = validate_band_selection(
            "input_modalities", dict(input_modalities or {"sentinel2": []})
        )
        self.target_modalities = (
            validate_band_selection("target_modalities", dict(target_modalities)) if target_modalities else {}
        )
        # only what this processor uses, so a processor of built-ins saves no empty declarations
        self.custom_modalities = declarations([*self.input_modalities, *self.target_modalities])
        if s2_product not in ("l2a", "l1c"):
            raise ValueError(f"s2_product must be 'l2a' or 'l1c', got {s2_product!r}")
        if crop_mode not in ("center", "random"):
            raise ValueError(f"crop_mode must be 'center' or 'random', got {crop_mode!r}")
        if not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
        if crop_size is not None and (not isinstance(crop_size, int) or crop_size < 1 or crop_size % patch_size):
            raise ValueError(
                f"crop_size must be None (keep the input size) or a positive multiple of patch_size {patch_size}, "
                f"got {crop_size!r}"
            )
        if pixel_size_m is not None and not pixel_size_m > 0:
            raise ValueError(f"pixel_size_m must be a positive number of metres, got {pixel_size_m!r}")
        self.s2_product = s2_product
        self.stats = {
            k: {b: [float(v[0]), float(v[1])] for b, v in table.items()} for k, table in (stats or {}).items()
        }
        self.stats_source = stats_source if self.stats else None
        self.crop_size = crop_size
        self.crop_mode = crop_mode
        self.patch_size = patch_size
        self.pixel_size_m = pixel_size_m

    @classmethod
    def from_model_config(cls, config: Any, **kwargs: Any) -> GeoMeldImageProcessor:
        """The processor matching a `GeoMeldConfig` (input bands, targets, patch size). It keeps the input
        size, for inference; training passes its crop explicitly:
        `from_model_config(config, crop_size=config.encoder_cfg.image_size, crop_mode="random")`."""
        enc = config.encoder_config
        dec = config.decoder_config
        return cls(
            input_modalities=enc.input_modalities,
            target_modalities=dec.target_modalities if config.use_mpmae else None,
            patch_size=enc.patch_size,
            **kwargs,
        )

    crop_to_valid = staticmethod(crop_to_valid)
    to_output_grid = staticmethod(to_output_grid)

    # -- helpers --------------------------------------------------------------------------------------
    def _resolve(self, key: str) -> tuple[Modality, str]:
        try:
            mod, variant = resolve(key)
        except KeyError as err:  # a caller's typo is a bad value, not a missing mapping entry
            raise ValueError(err.args[0]) from None
        if mod.name == "sentinel2" and key == "sentinel2":
            variant = self.s2_product
        return mod, variant

    def _mean_std(
        self, key: str, mod: Modality, variant: str, bands: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        mean, std = mod.band_stats(bands, variant)
        override = self.stats.get(f"{mod.name}_{variant}") or self.stats.get(mod.name) or {}
        for i, b in enumerate(bands):
            if b in override:
                mean[i], std[i] = override[b]
        if np.any(std <= 0):
            raise ValueError(
                f"{key}: standard deviations must be positive, got {dict(zip(bands, std.tolist(), strict=True))}"
            )
        return mean, std

    def mean_std(self, key: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The input bands of modality `key` (`"sentinel2"`, `"sentinel2_l1c"`, ...) with the mean and std this
        processor normalises them with."""
        mod, variant = self._resolve(key)
        if mod.name not in self.input_modalities:
            raise ValueError(f"{key!r} is not an input modality of this processor; expected {list(self.input_modalities)}")
        bands = list(self.input_modalities[mod.name])
        mean, std = self._mean_std(key, mod, variant, bands)
        return bands, mean, std

    @staticmethod
    def _select_bands(
        key: str, array: np.ndarray, mod: Modality, wanted: Sequence[str], given: Sequence[str] | None
    ) -> np.ndarray:
        if given is None:
            if array.shape[1] in (len(wanted), len(mod.bands)) and array.shape[1] > 1:
                _warn_unnamed(key, wanted if array.shape[1] == len(wanted) else mod.band_names)
            if array.shape[1] == len(wanted):
                return array
            if array.shape[1] == len(mod.bands):
                given = mod.band_names
            else:
                raise ValueError(
                    f"{key}: expected {len(wanted)} bands {list(wanted)} (or all {len(mod.bands)} of "
                    f"{mod.name} in canonical order), got {array.shape[1]}; pass band_names={{{key!r}: [...]}}"
                )
        return reorder_bands(array, given, wanted, modality=key, axis=1)

    def _check_keys(
        self, what: str, arrays: Mapping[str, Any], names_field: str, names: Mapping[str, Any]
    ) -> None:
        """Refuse what would otherwise be ignored silently: names for no array, two arrays of one modality."""
        by_modality: dict[str, str] = {}
        for key in arrays:
            mod, _ = self._resolve(key)
            if mod.name in by_modality:
                raise ValueError(
                    f"{what} holds two arrays of {mod.name}: {by_modality[mod.name]!r} and {key!r}; "
                    f"expected one per modality (pass the Sentinel-2 product the model was trained on)"
                )
            by_modality[mod.name] = key
        for key in names:
            if key in arrays:
                continue
            mod, _ = self._resolve(key)
            if mod.name in by_modality:
                raise ValueError(
                    f"{names_field} key {key!r} does not match the {what} key {by_modality[mod.name]!r}; "
                    f"expected {names_field}={{{by_modality[mod.name]!r}: [...]}}"
                )
            raise ValueError(
                f"{names_field} names bands of {key!r} but {what} holds no such array; "
                f"expected keys among {list(arrays)}"
            )

    def _bands(
        self,
        key: str,
        array: np.ndarray,
        mod: Modality,
        wanted: Sequence[str],
        given: Sequence[str] | None,
        pixel_size_m: float | None,
        role: str,
        records: list[dict[str, Any]],
    ) -> np.ndarray:
        """The `wanted` bands of `array` by name, deriving those of :data:`DERIVED_BANDS` that it lacks."""
        derivable = DERIVED_BANDS.get(mod.name, {})
        lacking = [b for b in wanted if b in derivable and (given is None or b not in given)]
        if lacking and given is None:
            # unnamed: only an array of exactly the other wanted bands (a DEM's one elevation band) lacks them
            rest = [b for b in wanted if b not in lacking]
            if array.shape[1] != len(rest) or array.shape[1] in (len(wanted), len(mod.bands)):
                return self._select_bands(key, array, mod, wanted, given)
            given = rest
        for band in lacking:
            given = list(given or ())
            source_band = derivable[band]
            if source_band not in given:
                raise ValueError(
                    f"{key}: expected bands {list(wanted)}, found {given}; {band!r} is derived from "
                    f"{source_band!r} when absent, but {source_band!r} is missing too: pass it, or name the "
                    f"file's bands with band_names={{{key!r}: [...]}}"
                )
            size = self.pixel_size_m if pixel_size_m is None else pixel_size_m
            size = float(mod.gsd if size is None else size)
            source = array[:, given.index(source_band)].astype(np.float64)
            source = np.where(_plausible(mod, [source_band], source[:, None])[:, 0], source, np.nan)
            derived = slope_degrees(source, size)  # (B, H, W) on the whole input, before any crop
            array = np.concatenate([array.astype(np.float32, copy=False), derived[:, None]], axis=1)
            given = [*given, band]
            records.append(
                {"op": "derive", "role": role, "modality": mod.name, "band": band, "from": source_band,
                 "method": "horn", "pixel_size_m": size}
            )  # fmt: skip
        return self._select_bands(key, array, mod, wanted, given)

    # -- the call ---------------------------------------------------------------------------------------
    def preprocess(
        self,
        images: Mapping[str, Any],
        band_names: Mapping[str, Sequence[str]] | None = None,
        targets: Mapping[str, Any] | None = None,
        target_band_names: Mapping[str, Sequence[str]] | None = None,
        seed: int | None = None,
        return_tensors: str | None = "pt",
        pixel_size_m: float | None = None,
        **kwargs: Any,
    ) -> GeoMeldBatchFeature:
        """Process one sample or a batch (all layers on one grid).

        Returns a `GeoMeldBatchFeature` with `pixel_values` {modality: float32 (B, C, S_h, S_w)} (no-data and
        padding set to 0 after normalisation), `valid_mask` {modality: bool (B, S_h, S_w)} (False at no-data
        and padding), and with `targets`, `targets` {modality: float32 (B, C, S_h, S_w) normalised with NaN at
        no-data, or int64 (B, S_h, S_w) class indices with -1 at no-data}; `invalid_pixels` {modality, or
        `targets.<modality>`: int64 (B,)} counts the kept pixels made no-data because a value was not finite
        or outside `PHYSICAL_RANGE`. What was done to the grid: `valid_region` int64 (B, 4) `(y0, x0, h, w)`
        of the output holding input pixels, `original_size` int64 (B, 2) `(H, W)`, and `transforms`, a list
        of records (`{"op": "derive" | "crop" | "pad", ...}` with offsets and sizes; empty when the input
        passed through unchanged). `pixel_size_m` overrides the processor's for derived bands.
        Raises `ValueError` for band names keyed differently from the images, two images of one modality,
        unknown modalities and missing bands.
        """
        if not isinstance(images, Mapping) or not images:
            raise ValueError(
                "images must be a non-empty dict {modality: array}, e.g. {'sentinel2_l2a': array (12, H, W)}"
            )
        if pixel_size_m is not None and not pixel_size_m > 0:
            raise ValueError(f"pixel_size_m must be a positive number of metres, got {pixel_size_m!r}")
        band_names = dict(band_names or {})
        self._check_keys("images", images, "band_names", band_names)
        rng = np.random.default_rng(seed)
        records: list[dict[str, Any]] = []
        pixel_values: dict[str, torch.Tensor] = {}
        valid_mask: dict[str, torch.Tensor] = {}
        invalid_pixels: dict[str, torch.Tensor] = {}
        layout: Layout | None = None
        batch_shape: tuple[int, int, int] | None = None

        def place(a: np.ndarray) -> Layout:
            """The batch's layout, planned from the first layer; every other layer must share its grid."""
            nonlocal layout, batch_shape
            b, h, w = a.shape[0], a.shape[-2], a.shape[-1]
            if batch_shape is None:
                batch_shape = (b, h, w)
                layout = plan_layout(h, w, self.patch_size, self.crop_size, self.crop_mode, rng)
            elif (b, h, w) != batch_shape:
                raise ValueError(
                    f"all layers must share batch size and grid, got {(b, h, w)} and {batch_shape}"
                )
            return cast(Layout, layout)

        for key, raw in images.items():
            mod, variant = self._resolve(key)
            if mod.name not in self.input_modalities:
                raise ValueError(
                    f"input {key!r} is not an input modality of this model; expected {list(self.input_modalities)}"
                )
            wanted = self.input_modalities[mod.name]
            array = self._bands(
                key, _as_batch(key, raw), mod, wanted, band_names.get(key), pixel_size_m, "input", records
            )
            where = place(array)
            array = where.crop(array).astype(np.float32)
            plausible = _plausible(mod, wanted, array)
            array = np.where(plausible, array, 0.0)  # no overflow in the arithmetic below; masked anyway
            valid = np.asarray(plausible.all(axis=1))
            invalid_pixels[mod.name] = torch.from_numpy((~valid).sum(axis=(1, 2)).astype(np.int64))
            if mod.nodata is not None:
                valid &= ~(array == mod.nodata).all(axis=1)
            mean, std = self._mean_std(key, mod, variant, wanted)
            normed = (array - mean[None, :, None, None]) / std[None, :, None, None]
            normed = np.where(valid[:, None], normed, 0.0).astype(np.float32)
            pixel_values[mod.name] = torch.from_numpy(where.pad(normed, 0.0))
            valid_mask[mod.name] = torch.from_numpy(where.pad(valid, False))

        data: dict[str, Any] = {"pixel_values": pixel_values, "valid_mask": valid_mask}
        if targets:
            target_band_names = dict(target_band_names or {})
            self._check_keys("targets", targets, "target_band_names", target_band_names)
            data["targets"] = self._targets(
                targets, target_band_names, place, invalid_pixels, pixel_size_m, records
            )
        final = cast(Layout, layout)
        batch = cast(tuple[int, int, int], batch_shape)[0]
        _, _, kept_h, kept_w = final.window
        data["invalid_pixels"] = invalid_pixels
        data["valid_region"] = torch.tensor([[0, 0, kept_h, kept_w]] * batch, dtype=torch.int64)
        data["original_size"] = torch.tensor([list(final.input_size)] * batch, dtype=torch.int64)
        data["transforms"] = records + final.records(self.crop_mode, self.crop_size, self.patch_size)
        return GeoMeldBatchFeature(data=data, tensor_type=None)

    __call__ = preprocess  # type: ignore[assignment]

    def _targets(
        self,
        targets: Mapping[str, Any],
        names: dict[str, Sequence[str]],
        place: Any,
        invalid_pixels: dict[str, torch.Tensor],
        pixel_size_m: float | None,
        records: list[dict[str, Any]],
    ) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for key, raw in targets.items():
            mod, variant = self._resolve(key)
            if mod.name not in self.target_modalities:
                raise ValueError(
                    f"target {key!r} is not a target modality of this model; expected {list(self.target_modalities)}"
                )
            wanted = self.target_modalities[mod.name]
            array = self._bands(
                key, _as_batch(key, raw), mod, wanted, names.get(key), pixel_size_m, "target", records
            )
            where: Layout = place(array)
            array = where.crop(array)
            if mod.is_categorical:
                out[mod.name] = torch.from_numpy(where.pad(mod.codes_to_indices(array[:, 0]), -1))
                continue
            array = array.astype(np.float32)
            plausible = _plausible(mod, wanted, array)
            invalid_pixels[f"targets.{mod.name}"] = torch.from_numpy(
                (~plausible.all(axis=1)).sum(axis=(1, 2)).astype(np.int64)
            )
            array = np.where(plausible, array, np.nan)
            if mod.nodata is not None:
                array = np.where(array == mod.nodata, np.nan, array)
            mean, std = self._mean_std(key, mod, variant, wanted)
            normed = ((array - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
            out[mod.name] = torch.from_numpy(where.pad(normed, np.nan))
        return out
