"""The GeoMeld modality registry: every layer's semantics as data.

One place says, for each modality, which bands it has (by name, in canonical order), what they measure
(wavelength and bandwidth for optical bands, polarisation and orbit for SAR), at which ground sampling
distance, in which units and dtype, what marks no-data, and whether the layer is continuous or a class map
(with class codes, names, colours and the code -> index mapping). Default normalisation statistics live
here too, separately for Sentinel-2 L1C and L2A.

Band order is carried by name: :func:`reorder_bands` is the only way arrays change band order in this
project, and it works from names, never from positions. (MMEarth pretrained with B8A before B8 and
fine-tuned with B8 before B8A; carrying names end to end makes that class of bug impossible.)

This module is pure data plus small helpers and imports nothing beyond the standard library and numpy,
so that ``save_pretrained`` can ship it next to the modeling code for ``trust_remote_code`` loading.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

Kind = Literal["continuous", "categorical"]


@dataclass(frozen=True)
class Band:
    """One band of a modality.

    Attributes:
        name: canonical band name, unique within its modality (``"B8A"``, ``"VV"``, ``"elevation"``).
        unit: physical unit of the stored values (``"reflectance x 10000"``, ``"dB"``, ``"m"``, ``"deg"``).
        gsd: native ground sampling distance in metres.
        wavelength_nm: central wavelength for optical bands, else ``None``.
        bandwidth_nm: full width at half maximum for optical bands, else ``None``.
        polarisation: ``"VV"``, ``"VH"``, ``"HH"`` or ``"HV"`` for SAR bands, else ``None``.
        orbit: ``"ascending"`` / ``"descending"`` for SAR bands whose orbit direction is known; ``None``
            where it is not (many Sentinel-1 products carry polarisations only).
        description: a short human description.
        valid_range: ``(low, high)``: the physically possible stored values; outside them a value is a fill or
            a corrupt pixel, never a measurement (the processor masks it). ``None``: no range declared.
    """

    name: str
    unit: str
    gsd: float
    wavelength_nm: float | None = None
    bandwidth_nm: float | None = None
    polarisation: str | None = None
    orbit: str | None = None
    description: str = ""
    valid_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class LandCoverClass:
    """One class of a categorical layer: the ``code`` stored in files, its ``index`` for models."""

    code: int
    index: int
    name: str
    color: str  # "#rrggbb", the product's official legend colour


@dataclass(frozen=True)
class BandStats:
    """Per-band z-score statistics in the band's stored unit."""

    mean: float
    std: float


