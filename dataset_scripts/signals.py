"""Per-sample signals: the measurable facts captions are grounded in and users filter by.

:func:`compute_signals` returns a JSON-serialisable dict with exactly these groups (a group whose layer is
absent is ``None``; the captioning code is written against this schema):

* ``spectral``: NDVI mean / 10th / 90th percentile, NDWI (McFeeters, green-NIR), MNDWI (Xu, green-SWIR1),
  NDBI (SWIR1-NIR) and NDSI (Hall, green-SWIR1) means over valid Sentinel-2 pixels. MNDWI and NDSI share
  one formula; both keys exist because captions read them with different thresholds (water > 0, snow > 0.4).
  Reflectance is ``(value - s2_radiometric_offset) / 10000``.
* ``worldcover_fractions`` / ``dynamic_world_fractions``: registry class name -> fraction of the valid
  pixels (every class listed, zeros included, so the keys never vary).
* ``water``: ``detected`` (at least :data:`WATER_DETECTED_PERCENT` % of the tile), ``percentage`` and the
  layer it came from, in order of preference: Dynamic World (same date as Sentinel-2), JRC surface water
  (pixels that held water in at least :data:`JRC_WATER_OCCURRENCE` % of 1984-2021 observations), ESA
  WorldCover (annual), MNDWI > 0 on Sentinel-2 excluding snow (same ratio; snow is bright in the NIR). Where
  the JRC layer is present its own ``jrc_percentage`` is kept too, and with Dynamic World the consensus:
  ``agreement``, the share of pixels valid in both on which the two say the same (water or not).
* ``terrain``: elevation min/mean/max, relief, mean slope (m, degrees), the majority geomorphon landform
  and the landform fractions (:func:`geomorphons`).
* ``canopy``: mean and 90th percentile canopy height, and cover fraction (height >= 5 m, the FAO tree height).
* ``sar``: VV and VH means in dB (averaged in linear power, then converted) and their difference; the
  standard deviation of VV in dB over the tile (``vv_std_db``, texture: speckle alone gives about
  1.5-2.5 dB on an RTC product at 10 m, mixed surfaces more) and ``water_fraction``, the share of
  pixels with VV < :data:`SAR_WATER_VV_DB` dB (smooth open water reflects the pulse away; -18 dB is the
  usual fixed threshold for calm water in C-band VV, e.g. Twele et al. 2016 use about -18 to -20 dB).
* ``notes``: why a group is missing where its layer exists but cannot be used (all-NaN indices, ...).
* ``spectral_cover``: fractions of the valid Sentinel-2 pixels in six disjoint spectral classes, each pixel
  given the first that applies (:func:`spectral_cover`): ``snow`` (NDSI > 0.4 and NIR > 0.11, Hall et al.
  1995), ``water`` (MNDWI > 0, Xu 2006), ``vegetation`` (NDVI >= 0.3: bare soil reads 0.05-0.2 and sparse
  cover 0.2-0.3, Tucker 1979 / the USGS NDVI ranges), ``bare`` (NDVI < 0.2 and BSI > 0, Rikimaru et al.
  2002), ``built`` (NDVI < 0.2 and NDBI > 0, Zha et al. 2003) and ``other`` (the rest: 0.2 <= NDVI < 0.3,
  or dark unvegetated pixels), plus ``valid_fraction``. NDBI is also positive on dry bare soil, so the two
  unvegetated classes are told apart only by the order (BSI first); captions therefore treat bare + built
  as one measured share (see the verifier). ``None`` with a note when no optical layer or no valid pixel.
* ``snow_fraction``: Dynamic World's snow class, else Sentinel-2 NDSI > 0.4 with NIR > 0.11 (Hall et al.).
* ``cloud_fraction``: the aligner's footprint estimate (or the scene cover / 100 where metadata gave it).
* ``place``: country, ISO code, region (first-level division) and nearest named place (GeoNames cities with
  population >= 1000, shipped offline by the ``reverse-geocode`` package), with the distance in km.
* ``date``: ISO datetime, month, meteorological season by hemisphere (``None`` between the tropics, where
  temperate seasons do not describe the year; captions then say nothing of the season) and the S1 /
  Dynamic World offsets in days.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from modeling_geomeld.modalities import MODALITIES

from .align import parse_datetime
from .types import AlignedSample

WATER_DETECTED_PERCENT = 0.5
#: a JRC pixel counts as water when it held water in at least this % of observations (the "permanent" half)
JRC_WATER_OCCURRENCE = 50.0
TROPIC_LATITUDE = 23.44
CANOPY_TREE_HEIGHT_M = 5.0
#: spectral cover thresholds (literature values, see the module docstring)
NDSI_SNOW, NIR_SNOW = 0.4, 0.11
MNDWI_WATER = 0.0
NDVI_VEGETATION, NDVI_UNVEGETATED = 0.3, 0.2
BSI_BARE, NDBI_BUILT = 0.0, 0.0
SPECTRAL_CLASSES = ("snow", "water", "vegetation", "bare", "built", "other")
SAR_WATER_VV_DB = -18.0

#: geomorphon landforms, in the order of their codes 1..10 (Jasiewicz & Stepinski 2013)
LANDFORMS = (
    "flat",
    "summit",
    "ridge",
    "shoulder",
    "spur",
    "slope",
    "hollow",
    "footslope",
    "valley",
    "depression",
)
_FL, _PK, _RI, _SH, _SP, _SL, _HL, _FS, _VL, _PT = range(1, 11)
# Landform by (number of lower directions "-", number of higher directions "+"), the table of
# r.geomorphon (GRASS GIS); entries where minus + plus > 8 cannot occur.
_LOOKUP = np.array(
    [
        # plus: 0    1    2    3    4    5    6    7    8
        [_FL, _FL, _FL, _FS, _FS, _VL, _VL, _VL, _PT],  # minus 0
        [_FL, _FL, _FS, _FS, _FS, _VL, _VL, _VL, 0],  # minus 1
        [_FL, _SH, _SL, _SL, _HL, _HL, _VL, 0, 0],  # minus 2
        [_SH, _SH, _SL, _SL, _SL, _HL, 0, 0, 0],  # minus 3
        [_SH, _SH, _SP, _SL, _SL, 0, 0, 0, 0],  # minus 4
        [_RI, _RI, _SP, _SP, 0, 0, 0, 0, 0],  # minus 5
        [_RI, _RI, _RI, 0, 0, 0, 0, 0, 0],  # minus 6
        [_RI, _RI, 0, 0, 0, 0, 0, 0, 0],  # minus 7
        [_PK, 0, 0, 0, 0, 0, 0, 0, 0],  # minus 8
    ],
    dtype=np.uint8,
)
_DIRECTIONS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


# -- geomorphons ----------------------------------------------------------------------------------------------
def geomorphons(
    elevation: np.ndarray, gsd: float, search_m: float = 300.0, flat_deg: float = 1.0
) -> np.ndarray:
    """Landform code (1..10, see :data:`LANDFORMS`; 0 where elevation is missing) per pixel.

    A simplified geomorphon (Jasiewicz & Stepinski 2013): along each of the 8 compass directions, look
    out to ``search_m`` metres and take the steepest elevation angle up (max over distances) and the
    steepest angle down (min over distances). Their sum says which way the terrain goes in that
    direction: above ``+flat_deg`` the direction is higher ("+"), below ``-flat_deg`` lower ("-"), else
    level. The counts of "+" and "-" over the 8 directions pick the landform from r.geomorphon's table
    (8 lower = summit, 8 higher = depression, all level = flat, ...). Simplifications: no line-of-sight
    skip distance and no distance-dependent flatness; beyond the tile edge a direction has fewer samples.
    Vectorised over pixels: 8 x ``search_m / gsd`` array shifts.
    """
    z = elevation.astype(np.float64)
    steps = max(1, round(search_m / gsd))
    h, w = z.shape
    padded = np.full((h + 2 * steps, w + 2 * steps), np.nan)
    padded[steps : steps + h, steps : steps + w] = z
    plus = np.zeros((h, w), dtype=np.int64)
    minus = np.zeros((h, w), dtype=np.int64)
    flat = math.radians(flat_deg)
    for dy, dx in _DIRECTIONS:
        up = np.full((h, w), -np.inf)
        down = np.full((h, w), np.inf)
        step_m = gsd * math.hypot(dy, dx)
        for k in range(1, steps + 1):
            other = padded[steps + k * dy : steps + k * dy + h, steps + k * dx : steps + k * dx + w]
            gradient = (other - z) / (k * step_m)  # NaN outside the tile; arctan is monotonic, so
            np.fmax(up, gradient, out=up)  # extremes of the gradient give the extreme angles;
            np.fmin(down, gradient, out=down)  # fmax / fmin ignore NaN
        seen = np.isfinite(up)  # a direction with no sample (tile corner) counts as level
        balance = np.zeros((h, w))
        balance[seen] = np.arctan(up[seen]) + np.arctan(down[seen])
        plus += balance > flat
        minus += balance < -flat
    forms = _LOOKUP[minus, plus]
    forms[~np.isfinite(z)] = 0
    return forms


# -- groups ---------------------------------------------------------------------------------------------------
def _band(sample: AlignedSample, modality: str, name: str) -> np.ndarray | None:
    bands = sample.bands.get(modality, ())
    if modality not in sample.arrays or name not in bands:
        return None
    return sample.arrays[modality][list(bands).index(name)].astype(np.float64)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (a - b) / (a + b)
    out[~np.isfinite(out)] = np.nan
    return out


def _mean(x: np.ndarray) -> float | None:
    return round(float(np.nanmean(x)), 4) if np.isfinite(x).any() else None


def _reflectance(sample: AlignedSample) -> dict[str, np.ndarray] | None:
    offset = float(sample.metadata.get("s2_radiometric_offset") or 0.0)
    out = {}
    for name in ("B03", "B04", "B08", "B11"):
        band = _band(sample, "sentinel2", name)
        if band is None:
            return None
        out[name] = (band - offset) / 10000.0
    blue = _band(sample, "sentinel2", "B02")  # only the bare soil index needs it
    if blue is not None:
        out["B02"] = (blue - offset) / 10000.0
    return out


def spectral_cover(refl: Mapping[str, np.ndarray]) -> tuple[dict[str, float] | None, str | None]:
    """Fractions of six disjoint spectral classes over the valid pixels (rules in the module docstring).

    Returns ``(fractions, None)`` or ``(None, reason)`` when no pixel has finite indices.
    """
    ndvi = _ratio(refl["B08"], refl["B04"])
    mndwi = _ratio(refl["B03"], refl["B11"])
    ndbi = _ratio(refl["B11"], refl["B08"])
    valid = np.isfinite(ndvi) & np.isfinite(mndwi) & np.isfinite(ndbi)
    if not valid.any():
        return None, "spectral_cover: no pixel with finite NDVI, MNDWI and NDBI"
    if "B02" in refl:
        bsi = _ratio(refl["B11"] + refl["B04"], refl["B08"] + refl["B02"])
    else:
        bsi = np.full(ndvi.shape, np.nan)  # without blue no pixel is called bare; NDBI alone decides
    with np.errstate(invalid="ignore"):
        snow = (mndwi > NDSI_SNOW) & (refl["B08"] > NIR_SNOW)
        water = ~snow & (mndwi > MNDWI_WATER)
        free = valid & ~snow & ~water
        vegetation = free & (ndvi >= NDVI_VEGETATION)
        unvegetated = free & (ndvi < NDVI_UNVEGETATED)
        bare = unvegetated & (bsi > BSI_BARE)
        built = unvegetated & ~bare & (ndbi > NDBI_BUILT)
    masks = {
        "snow": snow & valid,
        "water": water & valid,
        "vegetation": vegetation,
        "bare": bare,
        "built": built,
    }
    total = int(valid.sum())
    out = {name: round(float(mask.sum()) / total, 4) for name, mask in masks.items()}
    out["other"] = round(max(0.0, 1.0 - sum(out.values())), 4)
    out["valid_fraction"] = round(total / valid.size, 4)
    return out, None


def _spectral(refl: Mapping[str, np.ndarray] | None) -> dict[str, float | None] | None:
    if refl is None or not np.isfinite(_ratio(refl["B08"], refl["B04"])).any():
        return None
    ndvi = _ratio(refl["B08"], refl["B04"])
    finite = np.isfinite(ndvi)
    p10, p90 = np.percentile(ndvi[finite], [10, 90]) if finite.any() else (np.nan, np.nan)
    mndwi = _ratio(refl["B03"], refl["B11"])
    return {
        "ndvi_mean": _mean(ndvi),
        "ndvi_p10": round(float(p10), 4) if finite.any() else None,
        "ndvi_p90": round(float(p90), 4) if finite.any() else None,
        "ndwi_mean": _mean(_ratio(refl["B03"], refl["B08"])),
        "mndwi_mean": _mean(mndwi),
        "ndbi_mean": _mean(_ratio(refl["B11"], refl["B08"])),
        "ndsi_mean": _mean(mndwi),  # same formula as MNDWI (green vs SWIR-1); see the module docstring
    }


def class_fractions(sample: AlignedSample, modality: str) -> dict[str, float] | None:
    """Registry class name -> fraction of the layer's valid (non no-data) pixels; ``None`` when absent."""
    if modality not in sample.arrays:
        return None
    mod = MODALITIES[modality]
    indices = mod.codes_to_indices(sample.arrays[modality][0])
    valid = indices >= 0
    counts = np.bincount(indices[valid], minlength=mod.num_classes)
    total = max(int(valid.sum()), 1)
    return {c.name: round(float(counts[c.index]) / total, 4) for c in mod.classes}


