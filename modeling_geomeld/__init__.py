"""GeoMeld-FM for transformers: config, models, processors, and the modality registry.

Importing this package registers the classes with the Auto API, so checkpoints load without
`trust_remote_code` wherever `geomeld` is installed; `save_pretrained` also ships the code for
`trust_remote_code=True` loading where it is not.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    AutoModelForSemanticSegmentation,
    AutoProcessor,
)

# the one registry: the module the builder may have loaded already (dataset_scripts.registry)
from . import modalities as modalities
from .configuration_geomeld import (
    ENCODER_PRESETS,
    PRETRAINING_PRESETS,
    GeoMeldConfig,
    GeoMeldDecoderConfig,
    GeoMeldEncoderConfig,
    GeoMeldPredictorConfig,
)
from .image_processing_geomeld import GeoMeldBatchFeature, GeoMeldImageProcessor
from .modalities import MODALITIES, get_modality, reorder_bands, resolve
from .modeling_geomeld import (
    GeoMeldEncoder,
    GeoMeldForImageClassification,
    GeoMeldForPreTraining,
    GeoMeldForPreTrainingOutput,
    GeoMeldForSemanticSegmentation,
    GeoMeldModel,
    GeoMeldOutput,
    GeoMeldPreTrainedModel,
    GeoMeldVisionModel,
    contrastive_loss,
    ema_momentum,
    update_momentum,
)
from .pipeline_geomeld import register_pipelines
from .processing_geomeld import GeoMeldProcessor

__version__ = "0.1.0"

# local Auto registration (installed package) ...
AutoConfig.register("geomeld", GeoMeldConfig, exist_ok=True)
AutoModel.register(GeoMeldConfig, GeoMeldModel, exist_ok=True)
AutoModelForPreTraining.register(GeoMeldConfig, GeoMeldForPreTraining, exist_ok=True)
AutoModelForImageClassification.register(GeoMeldConfig, GeoMeldForImageClassification, exist_ok=True)
AutoModelForSemanticSegmentation.register(GeoMeldConfig, GeoMeldForSemanticSegmentation, exist_ok=True)
AutoImageProcessor.register(GeoMeldConfig, slow_image_processor_class=GeoMeldImageProcessor, exist_ok=True)
AutoProcessor.register(GeoMeldConfig, GeoMeldProcessor, exist_ok=True)
# ... and the auto_map written by save_pretrained, for trust_remote_code loading elsewhere
GeoMeldConfig.register_for_auto_class()
GeoMeldModel.register_for_auto_class("AutoModel")
GeoMeldVisionModel.register_for_auto_class("AutoModel")  # an encoder-only checkpoint (`base_model.save_pretrained`)
GeoMeldForPreTraining.register_for_auto_class("AutoModelForPreTraining")
GeoMeldForImageClassification.register_for_auto_class("AutoModelForImageClassification")
GeoMeldForSemanticSegmentation.register_for_auto_class("AutoModelForSemanticSegmentation")
GeoMeldImageProcessor.register_for_auto_class("AutoImageProcessor")
GeoMeldProcessor.register_for_auto_class("AutoProcessor")
# transformers.pipeline(task, model=...) for GeoMeld models without remote code (other models keep the stock ones)
register_pipelines()

__all__ = [
    "ENCODER_PRESETS",
    "MODALITIES",
    "PRETRAINING_PRESETS",
    "GeoMeldBatchFeature",
    "GeoMeldConfig",
    "GeoMeldDecoderConfig",
    "GeoMeldEncoder",
    "GeoMeldEncoderConfig",
    "GeoMeldForImageClassification",
    "GeoMeldForPreTraining",
    "GeoMeldForPreTrainingOutput",
    "GeoMeldForSemanticSegmentation",
    "GeoMeldImageProcessor",
    "GeoMeldModel",
    "GeoMeldOutput",
    "GeoMeldPreTrainedModel",
    "GeoMeldPredictorConfig",
    "GeoMeldProcessor",
    "GeoMeldVisionModel",
    "contrastive_loss",
    "ema_momentum",
    "get_modality",
    "reorder_bands",
    "resolve",
    "update_momentum",
]
