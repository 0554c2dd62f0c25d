"""Orchestrator: one sample's signals and metadata -> a fact sheet of typed facts with provenance.

Every caption claim is checked against a :class:`Fact`: a value, its unit, and where it came from (the
layer and the statistic). Captioners write from the sheet, the verifier checks against it, and the
evaluator's fallback score counts how many of the sheet's salient facts a caption covers, so the sheet
is the single source of truth about a tile.

Inputs are the builder's signals dict (:func:`dataset_scripts.signals.compute_signals`, schema in the
module docstring of :mod:`dataset_scripts.captions`), the sample's metadata (``lat``, ``lon``, ...) and,
optionally, a :class:`WaterLayout` measured on the land-cover array, which the derived shoreline and
coastal facts need (signals are tile-wide statistics and say nothing about *where* the water is).

Derived facts and their rules (all thresholds are module constants):

* ``terrain.relief_class``: flat if relief < 30 m and mean slope < 3 deg; gentle if relief < 100 m and
  slope < 6 deg; hilly if relief < 400 m and slope < 15 deg; else mountainous. A 2-3 km tile of the
  Danish plain is flat, a Chilean piedmont with 150 m of relief is hilly.
* ``elevation.class``: lowland below 300 m mean elevation, highland at 800 m and above, else upland.
* ``water.shoreline``: the land-cover water mask covers 5-95 % of the tile, one half of the tile (north,
  south, west or east) holds at least 35 percentage points more water than the opposite half, and the
  water touches that side's edge along at least half of it: open water on one side, land on the other.
* ``water.coastal``: a shoreline whose land reaches sea level (DEM minimum <= 10 m); an inland lake shore
  sits higher. Without a DEM the coastal fact is left out (claims about a coast are then unverifiable).
* ``greenness.state``: lush if the NDVI 90th percentile >= 0.6, sparse if it is < 0.4, else moderate;
  the 90th percentile rather than the mean because water and snow pull the mean down on lush tiles.
* ``sar.character``: dark if mean VV < -15 dB (smooth water, wet snow, calm surfaces), bright if
  > -7 dB (buildings, rough terrain), else moderate.
* ``sar.texture``: uniform if the VV standard deviation over the tile is <= :data:`SAR_UNIFORM_STD_DB`
  (speckle alone), varied from :data:`SAR_VARIED_STD_DB` (land and water, fields and towns), else mixed.
  ``sar.water_percentage``: pixels with VV < -18 dB (calm open water); a water source only where no
  optical or product water measure exists (dark tarmac, dry sand and radar shadow read dark too).

Sources beyond the builder's signals:

* ``cover.spectral.*``: the spectral classes of :func:`dataset_scripts.signals.spectral_cover` (vegetation,
  water, snow, bare, built, other), always listed; salient (the captioner's map) only when no land-cover
  product is present: products win where present, and the verifier accepts a claim any source supports.
* ``osm.tag.<key>=<value>``: the release's ``osm_tags`` (:mod:`.osm`); ``osm.tag_count`` how many there are.
* ``terrain.class`` from the release's ``terrain_class`` (its geomorphon classification) where the sample
  has no DEM to compute one, and ``water.*`` from the release's ``water_detected`` / ``water_percentage``
  (its Dynamic World + JRC consensus) where no layer measures water.
* ``notes`` (:attr:`FactSheet.notes`): why a source was left out (refused ``osm_tags``, all-NaN indices,
  no optical layer); they travel with the audit record.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modeling_geomeld.modalities import get_modality

from .lexicon import CLASS_TO_CONCEPT, CONCEPTS, MONTHS, OSM_FEATURES
from .osm import OsmTagError, parse_osm_tags

RELIEF_FLAT_M, RELIEF_GENTLE_M, RELIEF_HILLY_M = 30.0, 100.0, 400.0
SLOPE_FLAT_DEG, SLOPE_GENTLE_DEG, SLOPE_HILLY_DEG = 3.0, 6.0, 15.0
LOWLAND_MAX_M, HIGHLAND_MIN_M = 300.0, 800.0
SHORE_MIN_SHARE, SHORE_MAX_SHARE, SHORE_ASYMMETRY, SHORE_EDGE_CONTACT = 0.05, 0.95, 0.35, 0.5
COAST_MAX_ELEVATION_M = 10.0
LUSH_NDVI_P90, SPARSE_NDVI_P90 = 0.6, 0.4
SAR_DARK_DB, SAR_BRIGHT_DB = -15.0, -7.0
SAR_UNIFORM_STD_DB, SAR_VARIED_STD_DB = 3.0, 4.0
#: land-cover layers in order of preference; ``spectral`` (Sentinel-2 index classes) is the fallback
COVER_LAYERS: tuple[str, ...] = ("dynamic_world", "esa_worldcover", "spectral")
SPECTRAL_CLASSES: tuple[str, ...] = ("vegetation", "water", "snow", "bare", "built", "other")
SIDES: tuple[str, ...] = ("north", "south", "west", "east")
OPPOSITE = {"north": "south", "south": "north", "west": "east", "east": "west"}

Value = float | int | str | bool


@dataclass(frozen=True)
class Fact:
    """One typed fact about a tile.

    Attributes:
        name: dotted key, e.g. ``"cover.dynamic_world.trees"``, ``"elevation.mean"``, ``"water.coastal"``.
        value: the measured or derived value.
        unit: ``"%"``, ``"m"``, ``"deg"``, ``"dB"``, ``"km"``, ``"index"`` or ``""`` for words and flags.
        layer: where it comes from: a registry modality, ``"jrc"``, ``"metadata"``, ``"gazetteer"``, or
            ``"derived"`` for a rule over other facts.
        statistic: how it was computed (``"share of valid pixels"``, ``"mean"``, the rule of a derived fact).
        salience: 0..1, how much a person looking at the tile would notice it; captioners mention salient
            facts first and the evaluator's coverage score weighs facts by it.
    """

    name: str
    value: Value
    unit: str
    layer: str
    statistic: str
    salience: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "layer": self.layer,
            "statistic": self.statistic,
            "salience": self.salience,
        }


@dataclass
class FactSheet:
    """All facts about one tile, by name."""

    tile_id: str
    facts: dict[str, Fact] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, fact: Fact) -> None:
        self.facts[fact.name] = fact

    def get(self, name: str) -> Fact | None:
        return self.facts.get(name)

    def value(self, name: str, default: Any = None) -> Any:
        fact = self.facts.get(name)
        return default if fact is None else fact.value

    def __contains__(self, name: str) -> bool:
        return name in self.facts

    def __iter__(self) -> Iterator[Fact]:
        return iter(self.facts.values())

    def with_prefix(self, prefix: str) -> list[Fact]:
        return [f for f in self.facts.values() if f.name.startswith(prefix)]

    def cover_layers(self) -> list[str]:
        """Land-cover layers present, the primary (the one captions describe) first."""
        layers = {f.name.split(".")[1] for f in self.with_prefix("cover.")}
        return [layer for layer in COVER_LAYERS if layer in layers]

    def product_layers(self) -> list[str]:
        """Land-cover products present (Dynamic World, WorldCover), without the spectral fallback."""
        return [layer for layer in self.cover_layers() if layer != "spectral"]

    def cover(self, layer: str | None = None) -> dict[str, float]:
        """``{concept: percent}`` of one land-cover layer (default: the primary one); empty when absent."""
        layers = self.cover_layers()
        layer = layer or (layers[0] if layers else None)
        if layer is None:
            return {}
        return {f.name.split(".")[2]: float(f.value) for f in self.with_prefix(f"cover.{layer}.")}

    def salient(self, top: int = 8) -> list[Fact]:
        """The most salient facts, most salient first (ties broken by name, for determinism)."""
        ranked = sorted((f for f in self if f.salience > 0), key=lambda f: (-f.salience, f.name))
        return ranked[:top]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tile_id": self.tile_id,
            "facts": [f.to_dict() for f in self.facts.values()],
            "notes": list(self.notes),
        }

    def to_text(self) -> str:
        """The sheet as plain lines, the only thing a language-model captioner is shown."""
        lines = []
        for f in sorted(self, key=lambda f: (-f.salience, f.name)):
            value = f"{f.value:.1f}" if isinstance(f.value, float) else str(f.value)
            lines.append(f"- {f.name}: {value}{(' ' + f.unit) if f.unit else ''} ({f.layer}, {f.statistic})")
        return "\n".join(lines)


@dataclass(frozen=True)
class WaterLayout:
    """Where the water is in a tile: share of water pixels per half and edge contact per side (0..1)."""

    layer: str
    share: float
    half_share: dict[str, float]
    edge_contact: dict[str, float]

    def shoreline_side(self) -> str | None:
        """The side holding the water when the tile shows water on one side and land on the other."""
        if not SHORE_MIN_SHARE <= self.share <= SHORE_MAX_SHARE:
            return None
        side = max(SIDES, key=lambda s: (self.half_share[s], s))
        asymmetry = self.half_share[side] - self.half_share[OPPOSITE[side]]
        if asymmetry < SHORE_ASYMMETRY or self.edge_contact[side] < SHORE_EDGE_CONTACT:
            return None
        return side


def water_layout(arrays: Mapping[str, np.ndarray]) -> WaterLayout | None:
    """Measure the water layout on the sample's land-cover array (Dynamic World first, else WorldCover).

    ``arrays`` maps registry modality names to ``(bands, H, W)`` arrays of stored class codes, as in
    :class:`dataset_scripts.types.AlignedSample`. Returns ``None`` when neither layer is present or no
    pixel is valid. Rows run north to south: GeoMeld grids are north-up UTM.
    """
    for layer, water_class in (("dynamic_world", "water"), ("esa_worldcover", "permanent water bodies")):
        if layer not in arrays:
            continue
        modality = get_modality(layer)
        codes = np.asarray(arrays[layer])
        if codes.ndim == 3:
            codes = codes[0]
        if codes.ndim != 2:
            raise ValueError(f"{layer}: expected a (1, H, W) or (H, W) class array, got shape {codes.shape}")
        valid = codes != modality.nodata
        if not valid.any():
            return None
        water = (codes == modality.class_by_name(water_class).code) & valid
        h, w = water.shape
        halves = {
            "north": (slice(0, h // 2), slice(None)),
            "south": (slice(h - h // 2, h), slice(None)),
            "west": (slice(None), slice(0, w // 2)),
            "east": (slice(None), slice(w - w // 2, w)),
        }
        edges = {"north": water[0], "south": water[-1], "west": water[:, 0], "east": water[:, -1]}
        return WaterLayout(
            layer=layer,
            share=float(water.sum() / valid.sum()),
            half_share={s: float(water[sl].sum() / max(valid[sl].sum(), 1)) for s, sl in halves.items()},
            edge_contact={s: float(e.mean()) for s, e in edges.items()},
        )
    return None


def season_of(month: int, lat: float | None) -> str | None:
    """Meteorological season of ``month`` at latitude ``lat``; ``None`` in the tropics or without a latitude."""
    if lat is None or abs(lat) < 23.5:
        return None
    northern = ("winter", "winter", "spring", "spring", "spring", "summer", "summer", "summer",
                "autumn", "autumn", "autumn", "winter")  # fmt: skip
    season = northern[month - 1]
    if lat < 0:
        season = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}[season]
    return season


def build_fact_sheet(
    tile_id: str,
    signals: Mapping[str, Any],
    metadata: Mapping[str, Any] | None = None,
    layout: WaterLayout | None = None,
) -> FactSheet:
    """Turn one sample's signals (the builder's schema) and metadata into a :class:`FactSheet`."""
    if not isinstance(signals, Mapping):
        raise TypeError(f"signals must be a mapping in the builder's schema, got {type(signals).__name__}")
    metadata = metadata or {}
    sheet = FactSheet(tile_id=tile_id)
    sheet.notes.extend(str(n) for n in signals.get("notes") or ())
    _cover_facts(sheet, signals)
    _spectral_cover_facts(sheet, signals.get("spectral_cover"))
    _water_facts(sheet, signals, layout)
    _release_water_facts(sheet, metadata)
    _terrain_facts(sheet, signals.get("terrain"))
    _release_terrain_facts(sheet, metadata)
    _canopy_facts(sheet, signals.get("canopy"))
    _spectral_facts(sheet, signals.get("spectral"), signals)
    _sar_facts(sheet, signals.get("sar"))
    _date_facts(sheet, signals.get("date"), metadata)
    _place_facts(sheet, signals.get("place"), metadata)
    _coast_facts(sheet, layout)
    _sar_water_facts(sheet)
    _osm_facts(sheet, metadata)
    if signals.get("spectral") is None and not sheet.product_layers():
        sheet.notes.append(
            "no optical layer: no spectral or land-cover facts, captions use what else is known"
        )
    return sheet


def _fraction(name: str, value: Any) -> float:
    """A 0..1 fraction from the signals, as a percentage; out-of-range values are the builder's bug."""
    v = float(value)
    if not (0.0 <= v <= 1.0 + 1e-6) or math.isnan(v):
        raise ValueError(f"signals {name}: expected a fraction in [0, 1], found {value!r}")
    return 100.0 * min(v, 1.0)


