"""Uploaded GeoTIFFs: validated, then brought onto the model's grid by the dataset builder's own alignment.

The Space accepts one Sentinel-2 (L2A or L1C) or Sentinel-1 (VV, VH) GeoTIFF. Checks, each failing with a
message that says what was expected and what was found: the file's size, the TIFF signature (so a renamed
text file is refused before GDAL sees it), then everything the builder checks for a manifest file
(``dataset_scripts.align``: readable raster, a CRS, band count against the product's canonical order or
the band names in the file's band descriptions, no-data, coverage of the footprint). The footprint is the
builder's: a square in the anchor's UTM zone centred on the file, ``size_px`` pixels at 10 m.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_UPLOAD_MB = 64
#: what the Space's product menu offers: label -> builder modality name
PRODUCTS = {
    "Sentinel-2 L2A": "sentinel2_l2a",
    "Sentinel-2 L1C": "sentinel2_l1c",
    "Sentinel-1 (VV, VH)": "sentinel1",
}
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders


def product_modality(product: str) -> str:
    """The registry modality a product name belongs to (``sentinel2_l1c`` -> ``sentinel2``)."""
    from modeling_geomeld.modalities import resolve

    return resolve(product)[0].name


def discard_upload(path: str | Path | None, upload_root: str | Path | None = None) -> bool:
    """Delete an uploaded file, and its folder when that is left empty, once the Space has used it.

    Only files inside Gradio's upload folder (``GRADIO_TEMP_DIR``) are touched: a path from anywhere else is
    left alone. Returns whether a file was deleted.
    """
    if not path:
        return False
    if upload_root is None:
        from gradio.utils import get_upload_folder

        upload_root = get_upload_folder()
    root, file = Path(upload_root).resolve(), Path(path).resolve()
    if root not in file.parents or not file.is_file():
        return False
    file.unlink(missing_ok=True)
    folder = file.parent
    if folder != root and not any(folder.iterdir()):
        folder.rmdir()
    return True


class UploadError(ValueError):
    """An upload the Space refuses; the message is shown to the user as is."""


@dataclass
class UploadedSample:
    """An upload on the model's grid, in the collator's sample form (layers keyed ``sentinel2_l2a`` etc.)."""

    name: str
    arrays: dict[str, np.ndarray]
    bands: dict[str, list[str]]
    metadata: dict[str, Any]

    def as_sample(self) -> dict[str, Any]:
        return {"tile_id": self.name, "arrays": self.arrays, "bands": self.bands, "caption": None}


def _band_names_from_descriptions(dataset: Any, modality: str) -> tuple[str, ...] | None:
    """The file's band descriptions when every one is a band name of ``modality``; else ``None``."""
    from modeling_geomeld.modalities import resolve

    mod, _ = resolve(modality)
    known = set(mod.band_names)
    names = tuple((d or "").strip() for d in dataset.descriptions)
    if names and all(n in known for n in names):
        return names
    return None


def validate_upload(path: str | Path, product: str, size_px: int = 128) -> UploadedSample:
    """Check ``path`` and align it onto a ``size_px`` grid at 10 m; raises ``UploadError`` with the reason."""
    import rasterio

    from dataset_scripts.align import AlignConfig, align
    from dataset_scripts.types import AnchorRequest, LayerRef, QuarantineError

    if product not in PRODUCTS.values():
        labels = ", ".join(PRODUCTS)
        raise UploadError(f"expected the product to be one of {labels}, found {product!r}")
    file = Path(path)
    if not file.is_file():
        raise UploadError("expected an uploaded file, found none")
    size_mb = file.stat().st_size / 1024**2
    if size_mb > MAX_UPLOAD_MB:
        raise UploadError(f"file too large: expected at most {MAX_UPLOAD_MB} MB, found {size_mb:.1f} MB; crop it first")
    with file.open("rb") as fh:
        head = fh.read(4)
    if head not in _TIFF_SIGNATURES:
        shown = head.decode("ascii", "replace") if head.isascii() else head.hex()
        raise UploadError(
            f"not a GeoTIFF: expected a TIFF file (signature II*/MM*), found {shown!r} at the start of {file.name}"
        )
    try:
        with rasterio.open(file) as dataset:
            bands = _band_names_from_descriptions(dataset, product)
    except rasterio.errors.RasterioError as err:
        raise UploadError(f"not a readable GeoTIFF: {str(err).replace(str(file), file.name)}") from None
    config = AlignConfig(size_px=size_px, max_cloud_cover=100.0, min_coverage=0.9, max_nodata_fraction=0.5)
    request = AnchorRequest("upload", [LayerRef(modality=product, path=str(file), bands=bands)])
    try:
        aligned = align(request, config)
    except QuarantineError as err:
        raise UploadError(_friendly(err, product).replace(str(file), file.name)) from None
    lat, lon = aligned.metadata.get("lat"), aligned.metadata.get("lon")
    if not (isinstance(lat, (int, float)) and isinstance(lon, (int, float)) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise UploadError(f"the upload's footprint has no valid centre: expected lat within -90..90 and lon within -180..180, found {lat}, {lon}")
    variant = aligned.metadata.get("s2_product")
    arrays, names = {}, {}
    for name, array in aligned.arrays.items():
        key = f"sentinel2_{variant}" if name == "sentinel2" and variant else name
        arrays[key], names[key] = array, list(aligned.bands[name])
    return UploadedSample(file.name, arrays, names, dict(aligned.metadata))


def _friendly(err: Any, product: str) -> str:
    """The builder's quarantine message, with what to do about the common cases."""
    reason, message = getattr(err, "reason", ""), str(err)
    message = message.replace("anchor 'upload', ", "")
    hints = {
        "missing_crs": "the file has no CRS: export it as a georeferenced GeoTIFF",
        "band_count_mismatch": f"wrong bands for {product}: upload all bands of the product in canonical order, "
        "or name them in the band descriptions",
        "footprint_outside": "the file is too small for the model's grid: upload a larger area",
        "corrupt_file": "the file could not be read as a raster",
    }
    hint = hints.get(reason)
    return f"{hint} ({message})" if hint else message
