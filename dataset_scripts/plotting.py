"""Pictures of GeoMeld samples: true and false colour Sentinel-2, a Sentinel-1 VV/VH composite, DEM hillshade,
canopy height, and land-cover maps in their products' legend colours.

Every `render_*` function takes an array with its band names and returns an (H, W, 3) uint8 image, so the
Space, the demo and notebooks share one implementation; `plot_sample` lays every present layer side by side
with legends. Bands are picked by name, never by position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modeling_geomeld.modalities import get_modality, reorder_bands


def stretch_limits(band: np.ndarray, low: float = 2.0, high: float = 98.0) -> tuple[float, float] | None:
    """The values a percentile stretch maps to 0 and 1 (what a colour bar of the picture must say), or None."""
    finite = np.asarray(band, dtype=np.float32)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return None
    lo, hi = np.percentile(finite, [low, high])
    return float(lo), float(hi)


def _stretch(x: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Per-channel percentile stretch to 0..1, ignoring NaN."""
    x = x.astype(np.float32)
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        limits = stretch_limits(x[i], low, high)
        if limits is None:
            continue
        lo, hi = limits
        out[i] = np.clip((x[i] - lo) / max(hi - lo, 1e-6), 0, 1)
    return np.nan_to_num(out)


def sentinel1_channels(array: np.ndarray, bands: Sequence[str]) -> dict[str, np.ndarray]:
    """The three channels of the S1 composite in dB by colour: red VV, green VH, blue VV - VH."""
    vv_name = next((b for b in bands if b.startswith("VV")), None)
    vh_name = next((b for b in bands if b.startswith("VH")), None)
    if vv_name is None or vh_name is None:
        raise ValueError(f"a Sentinel-1 composite needs VV and VH bands, got {list(bands)}")
    vv, vh = (reorder_bands(array, bands, [n], modality="sentinel1")[0].astype(np.float32) for n in (vv_name, vh_name))
    return {"VV": vv, "VH": vh, "VV − VH": vv - vh}


def colour_scales(arrays: Mapping[str, np.ndarray], bands: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """What each continuous picture's colours mean: name, unit, colour map or channel colour, value range.

    The ranges are the ones the ``render_*`` functions stretch to, so a colour bar drawn from them is exact.
    """
    import matplotlib

    def ramp(cmap: str, n: int = 7) -> list[str]:
        return [matplotlib.colors.to_hex(matplotlib.colormaps[cmap](i / (n - 1))) for i in range(n)]

    scales: list[dict[str, Any]] = []
    if "dem" in arrays:
        elev = reorder_bands(arrays["dem"], bands["dem"], ["elevation"], modality="dem")[0]
        limits = stretch_limits(elev)
        if limits:
            scales.append({"name": "DEM elevation", "unit": "m", "colours": ramp("terrain"), "range": limits})
    if "sentinel1" in arrays:
        for (name, channel), colour in zip(sentinel1_channels(arrays["sentinel1"], bands["sentinel1"]).items(), ("#ff0000", "#00ff00", "#0000ff"), strict=True):
            limits = stretch_limits(channel)
            if limits:
                scales.append({"name": f"Sentinel-1 {name}", "unit": "dB", "colours": ["#000000", colour], "range": limits})
    if "canopy_height" in arrays:
        scales.append({"name": "Canopy height", "unit": "m", "colours": ramp("YlGn"), "range": (0.0, 35.0)})
    if "jrc_water" in arrays:
        scales.append({"name": "JRC water occurrence", "unit": "%", "colours": ramp("Blues"), "range": (0.0, 100.0)})
    return scales


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) in 0..1 -> (H, W, 3) uint8."""
    return (np.clip(rgb, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)


def render_sentinel2(array: np.ndarray, bands: Sequence[str], composite: str = "true") -> np.ndarray:
    """True colour (B04, B03, B02) or false colour (B08, B04, B03: vegetation red) with a 2-98 % stretch."""
    picks = {"true": ("B04", "B03", "B02"), "false": ("B08", "B04", "B03"), "swir": ("B12", "B8A", "B04")}
    if composite not in picks:
        raise ValueError(f"composite must be one of {list(picks)}, got {composite!r}")
    rgb = reorder_bands(array, bands, picks[composite], modality="sentinel2")
    return _to_uint8(_stretch(rgb))


def render_sentinel1(array: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """VV (red), VH (green), VV - VH (blue) in dB, a common SAR composite: water dark, vegetation green."""
    return _to_uint8(_stretch(np.stack(list(sentinel1_channels(array, bands).values()))))


def hillshade(elevation: np.ndarray, gsd: float = 10.0, azimuth: float = 315.0, altitude: float = 45.0) -> np.ndarray:
    """Lambertian hillshade (0..1) of an elevation grid in metres (Horn-style gradients by central differences)."""
    z = np.nan_to_num(elevation.astype(np.float32), nan=float(np.nanmean(elevation)) if np.isfinite(elevation).any() else 0.0)
    dy, dx = np.gradient(z, gsd)
    slope = np.arctan(np.hypot(dx, dy))
    aspect = np.arctan2(-dx, dy)
    az, alt = np.radians(azimuth), np.radians(altitude)
    shade = np.sin(alt) * np.cos(slope) + np.cos(alt) * np.sin(slope) * np.cos(az - aspect)
    return np.clip(shade, 0, 1)


def render_dem(array: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """Hillshade blended with a terrain colour ramp of the elevation band."""
    import matplotlib

    elev = reorder_bands(array, bands, ["elevation"], modality="dem")[0].astype(np.float32)
    colours = matplotlib.colormaps["terrain"](_stretch(elev[None])[0])[..., :3].transpose(2, 0, 1)
    return _to_uint8(colours * (0.35 + 0.65 * hillshade(elev)[None]))


def render_canopy_height(array: np.ndarray, bands: Sequence[str], max_height: float = 35.0) -> np.ndarray:
    import matplotlib

    h = reorder_bands(array, bands, ["height"], modality="canopy_height")[0].astype(np.float32)
    rgb = matplotlib.colormaps["YlGn"](np.clip(np.nan_to_num(h) / max_height, 0, 1))[..., :3]
    return (rgb * 255).round().astype(np.uint8)


def render_water_occurrence(array: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """JRC water occurrence, 0 % white to 100 % deep blue; no data grey."""
    import matplotlib

    occ = reorder_bands(array, bands, ["occurrence"], modality="jrc_water")[0].astype(np.float32)
    rgb = matplotlib.colormaps["Blues"](np.clip(np.nan_to_num(occ) / 100.0, 0, 1))[..., :3]
    rgb[~np.isfinite(occ)] = 0.5
    return (rgb * 255).round().astype(np.uint8)


def render_classes(codes: np.ndarray, modality: str) -> np.ndarray:
    """A class map (stored codes) in the product's legend colours; no-data black."""
    mod = get_modality(modality)
    if not mod.is_categorical:
        raise ValueError(f"{modality} is not a class map")
    lut = np.zeros((256, 3), dtype=np.uint8)
    for c in mod.classes:
        lut[c.code] = [int(c.color[i : i + 2], 16) for i in (1, 3, 5)]
    flat = np.asarray(codes).squeeze()
    return lut[np.clip(np.nan_to_num(flat).astype(np.int64), 0, 255)]