def _cover_facts(sheet: FactSheet, signals: Mapping[str, Any]) -> None:
    for layer in ("dynamic_world", "esa_worldcover"):
        key = "worldcover_fractions" if layer == "esa_worldcover" else "dynamic_world_fractions"
        fractions = signals.get(key)
        if not fractions:
            continue
        known = set(get_modality(layer).class_names)
        shares = dict.fromkeys(CONCEPTS, 0.0)
        for class_name, frac in fractions.items():
            if class_name not in known:
                raise ValueError(
                    f"signals {key}: expected {layer} class names {sorted(known)}, found {class_name!r}"
                )
            shares[CLASS_TO_CONCEPT[class_name]] += _fraction(f"{key}[{class_name!r}]", frac)
        for concept, pct in shares.items():
            # only the primary layer (the first present) is salient: captions describe one consistent map
            salience = min(pct / 100.0, 1.0) if sheet.cover_layers() in ([], [layer]) else 0.0
            sheet.add(
                Fact(f"cover.{layer}.{concept}", round(pct, 2), "%", layer, "share of valid pixels", salience)
            )


def _spectral_cover_facts(sheet: FactSheet, cover: Mapping[str, Any] | None) -> None:
    if not cover:
        return
    primary = not sheet.product_layers()  # products win where present
    for name in SPECTRAL_CLASSES:
        if cover.get(name) is None:
            continue
        pct = _fraction(f"spectral_cover[{name!r}]", cover[name])
        sheet.add(
            Fact(
                f"cover.spectral.{name}",
                round(pct, 2),
                "%",
                "sentinel2",
                "share of valid pixels in the spectral class (signals.spectral_cover rules)",
                min(pct / 100.0, 1.0) if primary and name != "other" else 0.0,
            )
        )