def _water(
    sample: AlignedSample,
    fractions: Mapping[str, Mapping[str, float] | None],
    refl: Mapping[str, np.ndarray] | None,
) -> dict[str, Any] | None:
    dw, wc = fractions.get("dynamic_world"), fractions.get("esa_worldcover")
    occurrence = _band(sample, "jrc_water", "occurrence")
    jrc_water = None
    if occurrence is not None and np.isfinite(occurrence).any():
        jrc_water = np.where(np.isfinite(occurrence), occurrence >= JRC_WATER_OCCURRENCE, np.nan)
    extra: dict[str, Any] = {}
    if jrc_water is not None:
        extra["jrc_percentage"] = round(100.0 * float(np.nanmean(jrc_water)), 2)
        dw_water = _dynamic_world_water(sample)
        if dw_water is not None:
            both = np.isfinite(jrc_water) & np.isfinite(dw_water)
            if both.any():
                extra["agreement"] = round(float((jrc_water[both] == dw_water[both]).mean()), 4)
    if dw is not None:
        pct, source = 100.0 * dw["water"], "dynamic_world"
    elif jrc_water is not None:
        pct, source = extra["jrc_percentage"], "jrc"
    elif wc is not None:
        pct, source = 100.0 * wc["permanent water bodies"], "esa_worldcover"
    elif refl is not None:
        mndwi = _ratio(refl["B03"], refl["B11"])
        finite = np.isfinite(mndwi) & np.isfinite(refl["B08"])
        # snow shares MNDWI's signature (it is the same ratio as NDSI); water is dark in the NIR, snow is not
        water = (mndwi > 0) & ~_snow_mask(refl)
        if not finite.any():
            return None  # no valid pixel measures anything: no water figure rather than 0 %
        pct, source = 100.0 * float(water[finite].mean()), "mndwi"
    else:
        return None
    pct = round(min(max(pct, 0.0), 100.0), 2)
    return {"detected": bool(pct >= WATER_DETECTED_PERCENT), "percentage": pct, "source": source, **extra}


