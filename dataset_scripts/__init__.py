"""The GeoMeld dataset builder and loaders.

Imported first by every builder module: the modality registry is loaded without the model package's
``__init__`` (transformers, torch), so builder processes and Dask workers start in well under a second
(:mod:`dataset_scripts.registry`).
"""

from . import registry as _registry

_registry.load()