def _sar_water_facts(sheet: FactSheet) -> None:
    """Radar-dark pixels as open water, only in a season without snow: dry and wet snow read dark too."""
    dark = sheet.value("sar.dark_percentage")
    if dark is None:
        return
    if sheet.value("date.season") in (None, "winter"):
        # "none" (the tropics) has no snow season; an unknown date or winter may hide snow
        sheet.notes.append("sar water: not used (winter or unknown date: snow is radar-dark like water)")
        return
    sheet.add(
        Fact(
            "sar.water_percentage",
            dark,
            "%",
            "sentinel1",
            "share of pixels with VV < -18 dB (no snow season)",
            0.0,
        )
    )


def _release_water_facts(sheet: FactSheet, metadata: Mapping[str, Any]) -> None:
    """The release's water_analysis (flattened by the release source), where no layer measured water."""
    pct = metadata.get("water_percentage")
    if "water.percentage" in sheet or pct is None:
        return
    try:
        value = float(pct)
    except (TypeError, ValueError):
        sheet.notes.append(f"water_percentage: expected a number, found {pct!r}")
        return
    if not 0.0 <= value <= 100.0 or math.isnan(value):
        sheet.notes.append(f"water_percentage: expected 0..100, found {pct!r}")
        return
    detected = bool(metadata.get("water_detected", value >= 0.5))
    layer = "release water_analysis"
    sheet.add(Fact("water.detected", detected, "", layer, "Dynamic World + JRC consensus", 0.0))
    salience = min(value / 100 + 0.1, 1.0) if detected else 0.0
    sheet.add(Fact("water.percentage", round(value, 2), "%", layer, "share of the tile", salience))