def _dynamic_world_water(sample: AlignedSample) -> np.ndarray | None:
    """1.0 where Dynamic World says water, 0.0 where it says another class, NaN where it has no data."""
    if "dynamic_world" not in sample.arrays:
        return None
    mod = MODALITIES["dynamic_world"]
    indices = mod.codes_to_indices(sample.arrays["dynamic_world"][0])
    water = next(c.index for c in mod.classes if c.name == "water")
    return np.where(indices >= 0, indices == water, np.nan)


def _terrain(sample: AlignedSample) -> dict[str, Any] | None:
    elevation = _band(sample, "dem", "elevation")
    if elevation is None or not np.isfinite(elevation).any():
        return None
    slope = _band(sample, "dem", "slope")
    gsd = float(sample.metadata.get("gsd") or 10.0)
    forms = geomorphons(elevation, gsd)
    counts = np.bincount(forms[forms > 0].ravel(), minlength=len(LANDFORMS) + 1)[1:]
    total = max(int(counts.sum()), 1)
    lo, hi = float(np.nanmin(elevation)), float(np.nanmax(elevation))
    return {
        "elevation_min": round(lo, 2),
        "elevation_mean": round(float(np.nanmean(elevation)), 2),
        "elevation_max": round(hi, 2),
        "relief": round(hi - lo, 2),
        "slope_mean": _mean(slope) if slope is not None else None,
        "terrain_class": LANDFORMS[int(np.argmax(counts))],
        "geomorphon_fractions": {
            name: round(float(n) / total, 4) for name, n in zip(LANDFORMS, counts, strict=True)
        },
    }


