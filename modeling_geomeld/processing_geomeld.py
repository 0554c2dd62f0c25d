"""GeoMeld processor: the image processor and the caption tokenizer behind one call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transformers.processing_utils import ProcessorMixin

from .image_processing_geomeld import GeoMeldBatchFeature, crop_to_valid


class GeoMeldProcessor(ProcessorMixin):
    r"""Pairs a `GeoMeldImageProcessor` with the text tower's tokenizer.

    `processor(images={...}, text=[...])` returns the image processor's fields plus `input_ids`,
    `attention_mask` (and `token_type_ids` where the tokenizer makes them), ready for `GeoMeldModel`;
    `crop_to_valid(array, batch)` cuts a model output back to the batch's valid region.
    """

    crop_to_valid = staticmethod(crop_to_valid)

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, max_length: int = 64, **kwargs: Any
    ):
        self.max_length = max_length
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(
        self,
        images: Mapping[str, Any] | None = None,
        text: str | Sequence[str] | None = None,
        band_names: Mapping[str, Sequence[str]] | None = None,
        targets: Mapping[str, Any] | None = None,
        seed: int | None = None,
        pixel_size_m: float | None = None,
        **kwargs: Any,
    ) -> GeoMeldBatchFeature:
        if images is None and text is None:
            raise ValueError("GeoMeldProcessor needs images, text, or both")
        data: dict[str, Any] = {}
        if images is not None:
            data.update(
                self.image_processor(
                    images, band_names=band_names, targets=targets, seed=seed, pixel_size_m=pixel_size_m
                ).data
            )
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            if not texts or any(not isinstance(t, str) for t in texts):
                raise ValueError("text must be a string or a non-empty list of strings")
            data.update(
                self.tokenizer(
                    texts,
                    padding=kwargs.pop("padding", True),
                    truncation=True,
                    max_length=kwargs.pop("max_length", self.max_length),
                    return_tensors="pt",
                )
            )
        return GeoMeldBatchFeature(data=data, tensor_type=None)
