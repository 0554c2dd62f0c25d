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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

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
    """

    name: str
    unit: str
    gsd: float
    wavelength_nm: float | None = None
    bandwidth_nm: float | None = None
    polarisation: str | None = None
    orbit: str | None = None
    description: str = ""


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
        lut = np.full(max(256, int(max(c.code for c in self.classes)) + 1), ignore_index, dtype=np.int64)
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

MODALITIES: Mapping[str, Modality] = MappingProxyType(
    {m.name: m for m in (SENTINEL2, SENTINEL1, DEM, CANOPY_HEIGHT, ESA_WORLDCOVER, DYNAMIC_WORLD, JRC_WATER, NAIP)}
)


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
        else:
            out[code] = target.class_by_name(dst).code
    if not out:
        raise ValueError("class_map is empty; expected pairs like '1:water,2:trees'")
    return out


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