def _release_terrain_facts(sheet: FactSheet, metadata: Mapping[str, Any]) -> None:
    """The release's geomorphon class, where the sample has no DEM-derived one."""
    value = metadata.get("terrain_class")
    if "terrain.class" in sheet or value is None:
        return
    from dataset_scripts.signals import LANDFORMS

    name = str(value).strip().lower()
    if name not in LANDFORMS:
        sheet.notes.append(f"terrain_class: expected one of {list(LANDFORMS)}, found {value!r}")
        return
    sheet.add(Fact("terrain.class", name, "", "release terrain_class", "majority geomorphon landform", 0.2))


def _osm_facts(sheet: FactSheet, metadata: Mapping[str, Any]) -> None:
    raw = metadata.get("osm_tags")
    if raw is None or raw == "":
        return
    try:
        tags = parse_osm_tags(raw)
    except OsmTagError as err:
        sheet.notes.append(f"osm_tags refused: {err}")
        return
    named = {tag for _, _, wanted in OSM_FEATURES for tag in wanted}
    for (key, value), scales in sorted(tags.tags.items()):
        salient = (key, value) in named or (key, None) in named
        sheet.add(
            Fact(
                f"osm.tag.{key}={value}",
                True,
                "",
                "osm",
                f"OSM tag at scale {', '.join(scales)}",
                0.3 if salient else 0.0,
            )
        )
    sheet.add(Fact("osm.tag_count", len(tags.tags), "", "osm", "tags in the release's osm_tags", 0.0))


