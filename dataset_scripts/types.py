"""The contracts between the builder's stages: what a source yields and what the writer stores.

Sources (manifest, STAC, the original release) turn user input into work for the builder:

* :class:`AnchorRequest` -- one anchor and the raster layers to align onto its grid (manifest and STAC
  sources). Every ``LayerRef.path`` is anything ``rasterio.open`` accepts (a local path, a ``/vsicurl/``
  URL, a COG href from a STAC item).
* :class:`AlignedSample` -- a sample whose layers already share one grid (the original release's ``.h5``
  members); it skips reprojection and goes straight to signals and writing.

Band order is by name: ``LayerRef.bands`` names the bands in the file's order, ``AlignedSample.bands``
names the bands of each stored array; the registry in :mod:`modeling_geomeld.modalities` says what each
name means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LayerRef:
    """One raster file (or asset) that contributes a layer to an anchor.

    Attributes:
        modality: registry name, with the product variant where one exists (``"sentinel2_l2a"``,
            ``"sentinel2_l1c"``, ``"sentinel1"``, ``"dem"``, ``"esa_worldcover"``, ...).
        path: anything ``rasterio.open`` accepts.
        bands: band names in the file's order; ``None`` means the registry's canonical order applies.
        datetime: ISO 8601 acquisition time, or ``None`` to read it from the file's tags.
        class_map: for categorical layers from another product: source code -> target code
            (see :func:`modeling_geomeld.modalities.parse_class_map`); unmapped codes become no-data.
        properties: free-form metadata from the source (``eo:cloud_cover``, STAC item id, ...).
    """

    modality: str
    path: str
    bands: tuple[str, ...] | None = None
    datetime: str | None = None
    class_map: dict[int, int] | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnchorRequest:
    """An anchor point and the layers to align onto its footprint.

    ``lat``/``lon`` may be ``None``: the builder then uses the centre of the layers' common footprint.
    """

    anchor_id: str
    layers: list[LayerRef]
    lat: float | None = None
    lon: float | None = None


@dataclass
class AlignedSample:
    """A sample on one grid, as the writer stores it.

    Attributes:
        tile_id: unique id (the manifest's ``anchor_id``).
        arrays: modality name (registry base name, e.g. ``"sentinel2"``) -> array (bands, H, W); absent
            modalities are simply missing, never zero-filled.
        bands: modality name -> band names of the stored array, in order.
        metadata: ``lat``, ``lon``, ``crs``, ``bounds``, ``datetime`` per modality, offsets, product
            variant (``s2_product``: ``"l1c"``/``"l2a"``), and anything the source knows.
    """

    tile_id: str
    arrays: dict[str, np.ndarray]
    bands: dict[str, tuple[str, ...]]
    metadata: dict[str, Any] = field(default_factory=dict)


class QuarantineError(Exception):
    """Raised by a stage for bad input; the builder records ``reason`` against the anchor and goes on.

    ``reason`` is a short machine-friendly code (``"corrupt_file"``, ``"missing_crs"``,
    ``"band_count_mismatch"``, ``"all_nodata"``, ``"nan_filled"``, ``"footprint_outside"``,
    ``"date_outside_window"``, ``"unreadable_path"``, ``"duplicate_anchor"``, ``"pixel_budget"``,
    ``"implausible_units"``, ``"out_of_range"``; ``"internal"`` is what the builder records for any other
    exception on one anchor); ``str(err)`` says what was expected and what was found.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