def _canopy(sample: AlignedSample) -> dict[str, float | None] | None:
    height = _band(sample, "canopy_height", "height")
    if height is None or not np.isfinite(height).any():
        return None
    valid = height[np.isfinite(height)]
    return {
        "height_mean": round(float(valid.mean()), 2),
        "height_p90": round(float(np.percentile(valid, 90)), 2),
        "cover_fraction": round(float((valid >= CANOPY_TREE_HEIGHT_M).mean()), 4),
    }


def _db_mean(sample: AlignedSample, pol: str) -> float | None:
    for name in (pol, f"{pol}_asc", f"{pol}_des"):
        band = _band(sample, "sentinel1", name)
        if band is not None and np.isfinite(band).any():
            linear = np.power(10.0, band[np.isfinite(band)] / 10.0)
            return round(10.0 * math.log10(float(linear.mean())), 3)
    return None


def _vv_db(sample: AlignedSample) -> np.ndarray | None:
    for name in ("VV", "VV_asc", "VV_des"):
        band = _band(sample, "sentinel1", name)
        if band is not None and np.isfinite(band).any():
            return band[np.isfinite(band)]
    return None


def _sar(sample: AlignedSample) -> dict[str, float | None] | None:
    vv, vh = _db_mean(sample, "VV"), _db_mean(sample, "VH")
    if vv is None and vh is None:
        return None
    diff = round(vv - vh, 3) if vv is not None and vh is not None else None
    pixels = _vv_db(sample)
    return {
        "vv_mean_db": vv,
        "vh_mean_db": vh,
        "vv_minus_vh_db": diff,
        "vv_std_db": round(float(pixels.std()), 3) if pixels is not None else None,
        "water_fraction": round(float((pixels < SAR_WATER_VV_DB).mean()), 4) if pixels is not None else None,
    }