def _water_facts(sheet: FactSheet, signals: Mapping[str, Any], layout: WaterLayout | None) -> None:
    water = signals.get("water")
    if not water:
        return
    pct = float(water["percentage"])
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"signals water.percentage: expected 0..100, found {pct!r}")
    source = str(water.get("source", "unknown"))
    sheet.add(Fact("water.detected", bool(water["detected"]), "", source, "water detected in the tile", 0.0))
    sheet.add(
        Fact(
            "water.percentage",
            round(pct, 2),
            "%",
            source,
            "share of the tile",
            min(pct / 100 + 0.1, 1.0) if water["detected"] else 0.0,
        )
    )
    if layout is not None:
        side = layout.shoreline_side()
        sheet.add(
            Fact(
                "water.shoreline",
                side is not None,
                "",
                layout.layer,
                "water on one side of the tile, land on the other (see module docstring)",
                0.6 if side else 0.0,
            )
        )
        if side:
            sheet.add(Fact("water.side", side, "", layout.layer, "half of the tile with the most water", 0.3))


def _terrain_facts(sheet: FactSheet, terrain: Mapping[str, Any] | None) -> None:
    if not terrain:
        return
    emin, emean, emax = (_num(terrain, k) for k in ("elevation_min", "elevation_mean", "elevation_max"))
    relief, slope = _num(terrain, "relief"), _num(terrain, "slope_mean")
    if emin is None or emean is None or emax is None:
        return
    relief = emax - emin if relief is None else relief
    for key, value in (("min", emin), ("mean", emean), ("max", emax)):
        sheet.add(Fact(f"elevation.{key}", round(value, 1), "m", "dem", f"{key} of elevation", 0.0))
    elevation_class = (
        "lowland" if emean < LOWLAND_MAX_M else "highland" if emean >= HIGHLAND_MIN_M else "upland"
    )
    sheet.add(
        Fact(
            "elevation.class",
            elevation_class,
            "",
            "derived",
            f"mean elevation: lowland < {LOWLAND_MAX_M:g} m, highland >= {HIGHLAND_MIN_M:g} m",
            0.6 if elevation_class == "highland" else 0.2,
        )
    )
    sheet.add(Fact("terrain.relief", round(relief, 1), "m", "dem", "max - min elevation", 0.0))
    if slope is not None:
        sheet.add(Fact("slope.mean", round(slope, 2), "deg", "dem", "mean slope", 0.0))
    sheet.add(
        Fact(
            "terrain.relief_class",
            (relief_class := _relief_class(relief, slope)),
            "",
            "derived",
            "relief and mean slope thresholds" if slope is not None else "relief thresholds (no slope layer)",
            {"flat": 0.35, "gentle": 0.35, "hilly": 0.55, "mountainous": 0.8}[relief_class],
        )
    )
    if terrain.get("terrain_class"):
        sheet.add(
            Fact(
                "terrain.class",
                str(terrain["terrain_class"]).lower(),
                "",
                "dem",
                "majority geomorphon landform",
                0.2,
            )
        )
    for name, frac in (terrain.get("geomorphon_fractions") or {}).items():
        sheet.add(
            Fact(
                f"terrain.geomorphon.{name.lower()}",
                round(_fraction(f"geomorphon {name}", frac), 2),
                "%",
                "dem",
                "share of geomorphon landform",
                0.0,
            )
        )


