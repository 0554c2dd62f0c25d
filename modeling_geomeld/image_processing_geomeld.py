"""GeoMeld image processor: validate, reorder by band name, mask no-data, normalise, crop.

Input is a dict of modality arrays, ``(C, H, W)`` for one sample or ``(B, C, H, W)`` for a batch, keyed
by registry names (``"sentinel2_l2a"``, ``"sentinel2_l1c"``, ``"sentinel1"``, ``"dem"``, ...). Bands are
matched by name: pass ``band_names={"sentinel2_l2a": [...]}`` for files in another order; without names
the array must hold the configured bands, or all of the modality's bands, in canonical order (accepted
with a one-time warning: an array in another order, the release's B8A-before-B08 say, cannot be told apart).

What the processor cannot honour it refuses with a ``ValueError`` naming what it expected and what it found:
a ``band_names`` key that is not an image key, two images of one modality, an unknown modality. Values
that are not finite or lie outside the product's physical range (:data:`PHYSICAL_RANGE`) become no-data
and are counted per sample in the batch's ``invalid_pixels``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .modalities import MODALITIES, Modality, reorder_bands, resolve, validate_band_selection

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
        stacklevel=4,
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
        crop_size (`int`, *optional*, defaults to 112): output size; `None` keeps the input size.
        crop_mode (`"center"` | `"random"`, defaults to `"center"`): random crops take a seed or generator.
        patch_size (`int`, defaults to 16): output sizes must be divisible by it.
    """

    model_input_names = ["pixel_values", "valid_mask"]

    def __init__(
        self,
        input_modalities: dict[str, list[str]] | None = None,
        target_modalities: dict[str, list[str]] | None = None,
        s2_product: Literal["l2a", "l1c"] = "l2a",
        stats: dict[str, dict[str, list[float]]] | None = None,
        stats_source: str | None = None,
        crop_size: int | None = 112,
        crop_mode: Literal["center", "random"] = "center",
        patch_size: int = 16,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.input_modalities = validate_band_selection(
            "input_modalities", dict(input_modalities or {"sentinel2": []})
        )
        self.target_modalities = (
            validate_band_selection("target_modalities", dict(target_modalities)) if target_modalities else {}
        )
        if s2_product not in ("l2a", "l1c"):
            raise ValueError(f"s2_product must be 'l2a' or 'l1c', got {s2_product!r}")
        if crop_mode not in ("center", "random"):
            raise ValueError(f"crop_mode must be 'center' or 'random', got {crop_mode!r}")
        if crop_size is not None and crop_size % patch_size:
            raise ValueError(f"crop_size {crop_size} must be divisible by patch_size {patch_size}")
        self.s2_product = s2_product
        self.stats = {
            k: {b: [float(v[0]), float(v[1])] for b, v in table.items()} for k, table in (stats or {}).items()
        }
        self.stats_source = stats_source if self.stats else None
        self.crop_size = crop_size
        self.crop_mode = crop_mode
        self.patch_size = patch_size

    @classmethod
    def from_model_config(cls, config: Any, **kwargs: Any) -> GeoMeldImageProcessor:
        """The processor matching a `GeoMeldConfig` (input bands, targets, crop and patch size)."""
        enc = config.encoder_config
        dec = config.decoder_config
        return cls(
            input_modalities=enc.input_modalities,
            target_modalities=dec.target_modalities if config.use_mpmae else None,
            crop_size=kwargs.pop("crop_size", enc.image_size),
            patch_size=enc.patch_size,
            **kwargs,
        )

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

    def _crop_window(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        size = self.crop_size
        if size is None:
            if height % self.patch_size or width % self.patch_size:
                raise ValueError(
                    f"input size {height}x{width} must be divisible by patch_size {self.patch_size} (or set crop_size)"
                )
            return 0, 0, height, width
        if height < size or width < size:
            raise ValueError(f"input size {height}x{width} is smaller than crop_size {size}")
        if self.crop_mode == "random":
            return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1)), size, size
        return (height - size) // 2, (width - size) // 2, size, size

    # -- the call ---------------------------------------------------------------------------------------
    def preprocess(
        self,
        images: Mapping[str, Any],
        band_names: Mapping[str, Sequence[str]] | None = None,
        targets: Mapping[str, Any] | None = None,
        target_band_names: Mapping[str, Sequence[str]] | None = None,
        seed: int | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> GeoMeldBatchFeature:
        """Process one sample or a batch.

        Returns a `GeoMeldBatchFeature` with `pixel_values` {modality: float32 (B, C, S, S)} (no-data set to 0
        after normalisation), `valid_mask` {modality: bool (B, S, S)}, and with `targets`, `targets`
        {modality: float32 (B, C, S, S) normalised with NaN at no-data, or int64 (B, S, S) class indices
        with -1 at no-data}; `invalid_pixels` {modality, or `targets.<modality>`: int64 (B,)} counts the
        cropped pixels made no-data because a value was not finite or outside `PHYSICAL_RANGE`.
        Raises `ValueError` for band names keyed differently from the images, two images of one modality
        and unknown modalities.
        """
        if not isinstance(images, Mapping) or not images:
            raise ValueError(
                "images must be a non-empty dict {modality: array}, e.g. {'sentinel2_l2a': array (12, H, W)}"
            )
        band_names = dict(band_names or {})
        self._check_keys("images", images, "band_names", band_names)
        rng = np.random.default_rng(seed)
        pixel_values: dict[str, torch.Tensor] = {}
        valid_mask: dict[str, torch.Tensor] = {}
        invalid_pixels: dict[str, torch.Tensor] = {}
        window: tuple[int, int, int, int] | None = None
        batch_shape: tuple[int, int, int] | None = None

        def crop(a: np.ndarray) -> np.ndarray:
            nonlocal window, batch_shape
            b, h, w = a.shape[0], a.shape[-2], a.shape[-1]
            if batch_shape is None:
                batch_shape = (b, h, w)
                window = self._crop_window(h, w, rng)
            elif (b, h, w) != batch_shape:
                raise ValueError(
                    f"all layers must share batch size and grid, got {(b, h, w)} and {batch_shape}"
                )
            y, x, sh, sw = window  # type: ignore[misc]
            return a[..., y : y + sh, x : x + sw]

        for key, raw in images.items():
            mod, variant = self._resolve(key)
            if mod.name not in self.input_modalities:
                raise ValueError(
                    f"input {key!r} is not an input modality of this model; expected {list(self.input_modalities)}"
                )
            wanted = self.input_modalities[mod.name]
            array = self._select_bands(key, _as_batch(key, raw), mod, wanted, band_names.get(key))
            array = crop(array).astype(np.float32)
            plausible = _plausible(mod, wanted, array)
            array = np.where(plausible, array, 0.0)  # no overflow in the arithmetic below; masked anyway
            valid = np.asarray(plausible.all(axis=1))
            invalid_pixels[mod.name] = torch.from_numpy((~valid).sum(axis=(1, 2)).astype(np.int64))
            if mod.nodata is not None:
                valid &= ~(array == mod.nodata).all(axis=1)
            mean, std = self._mean_std(key, mod, variant, wanted)
            normed = (array - mean[None, :, None, None]) / std[None, :, None, None]
            normed = np.where(valid[:, None], normed, 0.0).astype(np.float32)
            pixel_values[mod.name] = torch.from_numpy(normed)
            valid_mask[mod.name] = torch.from_numpy(valid)

        data: dict[str, Any] = {"pixel_values": pixel_values, "valid_mask": valid_mask}
        if targets:
            target_band_names = dict(target_band_names or {})
            self._check_keys("targets", targets, "target_band_names", target_band_names)
            data["targets"] = self._targets(targets, target_band_names, crop, invalid_pixels)
        data["invalid_pixels"] = invalid_pixels
        return GeoMeldBatchFeature(data=data, tensor_type=None)

    __call__ = preprocess  # type: ignore[assignment]

    def _targets(
        self,
        targets: Mapping[str, Any],
        names: dict[str, Sequence[str]],
        crop: Any,
        invalid_pixels: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for key, raw in targets.items():
            mod, variant = self._resolve(key)
            if mod.name not in self.target_modalities:
                raise ValueError(
                    f"target {key!r} is not a target modality of this model; expected {list(self.target_modalities)}"
                )
            wanted = self.target_modalities[mod.name]
            array = crop(self._select_bands(key, _as_batch(key, raw), mod, wanted, names.get(key)))
            if mod.is_categorical:
                out[mod.name] = torch.from_numpy(mod.codes_to_indices(array[:, 0]))
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
            out[mod.name] = torch.from_numpy(
                ((array - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
            )
        return out
