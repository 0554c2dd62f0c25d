"""Where anchors come from: ``--source KIND:LOCATION`` picks one of the sources below.

Every source exposes ``anchors() -> Iterator[AnchorRequest | AlignedSample]`` (see
:mod:`dataset_scripts.types`) and ``describe() -> str`` for the build report. Modules are imported
lazily, so a manifest build never imports the STAC client.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Protocol

from ..errors import UsageError
from ..settings import split_source
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
    """``"manifest:/data/m.csv"`` -> a ``ManifestSource``; raises ``UsageError`` for an unknown kind.

    ``options`` go to the source's constructor as given; ``geomeld build`` resolves them first with
    :func:`dataset_scripts.settings.resolve_source_options` (types, defaults, the values of build flags).
    """
    kind, location = split_source(spec)
    module_name, _, cls_name = SOURCE_KINDS[kind].partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    try:
        return cls(location, **options)
    except (ValueError, KeyError) as err:
        # a source refuses its configuration or its input list at construction: the user's mistake
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise UsageError(f"{kind} source: {message}") from None