def _num(group: Mapping[str, Any], key: str) -> float | None:
    """A number of a signals group; ``None`` where the builder had no valid pixels for it."""
    value = group.get(key)
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _relief_class(relief: float, slope: float | None) -> str:
    """Flat / gentle / hilly / mountainous from relief and mean slope (slope rules skipped without slope)."""
    for name, max_relief, max_slope in (
        ("flat", RELIEF_FLAT_M, SLOPE_FLAT_DEG),
        ("gentle", RELIEF_GENTLE_M, SLOPE_GENTLE_DEG),
        ("hilly", RELIEF_HILLY_M, SLOPE_HILLY_DEG),
    ):
        if relief < max_relief and (slope is None or slope < max_slope):
            return name
    return "mountainous"


def _canopy_facts(sheet: FactSheet, canopy: Mapping[str, Any] | None) -> None:
    if not canopy:
        return
    mean, p90, cover = (_num(canopy, k) for k in ("height_mean", "height_p90", "cover_fraction"))
    if mean is None or p90 is None:
        return
    sheet.add(Fact("canopy.height_mean", round(mean, 1), "m", "canopy_height", "mean", 0.0))
    sheet.add(
        Fact(
            "canopy.height_p90",
            round(p90, 1),
            "m",
            "canopy_height",
            "90th percentile",
            0.3 if p90 >= 10 else 0.0,
        )
    )
    if cover is not None:
        sheet.add(
            Fact(
                "canopy.cover",
                round(_fraction("canopy.cover_fraction", cover), 2),
                "%",
                "canopy_height",
                "share of pixels with canopy >= 5 m",
                0.0,
            )
        )


def _spectral_facts(sheet: FactSheet, spectral: Mapping[str, Any] | None, signals: Mapping[str, Any]) -> None:
    if spectral:
        for key in ("ndvi_mean", "ndvi_p10", "ndvi_p90", "ndwi_mean", "mndwi_mean", "ndbi_mean", "ndsi_mean"):
            if spectral.get(key) is not None:
                sheet.add(
                    Fact(f"spectral.{key}", round(float(spectral[key]), 3), "index", "sentinel2", key, 0.0)
                )
        p90 = spectral.get("ndvi_p90")
        if p90 is not None:
            state = "lush" if p90 >= LUSH_NDVI_P90 else "sparse" if p90 < SPARSE_NDVI_P90 else "moderate"
            sheet.add(
                Fact(
                    "greenness.state",
                    state,
                    "",
                    "derived",
                    "NDVI 90th percentile thresholds",
                    0.3 if state == "lush" else 0.15,
                )
            )
    for key, name in (("snow_fraction", "snow.percentage"), ("cloud_fraction", "cloud.percentage")):
        if signals.get(key) is not None:
            pct = _fraction(key, signals[key])
            sheet.add(
                Fact(
                    name,
                    round(pct, 2),
                    "%",
                    "sentinel2",
                    "share of the tile",
                    min(pct / 100 + 0.1, 1.0) if pct >= 5 else 0.0,
                )
            )