def _snow(dw: Mapping[str, float] | None, refl: Mapping[str, np.ndarray] | None) -> float | None:
    if dw is not None:
        return round(float(dw["snow and ice"]), 4)
    if refl is None:
        return None
    finite = np.isfinite(_ratio(refl["B03"], refl["B11"])) & np.isfinite(refl["B08"])
    if not finite.any():
        return None
    return round(float(_snow_mask(refl)[finite].mean()), 4)


def _snow_mask(refl: Mapping[str, np.ndarray]) -> np.ndarray:
    """Snow pixels by Hall et al.'s rule: NDSI > 0.4 and NIR reflectance > 0.11 (water stays below it)."""
    with np.errstate(invalid="ignore"):
        return (_ratio(refl["B03"], refl["B11"]) > NDSI_SNOW) & (refl["B08"] > NIR_SNOW)


def _cloud(metadata: Mapping[str, Any]) -> float | None:
    if metadata.get("cloud_fraction") is not None:
        return float(metadata["cloud_fraction"])
    if metadata.get("cloud_cover") is not None:
        return round(float(metadata["cloud_cover"]) / 100.0, 4)
    return None


# -- place and date -------------------------------------------------------------------------------------------
def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, a)))


def place(lat: float, lon: float) -> dict[str, Any]:
    """Country, region and nearest named place from the offline GeoNames gazetteer of ``reverse-geocode``."""
    import reverse_geocode

    hit = reverse_geocode.get((lat, lon))
    return {
        "country": hit.get("country"),
        "country_code": hit.get("country_code"),
        "region": hit.get("state"),
        "nearest_place": hit.get("city"),
        "distance_km": round(_haversine_km(lat, lon, float(hit["latitude"]), float(hit["longitude"])), 2),
    }