def legend(modality: str, codes: np.ndarray | None = None) -> list[tuple[str, str]]:
    """(class name, colour) pairs, restricted to the classes present in `codes` when given."""
    mod = get_modality(modality)
    present = None if codes is None else set(np.unique(codes).tolist())
    return [(c.name, c.color) for c in mod.classes if present is None or c.code in present]


_DISPLAY = {"dynamic_world": "Dynamic World", "esa_worldcover": "ESA WorldCover"}


def render_layer(modality: str, array: np.ndarray, bands: Sequence[str]) -> dict[str, np.ndarray]:
    """Every picture of one layer: name -> (H, W, 3) uint8."""
    if modality == "sentinel2":
        out = {"Sentinel-2 true colour": render_sentinel2(array, bands, "true")}
        if "B08" in bands:
            out["Sentinel-2 false colour (NIR)"] = render_sentinel2(array, bands, "false")
        return out
    if modality == "sentinel1":
        return {"Sentinel-1 VV/VH": render_sentinel1(array, bands)}
    if modality == "dem":
        return {"DEM hillshade": render_dem(array, bands)}
    if modality == "canopy_height":
        return {"Canopy height": render_canopy_height(array, bands)}
    if modality == "jrc_water":
        return {"JRC water occurrence": render_water_occurrence(array, bands)}
    if get_modality(modality).is_categorical:
        return {_DISPLAY.get(modality, modality): render_classes(array, modality)}
    if modality == "naip":
        return {"NAIP": _to_uint8(_stretch(reorder_bands(array, bands, ["R", "G", "B"], modality="naip")))}
    raise ValueError(f"no rendering for modality {modality!r}")


def plot_sample(
    arrays: Mapping[str, np.ndarray],
    bands: Mapping[str, Sequence[str]],
    title: str = "",
    path: str | Path | None = None,
) -> Any:
    """A matplotlib figure with every present layer side by side (legends for class maps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    panels: list[tuple[str, np.ndarray, str | None]] = []
    for modality, array in arrays.items():
        for name, image in render_layer(modality, array, bands[modality]).items():
            panels.append((name, image, modality if get_modality(modality).is_categorical else None))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), dpi=100, squeeze=False)
    for ax, (name, image, categorical) in zip(axes[0], panels, strict=True):
        ax.imshow(image)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        if categorical:
            handles = [Patch(color=c, label=n) for n, c in legend(categorical, arrays[categorical])]
            ax.legend(handles=handles, fontsize=6, loc="lower center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
    return fig
