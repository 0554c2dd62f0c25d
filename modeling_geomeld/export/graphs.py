"""Tensor-only views of GeoMeld-FM for `torch.export` / ONNX: positional tensors in, a tuple of tensors out.

The model takes a dict of modality tensors and returns `ModelOutput`s; an exported graph takes one tensor per
configured input modality (in name order, the order `GeoMeldEncoder` processes them), optionally followed by
one bool valid mask (B, H, W) per modality. Without masks the graph derives validity from finiteness, as the
eager model does (non-finite pixels are no-data); traced graphs always take the encoder's masked path, which
on all-valid input equals the eager dense path to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling_geomeld import (
    GeoMeldEncoder,
    GeoMeldForImageClassification,
    GeoMeldForSemanticSegmentation,
)


class _Graph(nn.Module):
    def __init__(self, modalities: list[str], with_valid_mask: bool):
        super().__init__()
        self.modalities = list(modalities)
        self.with_valid_mask = with_valid_mask

    def split(
        self, inputs: tuple[torch.Tensor, ...]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        n = len(self.modalities)
        expected = 2 * n if self.with_valid_mask else n
        if len(inputs) != expected:
            raise TypeError(f"expected {expected} tensors ({self.input_names}), got {len(inputs)}")
        pixels = dict(zip(self.modalities, inputs[:n], strict=True))
        valid = dict(zip(self.modalities, inputs[n:], strict=True)) if self.with_valid_mask else None
        return pixels, valid

    @property
    def output_names(self) -> list[str]:
        raise NotImplementedError

    @property
    def input_names(self) -> list[str]:
        return self.modalities + ([f"valid_mask_{m}" for m in self.modalities] if self.with_valid_mask else [])


class EncoderGraph(_Graph):
    """Pixels -> (pooler_output, [image_embeds], last_hidden_state, hidden_state_0 .. hidden_state_{S-2}).

    `image_embeds` (the L2-normalised projection into the image-text space, as `GeoMeldModel.forward`) is
    present when a visual projection is given.
    """

    def __init__(
        self,
        encoder: GeoMeldEncoder,
        visual_projection: nn.Module | None = None,
        with_valid_mask: bool = False,
    ):
        super().__init__(sorted(encoder.config.input_modalities or {}), with_valid_mask)
        self.encoder = encoder
        self.visual_projection = visual_projection
        self.num_stages = len(encoder.config.depths or ())

    @property
    def output_names(self) -> list[str]:
        names = ["pooler_output"] + (["image_embeds"] if self.visual_projection is not None else [])
        return names + ["last_hidden_state"] + [f"hidden_state_{i}" for i in range(self.num_stages - 1)]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pixels, valid = self.split(inputs)
        out = self.encoder(pixels, valid)
        pooled = out.pooler_output
        heads = [pooled]
        if self.visual_projection is not None:
            heads.append(F.normalize(self.visual_projection(pooled), dim=-1))
        return (*heads, out.last_hidden_state, *out.hidden_states[:-1])


class TaskGraph(_Graph):
    """Pixels -> logits of a task model: (B, num_labels) for classification, (B, num_labels, H, W) for
    segmentation."""

    @property
    def output_names(self) -> list[str]:
        return ["logits"]

    def __init__(
        self, model: GeoMeldForImageClassification | GeoMeldForSemanticSegmentation, with_valid_mask: bool = False
    ):
        super().__init__(sorted(model.config.encoder_cfg.input_modalities or {}), with_valid_mask)
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor]:
        pixels, valid = self.split(inputs)
        return (self.model(pixel_values=pixels, valid_mask=valid).logits,)