def season(month: int, lat: float) -> str | None:
    """Meteorological season (DJF winter in the north), flipped south of the equator; ``None`` in the tropics."""
    if abs(lat) < TROPIC_LATITUDE:
        return None
    northern = (
        "winter",
        "winter",
        "spring",
        "spring",
        "spring",
        "summer",
        "summer",
        "summer",
        "autumn",
        "autumn",
        "autumn",
        "winter",
    )
    flip = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}
    name = northern[month - 1]
    return name if lat >= 0 else flip[name]


def _date(metadata: Mapping[str, Any]) -> dict[str, Any]:
    when = parse_datetime(metadata.get("datetime"))
    lat = metadata.get("lat")
    return {
        "datetime": metadata.get("datetime"),
        "month": when.month if when else None,
        "season": season(when.month, float(lat)) if when and lat is not None else None,
        "s1_offset_days": metadata.get("s1_offset_days"),
        "dynamic_world_offset_days": metadata.get("dynamic_world_offset_days"),
    }


def compute_signals(sample: AlignedSample) -> dict[str, Any]:
    """All signal groups of one aligned sample (schema in the module docstring); JSON-serialisable."""
    refl = _reflectance(sample)
    fractions = {name: class_fractions(sample, name) for name in ("esa_worldcover", "dynamic_world")}
    lat, lon = sample.metadata.get("lat"), sample.metadata.get("lon")
    notes: list[str] = []
    cover = None
    if refl is not None:
        cover, reason = spectral_cover(refl)
        if reason:
            notes.append(reason)
    elif "sentinel2" in sample.arrays:
        notes.append("spectral: Sentinel-2 lacks one of B03, B04, B08, B11")
    spectral = _spectral(refl)
    if refl is not None and spectral is None:
        notes.append("spectral: all indices are NaN (no valid Sentinel-2 pixel)")
    return {
        "spectral": spectral,
        "spectral_cover": cover,
        "worldcover_fractions": fractions["esa_worldcover"],
        "dynamic_world_fractions": fractions["dynamic_world"],
        "water": _water(sample, fractions, refl),
        "terrain": _terrain(sample),
        "canopy": _canopy(sample),
        "sar": _sar(sample),
        "snow_fraction": _snow(fractions["dynamic_world"], refl),
        "cloud_fraction": _cloud(sample.metadata),
        "place": place(float(lat), float(lon)) if lat is not None and lon is not None else None,
        "date": _date(sample.metadata),
        "notes": notes,
    }


def signal_columns(signals: Mapping[str, Any]) -> dict[str, Any]:
    """The flat, typed filter columns the writer stores next to the JSON signals (see ``writer.SCHEMA``)."""
    spectral = signals.get("spectral") or {}
    terrain = signals.get("terrain") or {}
    water = signals.get("water") or {}
    place_ = signals.get("place") or {}
    return {
        "country_code": place_.get("country_code"),
        "ndvi_mean": spectral.get("ndvi_mean"),
        "water_percentage": water.get("percentage"),
        "elevation_mean": terrain.get("elevation_mean"),
        "terrain_class": terrain.get("terrain_class"),
        "snow_fraction": signals.get("snow_fraction"),
        "cloud_fraction": signals.get("cloud_fraction"),
    }