@dataclass(frozen=True)
class Modality:
    """A modality (a layer type) and everything the pipeline needs to know about it.

    Attributes:
        name: registry key (``"sentinel2"``, ``"sentinel1"``, ...).
        kind: ``"continuous"`` or ``"categorical"``.
        bands: all bands the modality can carry, in canonical order.
        default_bands: the bands a model uses by default, in canonical order.
        dtype: dtype of the layer as stored in GeoMeld samples.
        nodata: value marking no-data in stored files (``None`` where NaN marks it, for float layers).
        gsd: ground sampling distance of the GeoMeld grid for this modality, in metres.
        classes: for categorical layers, the classes in index order.
        stats: default normalisation statistics per variant (``"default"``, or ``"l1c"``/``"l2a"``),
            band name -> :class:`BandStats`.
        variants: product variants, e.g. ``("l1c", "l2a")`` for Sentinel-2; names like
            ``"sentinel2_l2a"`` resolve to ``(modality, "l2a")``.
        license: licence of the public source product.
        source: the public product this layer comes from.
    """

    name: str
    kind: Kind
    bands: tuple[Band, ...]
    default_bands: tuple[str, ...]
    dtype: str
    nodata: float | int | None
    gsd: float
    classes: tuple[LandCoverClass, ...] = ()
    stats: Mapping[str, Mapping[str, BandStats]] = field(default_factory=dict)
    variants: tuple[str, ...] = ("default",)
    license: str = ""
    source: str = ""

    # -- bands ---------------------------------------------------------------------------------------
    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    def band(self, name: str) -> Band:
        for b in self.bands:
            if b.name == name:
                return b
        raise KeyError(f"{self.name} has no band {name!r}; its bands are {list(self.band_names)}")

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"

    # -- classes -------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def code_to_index(self) -> dict[int, int]:
        """Stored class code -> contiguous index, e.g. WorldCover 10..100 -> 0..10."""
        return {c.code: c.index for c in self.classes}

    def codes_to_indices(self, codes: np.ndarray, ignore_index: int = -1) -> np.ndarray:
        """Map an array of stored class codes to indices; unknown codes and no-data become ``ignore_index``."""
        if not self.is_categorical:
            raise TypeError(f"{self.name} is continuous; it has no class codes")
        top = max((c.code for c in self.classes), default=0)
        lut = np.full(max(256, int(top) + 1), ignore_index, dtype=np.int64)
        for c in self.classes:
            lut[c.code] = c.index
        codes = np.asarray(codes)
        out = np.full(codes.shape, ignore_index, dtype=np.int64)
        finite = np.isfinite(codes) if codes.dtype.kind == "f" else np.ones(codes.shape, dtype=bool)
        as_int = np.where(finite, codes, -1).astype(np.int64)
        inside = finite & (as_int >= 0) & (as_int < lut.shape[0])
        out[inside] = lut[as_int[inside]]
        return out

    def class_by_name(self, name: str) -> LandCoverClass:
        key = _norm_name(name)
        for c in self.classes:
            if _norm_name(c.name) == key:
                return c
        raise KeyError(f"{self.name} has no class {name!r}; its classes are {list(self.class_names)}")

    # -- statistics ----------------------------------------------------------------------------------
    def band_stats(self, bands: Sequence[str], variant: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std arrays for ``bands`` (by name) of ``variant`` (default: the first variant)."""
        variant = variant or self.variants[0]
        if variant not in self.stats:
            raise KeyError(
                f"{self.name} has no statistics for variant {variant!r}; known: {list(self.stats)}"
            )
        table = self.stats[variant]
        missing = [b for b in bands if b not in table]
        if missing:
            raise KeyError(f"{self.name}/{variant} has no statistics for bands {missing}")
        mean = np.array([table[b].mean for b in bands], dtype=np.float32)
        std = np.array([table[b].std for b in bands], dtype=np.float32)
        return mean, std


def _norm_name(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_").replace("/", "_")


def _stats(names: Sequence[str], means: Sequence[float], stds: Sequence[float]) -> Mapping[str, BandStats]:
    if not (len(names) == len(means) == len(stds)):
        raise ValueError("statistics tables must give one mean and one std per band")
    return MappingProxyType(
        {n: BandStats(float(m), float(s)) for n, m, s in zip(names, means, stds, strict=True)}
    )


# ------------------------------------------------------------------------------------------------------
# Sentinel-2 MSI. Wavelengths and bandwidths: ESA Sentinel-2 spectral response (S2A), nanometres.
# Stored as reflectance x 10000 (int16 / float32). L1C of processing baseline >= 04.00 carries a +1000
# radiometric offset; the statistics below are for the values as distributed.
_S2 = (
    ("B01", 442.7, 21, 60, "coastal aerosol"),
    ("B02", 492.4, 66, 10, "blue"),
    ("B03", 559.8, 36, 10, "green"),
    ("B04", 664.6, 31, 10, "red"),
    ("B05", 704.1, 15, 20, "red edge 1"),
    ("B06", 740.5, 15, 20, "red edge 2"),
    ("B07", 782.8, 20, 20, "red edge 3"),
    ("B08", 832.8, 106, 10, "near infrared"),
    ("B8A", 864.7, 21, 20, "narrow near infrared"),
    ("B09", 945.1, 20, 60, "water vapour"),
    ("B10", 1373.5, 31, 60, "cirrus (L1C only)"),
    ("B11", 1613.7, 91, 20, "short-wave infrared 1"),
    ("B12", 2202.4, 175, 20, "short-wave infrared 2"),
)
SENTINEL2_ALL_BANDS: tuple[str, ...] = tuple(b[0] for b in _S2)
#: the 12 bands GeoMeld uses (B10, cirrus, only exists in L1C and is dropped by name)
SENTINEL2_BANDS: tuple[str, ...] = tuple(b for b in SENTINEL2_ALL_BANDS if b != "B10")
#: the order the original GeoMeld / MMEarth release stores its 12 bands in (B8A before B8)
SENTINEL2_RELEASE_ORDER: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B08", "B09", "B11", "B12",
)  # fmt: skip

# Default statistics: global Sentinel-2 reflectance statistics of the order published for TerraMesh-style
# corpora. They are a sane starting point only; `geomeld stats DIR` recomputes them from a built dataset
# and writes them into its card, and the processor accepts them.
_S2_L2A_STATS = _stats(
    SENTINEL2_BANDS,
    [1390.5, 1503.3, 1718.2, 1853.9, 2199.1, 2780.0, 2987.0, 3083.2, 3132.2, 3163.0, 2424.9, 1857.6],
    [2106.8, 2141.1, 2039.0, 2134.1, 2085.3, 1889.9, 1820.3, 1871.9, 1753.8, 1797.4, 1434.3, 1334.3],
)
_S2_L1C_STATS = _stats(
    SENTINEL2_ALL_BANDS,
    [2357.1, 2137.4, 2018.8, 2083.0, 2295.7, 2854.5, 3122.8, 3040.6, 3306.5, 1473.8, 506.1, 2472.8, 1838.9],
    [1624.7, 1675.8, 1557.7, 1833.7, 1823.7, 1734.0, 1732.1, 1679.7, 1727.3, 1024.7, 442.2, 1331.4, 1160.4],
)

SENTINEL2 = Modality(
    name="sentinel2",
    kind="continuous",
    bands=tuple(
        Band(n, "reflectance x 10000", gsd, wavelength_nm=wl, bandwidth_nm=bw, description=d)
        for n, wl, bw, gsd, d in _S2
    ),
    default_bands=SENTINEL2_BANDS,
    dtype="float32",
    nodata=0,  # L1C/L2A use 0 for no-data; GeoMeld float layers use NaN
    gsd=10.0,
    stats=MappingProxyType({"l2a": _S2_L2A_STATS, "l1c": _S2_L1C_STATS}),
    variants=("l2a", "l1c"),
    license="Copernicus Sentinel data terms (free, full and open)",
    source="Copernicus Sentinel-2 MSI Level-1C / Level-2A",
)

# ------------------------------------------------------------------------------------------------------
# Sentinel-1 C-band SAR, backscatter in dB. The release stores 8 channels (4 polarisations x 2 orbits);
# many products carry polarisations only, with no orbit direction: those bands are named "VV", "VH", ...
# (orbit None). The registry never invents an orbit.
_S1_POLS = ("VV", "VH", "HH", "HV")
_S1_ORBIT_BANDS = tuple(
    Band(f"{p}_{o[:3]}", "dB", 10.0, polarisation=p, orbit=o, description=f"{p} backscatter, {o} orbit")
    for o in ("ascending", "descending")
    for p in _S1_POLS
)
_S1_PLAIN_BANDS = tuple(
    Band(p, "dB", 10.0, polarisation=p, description=f"{p} backscatter, orbit direction not recorded")
    for p in _S1_POLS
)
SENTINEL1_RELEASE_ORDER: tuple[str, ...] = tuple(b.name for b in _S1_ORBIT_BANDS)
_S1_MEAN = {"VV": -10.9, "VH": -17.3, "HH": -10.5, "HV": -17.9}
_S1_STD = {"VV": 4.4, "VH": 4.5, "HH": 4.6, "HV": 4.7}
SENTINEL1 = Modality(
    name="sentinel1",
    kind="continuous",
    bands=_S1_PLAIN_BANDS + _S1_ORBIT_BANDS,
    default_bands=("VV", "VH"),
    dtype="float32",
    nodata=None,
    gsd=10.0,
    stats=MappingProxyType(
        {
            "default": _stats(
                [b.name for b in _S1_PLAIN_BANDS + _S1_ORBIT_BANDS],
                [_S1_MEAN[b.polarisation or ""] for b in _S1_PLAIN_BANDS + _S1_ORBIT_BANDS],
                [_S1_STD[b.polarisation or ""] for b in _S1_PLAIN_BANDS + _S1_ORBIT_BANDS],
            )
        }
    ),
    license="Copernicus Sentinel data terms (free, full and open)",
    source="Copernicus Sentinel-1 GRD / RTC",
)

DEM = Modality(
    name="dem",
    kind="continuous",
    bands=(
        Band("elevation", "m", 30.0, description="height above the EGM2008 geoid"),
        Band("slope", "deg", 30.0, description="terrain slope, derived from elevation on the final grid"),
    ),
    default_bands=("elevation", "slope"),
    dtype="float32",
    nodata=None,
    gsd=10.0,
    stats=MappingProxyType({"default": _stats(["elevation", "slope"], [670.7, 7.5], [951.3, 8.5])}),
    license="Copernicus DEM GLO-30 licence (free)",
    source="Copernicus DEM GLO-30 (ASTER GDEM in MMEarth)",
)

CANOPY_HEIGHT = Modality(
    name="canopy_height",
    kind="continuous",
    bands=(
        Band("height", "m", 10.0, description="canopy top height"),
        Band("std", "m", 10.0, description="predictive standard deviation of the height"),
    ),
    default_bands=("height", "std"),
    dtype="float32",
    nodata=255,  # the uint8 ETH product; GeoMeld float layers use NaN
    gsd=10.0,
    stats=MappingProxyType({"default": _stats(["height", "std"], [6.9, 4.8], [8.8, 2.9])}),
    license="CC-BY-4.0",
    source="ETH Global Canopy Height 2020 (Lang et al.)",
)

_WORLDCOVER = (
    (10, "tree cover", "#006400"),
    (20, "shrubland", "#ffbb22"),
    (30, "grassland", "#ffff4c"),
    (40, "cropland", "#f096ff"),
    (50, "built-up", "#fa0000"),
    (60, "bare / sparse vegetation", "#b4b4b4"),
    (70, "snow and ice", "#f0f0f0"),
    (80, "permanent water bodies", "#0064c8"),
    (90, "herbaceous wetland", "#0096a0"),
    (95, "mangroves", "#00cf75"),
    (100, "moss and lichen", "#fae6a0"),
)
ESA_WORLDCOVER = Modality(
    name="esa_worldcover",
    kind="categorical",
    bands=(Band("class", "class code", 10.0, description="ESA WorldCover class code (10..100)"),),
    default_bands=("class",),
    dtype="uint8",
    nodata=0,
    gsd=10.0,
    classes=tuple(LandCoverClass(code, i, name, col) for i, (code, name, col) in enumerate(_WORLDCOVER)),
    license="CC-BY-4.0, (c) ESA WorldCover project",
    source="ESA WorldCover 10 m v100 (2020) / v200 (2021)",
)

# Dynamic World labels 0..8 are stored +1, with 0 meaning no data (the MMEarth / GeoMeld convention).
_DYNAMIC_WORLD = (
    ("water", "#419bdf"),
    ("trees", "#397d49"),
    ("grass", "#88b053"),
    ("flooded vegetation", "#7a87c6"),
    ("crops", "#e49635"),
    ("shrub and scrub", "#dfc35a"),
    ("built", "#c4281b"),
    ("bare", "#a59b8f"),
    ("snow and ice", "#b39fe1"),
)
DYNAMIC_WORLD = Modality(
    name="dynamic_world",
    kind="categorical",
    bands=(Band("label", "class code", 10.0, description="Dynamic World top label + 1; 0 is no data"),),
    default_bands=("label",),
    dtype="uint8",
    nodata=0,
    gsd=10.0,
    classes=tuple(LandCoverClass(i + 1, i, name, col) for i, (name, col) in enumerate(_DYNAMIC_WORLD)),
    license="CC-BY-4.0, Dynamic World (Google, World Resources Institute)",
    source="Dynamic World V1 near-real-time land cover",
)

NAIP = Modality(
    name="naip",
    kind="continuous",
    bands=(
        Band("R", "DN", 1.0, wavelength_nm=635.0, bandwidth_nm=90.0, description="red"),
        Band("G", "DN", 1.0, wavelength_nm=560.0, bandwidth_nm=80.0, description="green"),
        Band("B", "DN", 1.0, wavelength_nm=470.0, bandwidth_nm=60.0, description="blue"),
        Band(
            "NIR",
            "DN",
            1.0,
            wavelength_nm=860.0,
            bandwidth_nm=80.0,
            description="near infrared (4-band years)",
        ),
    ),
    default_bands=("R", "G", "B"),
    dtype="uint16",
    nodata=0,
    gsd=1.0,
    stats=MappingProxyType(
        {"default": _stats(["R", "G", "B", "NIR"], [118.0, 123.0, 108.0, 135.0], [52.0, 45.0, 42.0, 50.0])}
    ),
    license="Public domain (USDA NAIP)",
    source="USDA National Agriculture Imagery Program, 1 m, contiguous US",
)

JRC_WATER = Modality(
    name="jrc_water",
    kind="continuous",
    bands=(
        Band("occurrence", "%", 30.0, description="share of the valid observations 1984-2021 in which the pixel was water"),
    ),
    default_bands=("occurrence",),
    dtype="float32",
    nodata=255,  # the uint8 JRC product (0-100 %, 255 no data); GeoMeld float layers use NaN
    gsd=10.0,
    # most pixels on Earth never hold water, so the distribution is a spike at 0 and a tail to 100
    stats=MappingProxyType({"default": _stats(["occurrence"], [8.0], [24.0])}),
    license="CC-BY-4.0 (EC JRC / Google)",
    source="JRC Global Surface Water, occurrence layer (Pekel et al. 2016)",
)

# ------------------------------------------------------------------------------------------------------
# Landsat 8 / 9 OLI (OLI-2 on Landsat 9 has the same nine bands). Central wavelengths and FWHM bandwidths from
# the OLI relative spectral responses (Barsi et al. 2014, Remote Sensing 6, 10232; USGS band designations),
# nanometres; the 15 m panchromatic B8 and the TIRS thermal bands are not part of the modality.
# Collection-2 Level-2 surface reflectance is distributed as uint16 DN: reflectance = DN * 2.75e-5 - 0.2
# (fill 0; valid 7273..43636, i.e. reflectance 0..1). B9 (cirrus) has no Level-2 surface reflectance: it is
# the Level-1 top-of-atmosphere product's DN (reflectance = DN * 2e-5 - 0.1). Values stay DN as distributed,
# the way Sentinel-2 stays reflectance x 10000: the statistics below are for those DN.
_L8 = (
    ("B1", 443.0, 16.0, "coastal aerosol"),
    ("B2", 482.0, 60.0, "blue"),
    ("B3", 561.4, 57.0, "green"),
    ("B4", 654.6, 37.0, "red"),
    ("B5", 864.7, 28.0, "near infrared"),
    ("B6", 1608.9, 85.0, "short-wave infrared 1"),
    ("B7", 2200.7, 187.0, "short-wave infrared 2"),
    ("B9", 1373.4, 21.0, "cirrus (Level-1 TOA DN: reflectance = DN * 2e-5 - 0.1; no Level-2 SR exists)"),
)
_L8_SR_UNIT = "Collection-2 Level-2 SR DN (reflectance = DN * 2.75e-5 - 0.2)"
#: Landsat 8/9 OLI bands GeoMeld uses by default (B9, cirrus, has no surface reflectance and is opt-in)
LANDSAT8_BANDS: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")
# A sane starting point only (as for Sentinel-2): vegetated-to-bare land surface reflectance of about 0.04-0.24
# mean, 0.05-0.10 std, expressed in the distributed DN; `geomeld stats DIR` recomputes them from a built dataset
_L8_STATS = _stats(
    [b[0] for b in _L8],
    [8727.0, 9091.0, 10182.0, 10545.0, 16000.0, 14545.0, 12364.0, 5150.0],
    [1818.0, 2000.0, 2182.0, 2909.0, 3273.0, 3636.0, 3273.0, 300.0],
)
LANDSAT8 = Modality(
    name="landsat8",
    kind="continuous",
    bands=tuple(
        Band(
            n, _L8_SR_UNIT if n != "B9" else "Level-1 TOA DN (reflectance = DN * 2e-5 - 0.1)", 30.0,
            wavelength_nm=wl, bandwidth_nm=bw, description=d, valid_range=(1.0, 65535.0),
        )
        for n, wl, bw, d in _L8
    ),
    default_bands=LANDSAT8_BANDS,
    dtype="uint16",
    nodata=0,  # the Collection-2 fill value
    gsd=30.0,
    stats=MappingProxyType({"default": _L8_STATS}),
    license="Public domain (USGS Landsat data, no restrictions on use)",
    source="USGS Landsat 8/9 OLI Collection 2 Level-2 surface reflectance (B9: Level-1)",
)

# Aerial RGB / RGBN orthophotos (national mapping agencies, drone and airborne surveys). Camera bands differ
# between products, so no wavelengths are declared; values are the product's DN (8-bit in most deliveries,
# 16-bit containers in some). The ground sampling distance is the product's own (0.1-1 m: GEO-Bench's
# m-pv4ger, m-nz-cattle and m-NeonTree are 0.1 m); 0.5 m is a nominal value for the registry's grid.
AERIAL = Modality(
    name="aerial",
    kind="continuous",
    bands=tuple(
        Band(n, "DN", 0.5, description=f"{d} (camera-dependent band; GSD per product, 0.1-1 m)", valid_range=(0.0, 65535.0))
        for n, d in (("R", "red"), ("G", "green"), ("B", "blue"), ("NIR", "near infrared (RGBN products)"))
    ),
    default_bands=("R", "G", "B"),
    dtype="uint16",
    nodata=None,  # orthophotos rarely declare one; a file's own no-data tag still applies
    gsd=0.5,
    stats=MappingProxyType(
        {"default": _stats(["R", "G", "B", "NIR"], [110.0, 115.0, 100.0, 130.0], [55.0, 50.0, 48.0, 55.0])}
    ),
    license="the product's own (declared per dataset)",
    source="aerial RGB / RGBN orthophotos (GSD per product, 0.1-1 m)",
)

# A generic categorical label layer: the classes are the task's, declared by the user (a labelled manifest's
# class list), so the registry declares none. 255 is no-data so that code 0 can be a class, as in most masks.
LABEL = Modality(
    name="label",
    kind="categorical",
    bands=(Band("class", "class code", 10.0, description="a user-declared class code (classes per task)"),),
    default_bands=("class",),
    dtype="uint8",
    nodata=255,
    gsd=10.0,
    license="the labels' own (declared per task)",
    source="user-provided label rasters or per-sample labels",
)

#: the modalities that ship with GeoMeld; user declarations may add to them, never replace one
BUILTIN_MODALITIES: Mapping[str, Modality] = MappingProxyType(
    {
        m.name: m
        for m in (SENTINEL2, SENTINEL1, DEM, CANOPY_HEIGHT, ESA_WORLDCOVER, DYNAMIC_WORLD, JRC_WATER, NAIP, LANDSAT8, AERIAL, LABEL)
    }
)
# the registry itself: built-ins plus what users register (register_modality, registry files, GEOMELD_MODALITIES)
_REGISTRY: dict[str, Modality] = dict(BUILTIN_MODALITIES)
#: every modality known to this process, a read-only live view: it sees modalities registered later
MODALITIES: Mapping[str, Modality] = MappingProxyType(_REGISTRY)

# ------------------------------------------------------------------------------------------------------
# The open registry: users declare sensors and layers as data (a YAML / JSON file, a dict, a Modality).
#
#   modalities:
#     - name: planetscope              # lower-case letters, digits, underscores; not a built-in name
#       kind: continuous               # or categorical (then `classes`); default continuous
#       dtype: uint16                  # numpy dtype of the stored values
#       gsd: 3.0                       # metres
#       nodata: 0                      # optional (null: NaN marks no-data)
#       license: "PlanetScope licence" # the product's licence (cards quote it)
#       source: "PlanetScope SuperDove" # optional
#       bands:                         # in canonical order; unit / gsd default to the modality's
#         - {name: blue, wavelength_nm: 490, bandwidth_nm: 50, unit: "reflectance x 10000", valid_range: [0, 10000]}
#       default_bands: [blue, ...]     # optional; all bands by default
#       stats: {blue: [mean, std]}     # continuous: required for the default bands ({variant: {...}} for several)
#       classes:                       # categorical: code (stored), name, optional colour "#rrggbb"
#         - {code: 1, name: water, color: "#0000ff"}
#
# Every mistake raises RegistryError naming the file, the entry, what was expected and what was found.

#: environment variable naming registry files to load at import, separated by os.pathsep (":" on POSIX)
REGISTRY_ENV = "GEOMELD_MODALITIES"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_KINDS = ("continuous", "categorical")
_MODALITY_FIELDS = frozenset(
    {"name", "kind", "dtype", "gsd", "nodata", "license", "source", "bands", "default_bands", "stats", "classes", "variants"}
)
_BAND_FIELDS = frozenset(
    {"name", "unit", "gsd", "wavelength_nm", "bandwidth_nm", "polarisation", "orbit", "description", "valid_range"}
)
_REQUIRED_FIELDS = ("name", "dtype", "gsd", "license", "bands")


class RegistryError(ValueError):
    """A modality declaration the registry refuses; the message names where, what was expected and what was found."""


def _where(origin: str, entry: Any) -> str:
    return f"{origin}: modality {entry}" if origin else f"modality {entry}"


def _expect(cond: bool, where: str, expected: str, found: object) -> None:
    if not cond:
        raise RegistryError(f"{where}: expected {expected}, found {found!r}")


def _number_field(value: Any, where: str, what: str, *, positive: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(float(value))
    _expect(ok and (not positive or float(value) > 0), where, f"{what} as a {'positive ' if positive else ''}number", value)
    return float(value)


def _text_field(value: Any, where: str, what: str) -> str:
    _expect(isinstance(value, str) and bool(value.strip()), where, f"{what} as non-empty text", value)
    return str(value).strip()


def _band_from_dict(entry: Any, where: str, unit: str, gsd: float) -> Band:
    if isinstance(entry, str):
        entry = {"name": entry}
    _expect(isinstance(entry, Mapping), where, "a band as a mapping with at least `name`", entry)
    assert isinstance(entry, Mapping)
    unknown = sorted(set(entry) - _BAND_FIELDS)
    _expect(not unknown, where, f"band fields from {sorted(_BAND_FIELDS)}", unknown)
    _expect("name" in entry, where, "a band `name`", dict(entry))
    name = _text_field(entry["name"], where, "band `name`")
    here = f"{where}, band {name!r}"
    optional = {
        k: _number_field(entry[k], here, f"`{k}`", positive=True)
        for k in ("wavelength_nm", "bandwidth_nm")
        if entry.get(k) is not None
    }
    valid_range = entry.get("valid_range")
    if valid_range is not None:
        ok = isinstance(valid_range, (list, tuple)) and len(valid_range) == 2
        _expect(ok, here, "`valid_range` as [low, high]", valid_range)
        low, high = (_number_field(v, here, "`valid_range` bounds") for v in valid_range)
        _expect(low < high, here, "`valid_range` with low < high", valid_range)
        valid_range = (low, high)
    for key in ("polarisation", "orbit", "description", "unit"):
        if entry.get(key) is not None:
            _text_field(entry[key], here, f"`{key}`")
    return Band(
        name=name,
        unit=str(entry.get("unit") or unit),
        gsd=_number_field(entry.get("gsd", gsd), here, "`gsd` in metres", positive=True),
        polarisation=entry.get("polarisation"),
        orbit=entry.get("orbit"),
        description=str(entry.get("description") or ""),
        valid_range=valid_range,
        **optional,
    )


def _stats_from_dict(value: Any, where: str, bands: Sequence[str], variants: Sequence[str]) -> dict[str, Mapping[str, BandStats]]:
    _expect(isinstance(value, Mapping), where, "`stats` as {band: [mean, std]} or {variant: {band: [mean, std]}}", value)
    assert isinstance(value, Mapping)
    nested = bool(value) and all(isinstance(v, Mapping) for v in value.values())
    tables = dict(value) if nested else {variants[0]: value}
    out: dict[str, Mapping[str, BandStats]] = {}
    for variant, table in tables.items():
        _expect(variant in variants, where, f"`stats` variants from {list(variants)}", variant)
        unknown = [b for b in table if b not in bands]
        _expect(not unknown, f"{where}, stats", f"statistics for declared bands {list(bands)}", unknown)
        rows = {}
        for band, pair in table.items():
            ok = isinstance(pair, (list, tuple)) and len(pair) == 2
            _expect(ok, f"{where}, stats of {band!r}", "[mean, std]", pair)
            mean = _number_field(pair[0], f"{where}, stats of {band!r}", "a mean")
            std = _number_field(pair[1], f"{where}, stats of {band!r}", "a std", positive=True)
            rows[str(band)] = BandStats(mean, std)
        out[str(variant)] = MappingProxyType(rows)
    return out


def _classes_from_dict(value: Any, where: str, nodata: float | int | None) -> tuple[LandCoverClass, ...]:
    _expect(isinstance(value, (list, tuple)) and bool(value), where, "`classes` as a non-empty list of {code, name}", value)
    out = []
    for i, entry in enumerate(value):
        if isinstance(entry, str):
            entry = {"code": i, "name": entry}
        _expect(isinstance(entry, Mapping) and "name" in entry, f"{where}, class #{i}", "a mapping with `name` (and `code`)", entry)
        code = entry.get("code", i)
        ok = isinstance(code, int) and not isinstance(code, bool) and 0 <= code <= 255 and code != nodata
        _expect(ok, f"{where}, class {entry['name']!r}", f"an integer `code` in 0..255 other than no-data {nodata}", code)
        color = entry.get("color") or entry.get("colour") or _default_colour(i)
        ok = isinstance(color, str) and len(color) == 7 and color.startswith("#")
        _expect(ok, f"{where}, class {entry['name']!r}", "`color` as '#rrggbb'", color)
        out.append(LandCoverClass(int(code), i, _text_field(entry["name"], f"{where}, class #{i}", "`name`"), color))
    for attr in ("code", "name"):
        seen = [getattr(c, attr) for c in out]
        twice = sorted({x for x in seen if seen.count(x) > 1}, key=str)
        _expect(not twice, where, f"each class {attr} once", twice)
    return tuple(out)


def _default_colour(i: int) -> str:
    # tab10, so undeclared colours are distinct and stable
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
    return palette[i % len(palette)]


def modality_from_dict(entry: Mapping[str, Any], origin: str = "") -> Modality:
    """A :class:`Modality` from its declaration (the format above); raises :class:`RegistryError`."""
    _expect(isinstance(entry, Mapping), _where(origin, "entry"), "a modality as a mapping", entry)
    label = entry.get("name") if isinstance(entry.get("name"), str) else "(unnamed)"
    where = _where(origin, repr(label))
    missing = [k for k in _REQUIRED_FIELDS if entry.get(k) in (None, "")]
    _expect(not missing, where, f"the fields {list(_REQUIRED_FIELDS)}", f"missing {missing}")
    unknown = sorted(set(entry) - _MODALITY_FIELDS)
    _expect(not unknown, where, f"fields from {sorted(_MODALITY_FIELDS)}", unknown)
    name = _text_field(entry["name"], where, "`name`")
    _expect(set(name) <= _NAME_CHARS and name[0].isalpha(), where, "`name` of lower-case letters, digits and underscores", name)
    kind = entry.get("kind", "continuous")
    _expect(kind in _KINDS, where, f"`kind` from {list(_KINDS)}", kind)
    try:
        dtype = np.dtype(str(entry["dtype"])).name
    except TypeError:
        raise RegistryError(f"{where}: expected `dtype` as a numpy dtype (uint8, int16, float32, ...), found {entry['dtype']!r}") from None
    gsd = _number_field(entry["gsd"], where, "`gsd` in metres", positive=True)
    nodata = entry.get("nodata")
    if nodata is not None:
        nodata = _number_field(nodata, where, "`nodata`")
        nodata = int(nodata) if float(nodata).is_integer() else nodata
    variants = tuple(entry.get("variants") or ("default",))
    _expect(all(isinstance(v, str) and v for v in variants), where, "`variants` as a list of names", list(variants))
    raw_bands = entry["bands"]
    _expect(isinstance(raw_bands, (list, tuple)) and bool(raw_bands), where, "`bands` as a non-empty list", raw_bands)
    unit = "class code" if kind == "categorical" else "DN"
    bands = tuple(_band_from_dict(b, f"{where}, band #{i}", unit, gsd) for i, b in enumerate(raw_bands))
    names = [b.name for b in bands]
    twice = sorted({n for n in names if names.count(n) > 1})
    _expect(not twice, where, "each band name once", twice)
    default = entry.get("default_bands") or names
    _expect(isinstance(default, (list, tuple)), where, "`default_bands` as a list of band names", default)
    unknown_default = [b for b in default if b not in names]
    _expect(not unknown_default, where, f"`default_bands` among the declared bands {names}", unknown_default)
    classes: tuple[LandCoverClass, ...] = ()
    stats: dict[str, Mapping[str, BandStats]] = {}
    if kind == "categorical":
        _expect(len(bands) == 1, where, "one band for a categorical layer", names)
        classes = _classes_from_dict(entry.get("classes"), where, nodata)
        _expect(entry.get("stats") is None, where, "no `stats` for a categorical layer", entry.get("stats"))
    else:
        _expect(entry.get("classes") is None, where, "no `classes` for a continuous layer (kind: categorical?)", entry.get("classes"))
        _expect(entry.get("stats") is not None, where, "`stats` ({band: [mean, std]}) for a continuous layer", "none")
        stats = _stats_from_dict(entry["stats"], where, names, variants)
        for variant in variants:
            lacking = [b for b in default if b not in stats.get(variant, {})]
            _expect(not lacking, where, f"statistics of variant {variant!r} for every default band", f"none for {lacking}")
    return Modality(
        name=name,
        kind=kind,
        bands=bands,
        default_bands=tuple(str(b) for b in default),
        dtype=dtype,
        nodata=nodata,
        gsd=gsd,
        classes=classes,
        stats=MappingProxyType(stats),
        variants=variants,
        license=_text_field(entry["license"], where, "`license`"),
        source=str(entry.get("source") or origin or "user declaration"),
    )


def modality_to_dict(mod: Modality) -> dict[str, Any]:
    """The declaration of ``mod`` (JSON-serialisable); ``modality_from_dict`` reads it back to an equal modality."""

    def band(b: Band) -> dict[str, object]:
        out: dict[str, Any] = {"name": b.name, "unit": b.unit, "gsd": b.gsd}
        for key in ("wavelength_nm", "bandwidth_nm", "polarisation", "orbit"):
            if getattr(b, key) is not None:
                out[key] = getattr(b, key)
        if b.description:
            out["description"] = b.description
        if b.valid_range is not None:
            out["valid_range"] = list(b.valid_range)
        return out

    out: dict[str, Any] = {
        "name": mod.name,
        "kind": mod.kind,
        "dtype": mod.dtype,
        "gsd": mod.gsd,
        "nodata": mod.nodata,
        "license": mod.license,
        "source": mod.source,
        "bands": [band(b) for b in mod.bands],
        "default_bands": list(mod.default_bands),
        "variants": list(mod.variants),
    }
    if mod.is_categorical:
        out["classes"] = [{"code": c.code, "name": c.name, "color": c.color} for c in mod.classes]
    else:
        out["stats"] = {v: {b: [s.mean, s.std] for b, s in table.items()} for v, table in mod.stats.items()}
    return out


def register_modality(modality: Modality | Mapping[str, Any], origin: str = "") -> Modality:
    """Add a user-declared modality to the registry (and so to :data:`MODALITIES`); returns it.

    A declaration may not reuse a built-in name; registering the same declaration again is a no-op (a config
    that carries its declarations registers them on load), a different one under a registered name is refused.
    """
    mod = modality if isinstance(modality, Modality) else modality_from_dict(modality, origin)
    where = _where(origin, repr(mod.name))
    _expect(mod.name not in BUILTIN_MODALITIES, where, f"a name that is not a built-in modality {sorted(BUILTIN_MODALITIES)}", mod.name)
    known = _REGISTRY.get(mod.name)
    if known is not None and modality_to_dict(known) != modality_to_dict(mod):
        raise RegistryError(
            f"{where}: expected a new name or the same declaration as the registered {mod.name!r} "
            f"(from {known.source}), found a different declaration"
        )
    _REGISTRY[mod.name] = mod
    return mod


def unregister_modality(name: str) -> None:
    """Remove a user-declared modality (tests, notebooks); built-ins cannot be removed."""
    if name in BUILTIN_MODALITIES:
        raise RegistryError(f"expected a user-declared modality, found the built-in {name!r}")
    _REGISTRY.pop(name, None)


def is_builtin(name: str) -> bool:
    return name in BUILTIN_MODALITIES


def declarations(names: Sequence[str]) -> list[dict[str, Any]]:
    """The declarations of the user-declared modalities among ``names`` (once each, in order): what a config
    carries so that it loads without the registry file."""
    out = []
    for name in dict.fromkeys(names):
        if name not in BUILTIN_MODALITIES:
            out.append(modality_to_dict(get_modality(name)))
    return out


def _read_declarations(path: str) -> Any:
    import json

    if not os.path.isfile(path):
        raise RegistryError(f"{path}: expected a modality registry file (.yaml, .yml or .json), found no such file")
    suffix = os.path.splitext(path)[1].lower()
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise RegistryError(f"{path}: expected JSON, found a syntax error at line {err.lineno}: {err.msg}") from None
    if suffix in (".yaml", ".yml"):
        import yaml  # lazily: pyyaml comes with transformers, the builder rarely needs it

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise RegistryError(f"{path}: expected YAML, found a syntax error: {err}") from None
    raise RegistryError(f"{path}: expected a .yaml, .yml or .json registry file, found suffix {suffix or 'none'!r}")


def load_registry_file(path: str | os.PathLike[str]) -> list[Modality]:
    """Register every modality declared in a YAML / JSON file (``modalities:`` list, or a bare list)."""
    path = str(path)
    data = _read_declarations(path)
    if isinstance(data, Mapping) and "modalities" in data:
        data = data["modalities"]
    if isinstance(data, Mapping):  # {name: declaration}
        data = [{"name": k, **v} if isinstance(v, Mapping) else v for k, v in data.items()]
    _expect(isinstance(data, list) and bool(data), path, "a non-empty `modalities:` list of declarations", data)
    declared = [modality_from_dict(entry, path) for entry in data]  # all valid before any is registered
    names = [m.name for m in declared]
    twice = sorted({n for n in names if names.count(n) > 1})
    _expect(not twice, path, "each modality name once", twice)
    return [register_modality(m, path) for m in declared]


def _load_environment() -> None:
    value = os.environ.get(REGISTRY_ENV, "")
    for path in filter(None, value.split(os.pathsep)):
        try:
            load_registry_file(path)
        except RegistryError as err:
            raise RegistryError(f"{REGISTRY_ENV}={value}: {err}") from None


_load_environment()


def get_modality(name: str) -> Modality:
    """Registry lookup by modality name or ``<modality>_<variant>`` (``"sentinel2_l2a"``)."""
    return resolve(name)[0]


def resolve(name: str) -> tuple[Modality, str]:
    """``"sentinel2_l1c"`` -> ``(SENTINEL2, "l1c")``; ``"dem"`` -> ``(DEM, "default")``."""
    if name in MODALITIES:
        mod = MODALITIES[name]
        return mod, mod.variants[0]
    base, _, variant = name.rpartition("_")
    if base in MODALITIES and variant in MODALITIES[base].variants:
        return MODALITIES[base], variant
    known = sorted(MODALITIES) + [
        f"{m.name}_{v}" for m in MODALITIES.values() for v in m.variants if len(m.variants) > 1
    ]
    raise KeyError(f"unknown modality {name!r}; expected one of {known}")


def reorder_bands(
    array: np.ndarray, given: Sequence[str], wanted: Sequence[str], *, modality: str = "", axis: int = 0
) -> np.ndarray:
    """Select and reorder the bands of ``array`` (bands on ``axis``) from ``given`` names to ``wanted``.

    Raises ``ValueError`` naming the missing bands, or when ``given`` does not match the array's band count.
    Extra bands in ``given`` (B10 in L1C, say) are dropped by name.
    """
    given = list(given)
    what = f"{modality} " if modality else ""
    if array.shape[axis] != len(given):
        raise ValueError(
            f"{what}array has {array.shape[axis]} bands on axis {axis} but {len(given)} band names were given: {given}"
        )
    if len(set(given)) != len(given):
        raise ValueError(f"{what}band names must be unique, got {given}")
    missing = [b for b in wanted if b not in given]
    if missing:
        raise ValueError(f"{what}input lacks bands {missing}; expected {list(wanted)}, received {given}")
    if list(wanted) == given:
        return array
    return np.take(array, [given.index(b) for b in wanted], axis=axis)


def parse_class_map(spec: str, target: Modality) -> dict[int, int]:
    """Parse ``"1:water,2:trees,8:nodata"`` into ``{source code: target code}`` for a categorical target.

    Target classes are given by name (matched case- and separator-insensitively); ``nodata`` maps to the
    target's no-data code. Unmapped source codes become no-data (the caller applies that rule).
    """
    if not target.is_categorical:
        raise ValueError(f"class_map needs a categorical target layer, {target.name} is {target.kind}")
    out: dict[int, int] = {}
    for pair in filter(None, (p.strip() for p in spec.split(","))):
        src, sep, dst = pair.partition(":")
        if not sep:
            raise ValueError(f"class_map entry {pair!r} is not of the form SRC:DST (e.g. '1:water')")
        try:
            code = int(src)
        except ValueError:
            raise ValueError(f"class_map source code {src!r} in {pair!r} is not an integer") from None
        if code in out:
            raise ValueError(f"class_map maps source code {code} twice")
        if _norm_name(dst) == "nodata":
            out[code] = int(target.nodata if target.nodata is not None else 0)
        elif not target.classes and dst.strip().isdigit():
            # a layer whose classes are the task's (the generic `label`) takes the target code itself
            out[code] = _target_code(int(dst), target, pair)
        else:
            out[code] = target.class_by_name(dst).code
    if not out:
        raise ValueError("class_map is empty; expected pairs like '1:water,2:trees'")
    return out


def _target_code(code: int, target: Modality, pair: str) -> int:
    if not 0 <= code <= 255 or code == target.nodata:
        raise ValueError(
            f"class_map target code in {pair!r} must lie in 0..255 and differ from {target.name}'s no-data "
            f"{target.nodata}, found {code}"
        )
    return code


def validate_band_selection(field: str, modalities: dict[str, list[str]]) -> dict[str, list[str]]:
    """Check a ``{modality: [band names]}`` selection against the registry; empty lists mean default bands."""
    if not modalities:
        raise ValueError(f"{field} must name at least one modality, got {modalities!r}")
    out: dict[str, list[str]] = {}
    for name, bands in modalities.items():
        if name not in MODALITIES:
            raise ValueError(f"{field}: unknown modality {name!r}; expected one of {sorted(MODALITIES)}")
        mod = get_modality(name)
        bands = list(bands) if bands else list(mod.default_bands)
        unknown = [b for b in bands if b not in mod.band_names]
        if unknown:
            raise ValueError(f"{field}[{name!r}]: unknown bands {unknown}; {name} has {list(mod.band_names)}")
        if len(set(bands)) != len(bands):
            raise ValueError(f"{field}[{name!r}]: duplicate band names in {bands}")
        out[name] = bands
    return out


def slope_degrees(elevation: np.ndarray, pixel_size_m: float) -> np.ndarray:
    """Terrain slope in degrees of an elevation grid ``(..., H, W)`` in metres with square pixels of
    ``pixel_size_m`` metres, by Horn's (1981) 3 x 3 method as ``gdaldem slope -compute_edges`` computes it.

    Horn weights the centre row/column of the window twice, which damps single-pixel DEM noise better than
    central differences. Edges extrapolate linearly (the row above the grid is ``2 z[0] - z[1]``, as GDAL
    does), so a plane has its exact slope everywhere; at the four corner pixels GDAL repeats the centre
    column instead, halving the east-west gradient there, and this reflects through the corner. A non-finite
    neighbour (no-data) is replaced by the centre value, as GDAL does; a non-finite centre stays NaN.
    Leading axes are independent grids. The one implementation: the builder and the image processor call it.
    """
    if not pixel_size_m > 0:
        raise ValueError(f"pixel_size_m must be a positive number of metres, got {pixel_size_m!r}")
    z = np.asarray(elevation, dtype=np.float64)
    if z.ndim < 2 or min(z.shape[-2:]) < 2:
        raise ValueError(f"elevation must be a grid (..., H, W) with H, W >= 2, got shape {z.shape}")
    height, width = z.shape[-2:]
    p = np.empty((*z.shape[:-2], height + 2, width + 2))
    p[..., 1:-1, 1:-1] = z
    p[..., 0, 1:-1], p[..., -1, 1:-1] = 2 * z[..., 0, :] - z[..., 1, :], 2 * z[..., -1, :] - z[..., -2, :]
    p[..., 1:-1, 0], p[..., 1:-1, -1] = 2 * z[..., :, 0] - z[..., :, 1], 2 * z[..., :, -1] - z[..., :, -2]
    for row, col, dr, dc in ((0, 0, 1, 1), (0, -1, 1, -1), (-1, 0, -1, 1), (-1, -1, -1, -1)):
        p[..., row, col] = 2 * z[..., row, col] - z[..., row + dr, col + dc]
    centre = z
    # the 3 x 3 window as shifted views, row-major a b c / d e f / g h i around the centre e
    a, b, c, d, f, g, h, i = (
        np.where(np.isfinite(v), v, centre)
        for v in (p[..., r : r + height, s : s + width] for r in range(3) for s in range(3) if (r, s) != (1, 1))
    )
    dz_dx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8.0 * pixel_size_m)
    dz_dy = ((g + 2 * h + i) - (a + 2 * b + c)) / (8.0 * pixel_size_m)
    slope = np.degrees(np.arctan(np.hypot(dz_dx, dz_dy)))
    return np.where(np.isfinite(centre), slope, np.nan).astype(np.float32)
