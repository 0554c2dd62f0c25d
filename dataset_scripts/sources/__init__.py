"""Where anchors come from: ``--source KIND:LOCATION`` picks one of the sources below.

Every source exposes ``anchors() -> Iterator[AnchorRequest | AlignedSample]`` (see
:mod:`dataset_scripts.types`) and ``describe() -> str`` for the build report. Modules are imported
lazily, so a manifest build never imports the STAC client.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Protocol

from ..types import AlignedSample, AnchorRequest

#: source kind -> "module:Class"; each class is constructed with the location string after "KIND:"
SOURCE_KINDS: dict[str, str] = {
    "manifest": "dataset_scripts.sources.manifest:ManifestSource",
    "stac": "dataset_scripts.sources.stac:StacSource",
    "geomeld-release": "dataset_scripts.sources.release:ReleaseSource",
}


class Source(Protocol):
    def anchors(self) -> Iterator[AnchorRequest | AlignedSample]: ...

    def describe(self) -> str: ...


def open_source(spec: str, **options: object) -> Source:
    """``"manifest:/data/m.csv"`` -> a ``ManifestSource``; raises ``ValueError`` for an unknown kind."""
    kind, sep, location = spec.partition(":")
    if not sep or kind not in SOURCE_KINDS or not location:
        raise ValueError(
            f"--source must look like KIND:LOCATION with KIND one of {sorted(SOURCE_KINDS)}; got {spec!r} "
            "(e.g. manifest:/data/manifest.csv, stac:https://earth-search.aws.element84.com/v1, "
            "geomeld-release:/data/geomeld/shards)"
        )
    module_name, _, cls_name = SOURCE_KINDS[kind].partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(location, **options)