def _sar_facts(sheet: FactSheet, sar: Mapping[str, Any] | None) -> None:
    if not sar:
        return
    vv, vh, diff, std = (_num(sar, k) for k in ("vv_mean_db", "vh_mean_db", "vv_minus_vh_db", "vv_std_db"))
    for name, value, statistic in (
        ("sar.vv_db", vv, "mean VV backscatter"),
        ("sar.vh_db", vh, "mean VH backscatter"),
        ("sar.vv_minus_vh_db", diff, "mean VV - VH"),
    ):
        if value is not None:
            sheet.add(Fact(name, round(value, 2), "dB", "sentinel1", statistic, 0.0))
    if vv is not None:
        character = "dark" if vv < SAR_DARK_DB else "bright" if vv > SAR_BRIGHT_DB else "moderate"
        sheet.add(Fact("sar.character", character, "", "derived", "mean VV thresholds", 0.05))
    if std is not None:
        sheet.add(Fact("sar.vv_std_db", round(std, 2), "dB", "sentinel1", "standard deviation of VV", 0.0))
        texture = (
            "uniform" if std <= SAR_UNIFORM_STD_DB else "varied" if std >= SAR_VARIED_STD_DB else "mixed"
        )
        sheet.add(Fact("sar.texture", texture, "", "derived", "VV standard deviation thresholds", 0.05))
    water = _num(sar, "water_fraction")
    if water is not None:
        pct = _fraction("sar.water_fraction", water)
        sheet.add(
            Fact(
                "sar.dark_percentage",
                round(pct, 2),
                "%",
                "sentinel1",
                "share of pixels with VV < -18 dB",
                0.0,
            )
        )


def _date_facts(sheet: FactSheet, date: Mapping[str, Any] | None, metadata: Mapping[str, Any]) -> None:
    if not date or not date.get("datetime"):
        return
    iso = str(date["datetime"])
    if not re.match(r"\d{4}-\d{2}", iso):
        raise ValueError(f"signals date.datetime: expected an ISO 8601 time (YYYY-MM-...), found {iso!r}")
    month = int(date.get("month") or int(iso[5:7]))
    if not 1 <= month <= 12:
        raise ValueError(f"signals date.month: expected 1..12, found {month!r}")
    sheet.add(Fact("date.datetime", iso, "", "metadata", "acquisition time", 0.0))
    sheet.add(Fact("date.year", int(iso[:4]), "", "metadata", "acquisition year", 0.1))
    sheet.add(Fact("date.month", MONTHS[month - 1], "", "metadata", "acquisition month", 0.2))
    # the builder gives None where it knows no season; the latitude rule fills it where one exists
    season = date.get("season") or season_of(month, _lat(metadata))
    if season:
        sheet.add(Fact("date.season", str(season), "", "metadata", "meteorological season at the tile", 0.3))
    else:
        sheet.add(Fact("date.season", "none", "", "metadata", "tropics: no temperate season", 0.0))


def _lat(metadata: Mapping[str, Any]) -> float | None:
    lat = metadata.get("lat")
    return None if lat is None else float(lat)


def _place_facts(sheet: FactSheet, place: Mapping[str, Any] | None, metadata: Mapping[str, Any]) -> None:
    if place:
        for key, salience in (
            ("country", 0.4),
            ("country_code", 0.0),
            ("region", 0.3),
            ("nearest_place", 0.25),
        ):
            if place.get(key):
                sheet.add(Fact(f"place.{key}", str(place[key]), "", "gazetteer", key, salience))
        if place.get("distance_km") is not None and place.get("nearest_place"):
            sheet.add(
                Fact(
                    "place.distance_km",
                    round(float(place["distance_km"]), 1),
                    "km",
                    "gazetteer",
                    "distance to the nearest place",
                    0.0,
                )
            )
    for key in ("lat", "lon"):
        if metadata.get(key) is not None:
            sheet.add(
                Fact(f"place.{key}", round(float(metadata[key]), 4), "deg", "metadata", "tile centre", 0.0)
            )


def _coast_facts(sheet: FactSheet, layout: WaterLayout | None) -> None:
    if layout is None or "elevation.min" not in sheet:
        return
    coastal = (
        bool(sheet.value("water.shoreline")) and float(sheet.value("elevation.min")) <= COAST_MAX_ELEVATION_M
    )
    sheet.add(
        Fact(
            "water.coastal",
            coastal,
            "",
            "derived",
            f"shoreline and land at sea level (DEM min <= {COAST_MAX_ELEVATION_M:g} m)",
            0.7 if coastal else 0.0,
        )
    )
