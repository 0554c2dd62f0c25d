"""The STAC source: for each anchor, find the best scene per modality in a STAC catalogue.

``--source stac:LOCATION`` with ``LOCATION`` either

* a STAC API root (``https://earth-search.aws.element84.com/v1``,
  ``https://planetarycomputer.microsoft.com/api/stac/v1``), searched per anchor with ``pystac-client``; or
* a static STAC catalog (a local ``catalog.json`` path, or a URL ending in ``.json``), walked once with
  ``pystac``. Tests use this path on a catalog of local COGs; both backends feed the same selection code.

Anchors come from an anchor list given as the ``anchors`` option: a CSV file with a header, or JSON Lines
(``.jsonl``/``.ndjson``), with the columns

    anchor_id  unique id of the sample
    lat, lon   WGS 84 degrees of the footprint centre
    date       optional ISO 8601 date or datetime (UTC when no zone is given): the reference date
               (the NAIP date in the US, a chosen month elsewhere). Without it the S2 search spans the
               ``datetime`` option (default ``2017-01-01/2022-12-31``, the release's temporal coverage).

Selection rules (the spec's defaults, all configurable; under ``geomeld build`` the limits shared with the
aligner come from its flags, resolved in :mod:`dataset_scripts.settings`: ``max_cloud_cover`` from
``--max-cloud-cover``, ``window_days`` from ``--max-offset-days``, ``footprint_m`` from ``--size-px`` x
``--gsd``):

* Sentinel-2 is the reference: among items that cover the whole footprint and fall within
  ``anchor_window_days`` of the anchor date, keep those with ``eo:cloud_cover`` under ``max_cloud_cover``
  (10 %) and take the least cloudy (ties: closest to the anchor date, then item id). Items without
  ``eo:cloud_cover`` are used only when no item qualifies, closest to the anchor date first, and their
  ``LayerRef.properties["eo:cloud_cover"]`` is ``None`` so the builder estimates it with a pixel cloud
  detector. No usable item quarantines the anchor (reason ``"no_clear_scene"``).
* Sentinel-1 and Dynamic World (or its proxy) within ``window_days`` (15) of the chosen S2 datetime; an
  item with a time interval (an annual land-cover map) qualifies when the interval comes that close.
  Sentinel-1 takes the closest item per orbit direction (``sat:orbit_state``), so bands are named
  ``VV_asc``/``VH_des``...; an item without an orbit direction gives plain ``VV``/``VH`` (never an
  invented orbit). Missing layers are simply absent from the request.
* Static layers (DEM, WorldCover, NAIP, canopy height) take the covering item closest in time.

An API search returns at most ``max_items`` items; for anchors without a date over a multi-year range
that may not be every scene, so give anchors dates (or narrow ``datetime``) for the least cloudy pick.

Sentinel-2 refs carry what the aligner needs to harmonise the radiometric offset: the item's
``s2:processing_baseline`` and ``earthsearch:boa_offset_applied`` and the asset's ``raster:bands``
offset/scale (as ``raster:offset``/``raster:scale``).

Each chosen item contributes one :class:`~dataset_scripts.types.LayerRef` per asset: the asset's absolute
COG href (the aligner reads windows of it with rasterio), the band names in the file's order, the item
datetime, and properties (item id, collection, asset key, ``eo:cloud_cover``, offset in days from the
S2 scene, hints such as ``value_scale``).
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import pystac
from rasterio.crs import CRS
from rasterio.warp import transform, transform_bounds

from modeling_geomeld.modalities import get_modality, parse_class_map, resolve

from ..errors import UsageError
from ..settings import describe_options
from ..types import AnchorRequest, LayerRef, QuarantineError
from .quarantine import QuarantineLog, QuarantineRecord

Timing = Literal["reference", "window", "nearest"]
BBox = tuple[float, float, float, float]  # west, south, east, north in WGS 84 degrees


# ------------------------------------------------------------------------------------------------------
# The public defaults, as data.


@dataclass(frozen=True)
class StacLayer:
    """Where one modality lives in a STAC catalogue and how its item is chosen.

    Attributes:
        modality: registry name, with the variant where one exists (``"sentinel2_l2a"``).
        collection: STAC collection id.
        assets: ``(asset key, band names in the file's order)`` pairs; one COG per asset.
        timing: ``"reference"`` (the S2 scene), ``"window"`` (within ``window_days`` of it) or
            ``"nearest"`` (static products: the covering item closest in time).
        class_map: for a categorical product standing in for a registry layer, ``SRC:DST`` pairs as in the
            manifest (see :func:`modeling_geomeld.modalities.parse_class_map`).
        split_orbits: name SAR bands by the item's ``sat:orbit_state`` (``VV`` -> ``VV_asc``) and pick one
            item per orbit direction.
        hints: copied into every ``LayerRef.properties`` (e.g. ``value_scale`` of linear SAR products).
    """

    modality: str
    collection: str
    assets: tuple[tuple[str, tuple[str, ...]], ...]
    timing: Timing
    class_map: str | None = None
    split_orbits: bool = False
    hints: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StacProfile:
    """A public STAC API and the layers GeoMeld reads from it."""

    name: str
    url: str
    layers: tuple[StacLayer, ...]
    note: str = ""


def _s2_assets(keys: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    names = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    return tuple((k, (n,)) for k, n in zip(keys, names, strict=True))


_EARTH_SEARCH_S2_KEYS = (
    "coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3",
    "nir", "nir08", "nir09", "swir16", "swir22",
)  # fmt: skip
_PC_S2_KEYS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")

# Esri 10 m land cover (io-lulc-annual-v02, classes 1,2,4,5,7,8,9,10,11) onto Dynamic World. Esri's
# "rangeland" (11) merges Dynamic World's grass and shrub & scrub; we map it to grass, and clouds (10) to
# no-data. Override with the ``assets``/``collections`` options and a manifest if that does not suit.
IO_LULC_TO_DYNAMIC_WORLD = (
    "1:water,2:trees,4:flooded vegetation,5:crops,7:built,8:bare,9:snow and ice,10:nodata,11:grass"
)

PUBLIC_PROFILES: Mapping[str, StacProfile] = {
    "earth-search": StacProfile(
        name="earth-search",
        url="https://earth-search.aws.element84.com/v1",
        layers=(
            StacLayer("sentinel2_l2a", "sentinel-2-l2a", _s2_assets(_EARTH_SEARCH_S2_KEYS), "reference"),
            StacLayer(
                "sentinel2_l1c",
                "sentinel-2-l1c",
                (*_s2_assets(_EARTH_SEARCH_S2_KEYS), ("cirrus", ("B10",))),
                "reference",
            ),
            StacLayer("dem", "cop-dem-glo-30", (("data", ("elevation",)),), "nearest"),
            StacLayer("naip", "naip", (("image", ("R", "G", "B", "NIR")),), "nearest"),
        ),
        note=(
            "Element 84 Earth Search: S2 L2A as public COGs (s3://sentinel-cogs). Its sentinel-2-l1c assets "
            "are JPEG2000 and NAIP is requester-pays; its sentinel-1-grd is in radar geometry (not "
            "geocoded), so Sentinel-1 comes from the planetary-computer profile."
        ),
    ),
    "planetary-computer": StacProfile(
        name="planetary-computer",
        url="https://planetarycomputer.microsoft.com/api/stac/v1",
        layers=(
            StacLayer("sentinel2_l2a", "sentinel-2-l2a", _s2_assets(_PC_S2_KEYS), "reference"),
            StacLayer(
                "sentinel1",
                "sentinel-1-rtc",
                (("vv", ("VV",)), ("vh", ("VH",))),
                "window",
                split_orbits=True,
                hints={"value_scale": "linear"},  # RTC gamma0 in linear power; GeoMeld stores dB
            ),
            StacLayer("dem", "cop-dem-glo-30", (("data", ("elevation",)),), "nearest"),
            StacLayer("esa_worldcover", "esa-worldcover", (("map", ("class",)),), "nearest"),
            StacLayer(
                "dynamic_world",
                "io-lulc-annual-v02",
                (("data", ("label",)),),
                "window",
                class_map=IO_LULC_TO_DYNAMIC_WORLD,
                hints={"proxy": "Esri 10 m annual land cover mapped onto Dynamic World"},
            ),
            StacLayer("jrc_water", "jrc-gsw", (("occurrence", ("occurrence",)),), "nearest"),
            StacLayer("naip", "naip", (("image", ("R", "G", "B", "NIR")),), "nearest"),
        ),
        note=(
            "Microsoft Planetary Computer: asset hrefs need a SAS token; pass sign='planetary-computer' "
            "(needs the planetary-computer package). Dynamic World itself is only on Earth Engine; the "
            "Esri annual map stands in for it through a class map. No public STAC collection carries the "
            "ETH canopy height: add it with the collections/assets options."
        ),
    ),
}
#: the profile used for locations that name neither public API (static catalogs, mirrors)
DEFAULT_PROFILE = "planetary-computer"


# ------------------------------------------------------------------------------------------------------
# Anchors.


@dataclass(frozen=True)
class Anchor:
    """One row of the anchor list."""

    anchor_id: str
    lat: float
    lon: float
    date: dt.datetime | None = None


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 date or datetime -> an aware UTC datetime (naive input is taken as UTC)."""
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (
        value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    )


def _anchor_from_row(row: Mapping[str, Any], where: str) -> Anchor:
    missing = [k for k in ("anchor_id", "lat", "lon") if row.get(k) in (None, "")]
    if missing:
        raise ValueError(
            f"{where}: anchor list rows need anchor_id, lat, lon; missing {missing} in {dict(row)}"
        )
    try:
        lat, lon = float(row["lat"]), float(row["lon"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: lat/lon must be numbers, got {row['lat']!r}, {row['lon']!r}") from None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError(f"{where}: expected lat in [-90, 90] and lon in [-180, 180], got {lat}, {lon}")
    date_text = row.get("date")
    try:
        date = parse_time(str(date_text)) if date_text not in (None, "") else None
    except ValueError:
        raise ValueError(f"{where}: date must be ISO 8601 (e.g. 2021-06-15), got {date_text!r}") from None
    return Anchor(str(row["anchor_id"]), lat, lon, date)


def read_anchor_list(path: str | Path) -> list[Anchor]:
    """Read a CSV (header ``anchor_id,lat,lon[,date]``) or JSON Lines anchor list."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"anchor list {str(path)!r} is not a file; expected a CSV or JSON Lines file")
    with path.open(newline="", encoding="utf-8") as f:
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            rows = [(i, json.loads(line)) for i, line in enumerate(f, 1) if line.strip()]
        else:
            rows = list(enumerate(csv.DictReader(f), 2))  # line 1 is the header
    return [_anchor_from_row(row, f"{path.name}:{i}") for i, row in rows]


def footprint_bbox(lat: float, lon: float, size_m: float) -> BBox:
    """WGS 84 bounds of the ``size_m`` square around the anchor in its local UTM zone (the aligner's grid)."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    utm = CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)
    (x,), (y,) = transform("EPSG:4326", utm, [lon], [lat])
    half = size_m / 2.0
    west, south, east, north = transform_bounds(utm, "EPSG:4326", x - half, y - half, x + half, y + half)
    return (west, south, east, north)


# ------------------------------------------------------------------------------------------------------
# Item geometry and time.


def _inside_ring(x: float, y: float, ring: Sequence[Sequence[float]]) -> bool:
    """Even-odd ray casting; the ring is a closed GeoJSON linear ring of (lon, lat)."""
    inside = False
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _inside_geometry(x: float, y: float, geometry: Mapping[str, Any]) -> bool:
    polygons = {"Polygon": [geometry["coordinates"]], "MultiPolygon": geometry["coordinates"]}.get(
        geometry["type"], []
    )
    return any(
        _inside_ring(x, y, rings[0]) and not any(_inside_ring(x, y, hole) for hole in rings[1:])
        for rings in polygons
    )


def covers(item: pystac.Item, bbox: BBox) -> bool:
    """Whether the item's footprint holds the whole anchor footprint (a partial scene is useless)."""
    west, south, east, north = bbox
    corners = ((west, south), (east, south), (east, north), (west, north))
    if item.geometry is not None:
        return all(_inside_geometry(x, y, item.geometry) for x, y in corners)
    if item.bbox is not None:
        iw, is_, ie, in_ = item.bbox[:4] if len(item.bbox) == 4 else (*item.bbox[:2], *item.bbox[3:5])
        return iw <= west and is_ <= south and east <= ie and north <= in_
    return False


def item_interval(item: pystac.Item) -> tuple[dt.datetime, dt.datetime]:
    """The item's time as an interval (an instant gives a zero-length one), in UTC."""
    props = item.properties
    if props.get("start_datetime") and props.get("end_datetime"):
        return parse_time(props["start_datetime"]), parse_time(props["end_datetime"])
    if item.datetime is None:
        raise QuarantineError(
            "date_outside_window", f"STAC item {item.id!r} has neither datetime nor start/end_datetime"
        )
    when = item.datetime.astimezone(dt.timezone.utc)
    return when, when


def offset_days(item: pystac.Item, when: dt.datetime) -> float:
    """Days from ``when`` to the item's time (0 inside an interval); negative means the item is earlier."""
    start, end = item_interval(item)
    if start <= when <= end:
        return 0.0
    nearest = end if end < when else start
    return (nearest - when).total_seconds() / 86400.0


def layer_time(item: pystac.Item, s2_time: dt.datetime) -> str:
    """The ``LayerRef.datetime`` of an item: its instant, or for an interval product (an annual land-cover
    map) the moment of the interval closest to the S2 scene, so the builder's offset is the true distance."""
    start, end = item_interval(item)
    return min(max(s2_time, start), end).isoformat()


# ------------------------------------------------------------------------------------------------------
# Selection rules (pure functions of item lists, shared by both backends).


def _cloud(item: pystac.Item) -> float | None:
    """``eo:cloud_cover`` as a number, or ``None`` where the item does not say."""
    value = item.properties.get("eo:cloud_cover")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def pick_reference(
    items: Sequence[pystac.Item], anchor_date: dt.datetime | None, max_cloud_cover: float
) -> pystac.Item | None:
    """The least cloudy item under ``max_cloud_cover``; else the closest item without cloud metadata."""

    def closeness(item: pystac.Item) -> float:
        return abs(offset_days(item, anchor_date)) if anchor_date is not None else 0.0

    clear = [i for i in items if (cloud := _cloud(i)) is not None and cloud < max_cloud_cover]
    if clear:
        return min(clear, key=lambda i: (_cloud(i), closeness(i), i.id))
    unknown = [i for i in items if _cloud(i) is None]
    return min(unknown, key=lambda i: (closeness(i), i.id)) if unknown else None


def pick_closest(
    items: Sequence[pystac.Item], when: dt.datetime, max_days: float | None
) -> pystac.Item | None:
    """The item closest in time to ``when``, within ``max_days`` when given (ties: item id)."""
    scored = [(abs(offset_days(i, when)), i.id, i) for i in items]
    scored = [s for s in scored if max_days is None or s[0] <= max_days]
    return min(scored, key=lambda s: (s[0], s[1]))[2] if scored else None


def pick_per_orbit(items: Sequence[pystac.Item], when: dt.datetime, max_days: float) -> list[pystac.Item]:
    """The closest item per ``sat:orbit_state``; items without one only when no item has an orbit."""
    by_orbit: dict[str, list[pystac.Item]] = {}
    for item in items:
        by_orbit.setdefault(str(item.properties.get("sat:orbit_state") or ""), []).append(item)
    known = sorted(o for o in by_orbit if o)
    groups = [by_orbit[o] for o in known] if known else list(by_orbit.values())
    picks = [pick_closest(group, when, max_days) for group in groups]
    return [p for p in picks if p is not None]


# ------------------------------------------------------------------------------------------------------
# Backends: both return the candidate items of one collection around one footprint and time range.


class ItemFinder(Protocol):
    def find(
        self, collection: str, bbox: BBox, start: dt.datetime | None, end: dt.datetime | None
    ) -> list[pystac.Item]: ...


def _overlaps(item: pystac.Item, start: dt.datetime | None, end: dt.datetime | None) -> bool:
    item_start, item_end = item_interval(item)
    return (start is None or item_end >= start) and (end is None or item_start <= end)


def _bbox_intersects(item: pystac.Item, bbox: BBox) -> bool:
    if item.bbox is None:
        return item.geometry is not None
    b = item.bbox
    iw, is_, ie, in_ = (b[0], b[1], b[2], b[3]) if len(b) == 4 else (b[0], b[1], b[3], b[4])
    return iw <= bbox[2] and bbox[0] <= ie and is_ <= bbox[3] and bbox[1] <= in_


class StaticCatalogFinder:
    """A static catalog, walked once; items are grouped by their collection id.

    Every item is held in memory, which suits local catalogs and tests; search a STAC API for continental
    collections."""

    def __init__(self, location: str):
        catalog = pystac.Catalog.from_file(location)
        self.by_collection: dict[str, list[pystac.Item]] = {}
        for item in catalog.get_items(recursive=True):
            parent = item.get_parent()
            key = item.collection_id or (parent.id if parent is not None else "")
            self.by_collection.setdefault(key, []).append(item)

    def find(
        self, collection: str, bbox: BBox, start: dt.datetime | None, end: dt.datetime | None
    ) -> list[pystac.Item]:
        return [
            i
            for i in self.by_collection.get(collection, [])
            if _bbox_intersects(i, bbox) and _overlaps(i, start, end)
        ]


class StacApiFinder:
    """A STAC API searched per anchor and collection with pystac-client (imported only here)."""

    def __init__(self, url: str, max_items: int, modifier: Callable[[Any], Any] | None, timeout_s: float):
        from pystac_client import Client
        from pystac_client.exceptions import APIError

        # a timeout, because an endpoint that accepts connections and never answers hangs a build for good
        try:
            self.client = Client.open(url, modifier=modifier, timeout=timeout_s)
        except (APIError, OSError, ValueError, pystac.STACError) as err:
            # requests' errors are OSErrors; a non-STAC answer is a STACError or a JSON ValueError
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError(
                f"cannot open the STAC API at {url}: {type(err).__name__}: {first[:300]}; expected a STAC API "
                "root URL that answers (or a static catalog.json path)"
            ) from None
        self.max_items = max_items

    def find(
        self, collection: str, bbox: BBox, start: dt.datetime | None, end: dt.datetime | None
    ) -> list[pystac.Item]:
        from pystac_client.exceptions import APIError

        when = None if start is None and end is None else (start, end)
        try:
            search = self.client.search(
                collections=[collection], bbox=bbox, datetime=when, max_items=self.max_items
            )
            return list(search.items())
        except (APIError, OSError) as err:
            raise QuarantineError(
                "unreadable_path", f"STAC search of {collection!r} around {bbox} failed: {err}"
            ) from err


def _planetary_computer_modifier() -> Callable[[Any], Any]:
    try:
        import planetary_computer
    except ImportError:
        raise ImportError(
            "sign='planetary-computer' needs the planetary-computer package (pip install planetary-computer)"
        ) from None
    return planetary_computer.sign_inplace


SIGNERS: Mapping[str, Callable[[], Callable[[Any], Any]]] = {
    "planetary-computer": _planetary_computer_modifier,
}


def _is_static(location: str) -> bool:
    return location.endswith(".json") or Path(location).exists()


# ------------------------------------------------------------------------------------------------------
# Configuration: the profile table plus the user's overrides.


def _as_band_tuple(bands: str | Sequence[str]) -> tuple[str, ...]:
    return tuple(b.strip() for b in bands.split(",")) if isinstance(bands, str) else tuple(bands)


def resolve_layers(
    profile: StacProfile,
    s2_product: str,
    modalities: Sequence[str] | None,
    collections: Mapping[str, str] | None,
    assets: Mapping[str, Mapping[str, str | Sequence[str]]] | None,
) -> tuple[StacLayer, ...]:
    """The layers to search: the profile's, for one S2 product, restricted and overridden by options.

    ``collections``/``assets`` keys are registry names (``sentinel2_l2a``, ``canopy_height``); a modality
    the profile lacks is added when both give it (timing ``"nearest"``, for static products).
    """
    collections, assets = dict(collections or {}), dict(assets or {})
    table = {layer.modality: layer for layer in profile.layers}
    wanted_s2 = f"sentinel2_{s2_product}"
    names = (
        list(modalities)
        if modalities is not None
        else [m for m in table if not m.startswith("sentinel2_") or m == wanted_s2]
    )
    names += [m for m in collections if m not in names and m in assets]
    layers = []
    for name in names:
        resolve(name)  # KeyError naming the known modalities for a typo
        layer = table.get(name)
        if layer is None and not (name in collections and name in assets):
            raise ValueError(
                f"profile {profile.name!r} has no layer {name!r}; it has {sorted(table)}. "
                f"Give both collections[{name!r}] and assets[{name!r}] to add it"
            )
        layer = layer or StacLayer(name, collections[name], (), "nearest")
        if name in collections:
            layer = replace(layer, collection=collections[name])
        if name in assets:
            layer = replace(layer, assets=tuple((k, _as_band_tuple(v)) for k, v in assets[name].items()))
        _check_band_names(layer)
        layers.append(layer)
    references = [layer.modality for layer in layers if layer.timing == "reference"]
    if len(references) != 1:
        raise ValueError(
            "exactly one Sentinel-2 layer must be searched (it sets the date the other layers are "
            f"matched to); the configuration has {references or 'none'}"
        )
    return tuple(layers)


def _check_band_names(layer: StacLayer) -> None:
    modality = get_modality(layer.modality)
    if not layer.assets:
        raise ValueError(f"layer {layer.modality!r} maps no assets; expected {{asset key: band names}}")
    for key, bands in layer.assets:
        unknown = [b for b in bands if b not in modality.band_names]
        if unknown:
            raise ValueError(
                f"asset {key!r} of {layer.modality!r} names bands {unknown} that {modality.name} does not "
                f"have; expected names from {list(modality.band_names)}"
            )


# ------------------------------------------------------------------------------------------------------
# The source.


class StacSource:
    """``stac:LOCATION``: one :class:`AnchorRequest` per anchor of the anchor list (see module docstring).

    Args:
        location: STAC API root URL, or a static catalog (``catalog.json`` path or URL).
        anchors: path of the anchor list (CSV or JSON Lines: ``anchor_id,lat,lon[,date]``).
        profile: a :data:`PUBLIC_PROFILES` name; default: the one whose URL the location names, else
            :data:`DEFAULT_PROFILE`.
        s2_product: ``"l2a"`` or ``"l1c"``; which Sentinel-2 layer of the profile is the reference.
        modalities: registry names to search (default: every layer of the profile).
        collections: registry name -> collection id, overriding the profile.
        assets: registry name -> {asset key: band names in file order}, replacing the profile's assets.
        datetime: ``START/END`` searched for anchors without a date.
        max_cloud_cover: S2 scene cloud cover must be under this (percent).
        anchor_window_days: S2 search window around an anchor's date.
        window_days: S1 / Dynamic World window around the chosen S2 datetime.
        footprint_m: side of the square footprint in metres (the aligner's default grid is 128 x 10 m).
        max_items: cap on items returned by one API search.
        sign: ``"planetary-computer"`` to sign asset hrefs with SAS tokens.
        timeout_s: per-request timeout of API searches, in seconds.
        strict: raise the first :class:`QuarantineError` instead of recording it in ``quarantined``.
    """

    def __init__(
        self,
        location: str,
        *,
        anchors: str | Path,
        profile: str | None = None,
        s2_product: str = "l2a",
        modalities: Sequence[str] | None = None,
        collections: Mapping[str, str] | None = None,
        assets: Mapping[str, Mapping[str, str | Sequence[str]]] | None = None,
        datetime: str = "2017-01-01/2022-12-31",
        max_cloud_cover: float = 10.0,
        anchor_window_days: float = 15.0,
        window_days: float = 15.0,
        footprint_m: float = 1280.0,
        max_items: int = 200,
        sign: str | None = None,
        timeout_s: float = 60.0,
        strict: bool = False,
    ):
        if s2_product not in ("l2a", "l1c"):
            raise ValueError(f"s2_product must be 'l2a' or 'l1c', got {s2_product!r}")
        if sign is not None and sign not in SIGNERS:
            raise ValueError(f"sign must be one of {sorted(SIGNERS)} or None, got {sign!r}")
        _require_positive(
            max_cloud_cover=max_cloud_cover,
            window_days=window_days,
            anchor_window_days=anchor_window_days,
            footprint_m=footprint_m,
            max_items=max_items,
            timeout_s=timeout_s,
        )
        self.location = location
        if profile is not None and profile not in PUBLIC_PROFILES:
            raise ValueError(f"profile must be one of {sorted(PUBLIC_PROFILES)} or None, got {profile!r}")
        self.profile = PUBLIC_PROFILES[profile or _profile_for(location)]
        self.layers = resolve_layers(self.profile, s2_product, modalities, collections, assets)
        self.anchor_list = read_anchor_list(anchors)
        self.search_range = _parse_range(datetime)
        self.max_cloud_cover = max_cloud_cover
        self.anchor_window = dt.timedelta(days=anchor_window_days)
        self.window_days = window_days
        self.footprint_m = footprint_m
        self.max_items = max_items
        self.sign = sign
        self.timeout_s = timeout_s
        self._log = QuarantineLog(strict)
        self._finder: ItemFinder | None = None
        #: the options in force, as describe() reports them
        self.options = {
            "anchors": str(anchors), "profile": self.profile.name, "s2_product": s2_product,
            "modalities": [layer.modality for layer in self.layers], "datetime": datetime,
            "max_cloud_cover": max_cloud_cover, "anchor_window_days": anchor_window_days,
            "window_days": window_days, "footprint_m": footprint_m, "max_items": max_items, "sign": sign,
            "timeout_s": timeout_s,
        }  # fmt: skip
        if not _is_static(location):
            self.finder()  # an unreachable API fails here, in one line, before any work is planned

    @property
    def quarantined(self) -> list[QuarantineRecord]:
        return self._log.records

    def describe(self) -> str:
        kind = "static catalog" if _is_static(self.location) else "STAC API"
        layers = ", ".join(f"{layer.modality}<-{layer.collection}" for layer in self.layers)
        return (
            f"STAC ({kind} {self.location}, profile {self.profile.name}): {len(self.anchor_list)} anchors; "
            f"layers {layers}; S2 cloud cover < {self.max_cloud_cover}%, others within +-{self.window_days} d; "
            f"options in force: {describe_options(self.options)}"
        )

    def finder(self) -> ItemFinder:
        """The backend, opened on first use (a static catalog is read once)."""
        if self._finder is None:
            if _is_static(self.location):
                self._finder = StaticCatalogFinder(self.location)
            else:
                modifier = SIGNERS[self.sign]() if self.sign else None
                self._finder = StacApiFinder(self.location, self.max_items, modifier, self.timeout_s)
        return self._finder

    def anchors(self) -> Iterator[AnchorRequest]:
        for anchor in self.anchor_list:
            try:
                yield self.request(anchor)
            except QuarantineError as err:
                self._log.add(anchor.anchor_id, err)

    def request(self, anchor: Anchor) -> AnchorRequest:
        """Choose the items for one anchor; raises :class:`QuarantineError` when S2 has no usable scene."""
        bbox = footprint_bbox(anchor.lat, anchor.lon, self.footprint_m)
        reference_layer = next(layer for layer in self.layers if layer.timing == "reference")
        s2 = self._choose_reference(reference_layer, anchor, bbox)
        s2_time = item_interval(s2)[0]
        refs = self._layer_refs(reference_layer, s2, s2_time)
        for layer in self.layers:
            if layer.timing != "reference":
                for item in self._choose(layer, bbox, s2_time):
                    refs += self._layer_refs(layer, item, s2_time)
        return AnchorRequest(anchor_id=anchor.anchor_id, layers=refs, lat=anchor.lat, lon=anchor.lon)

    def _candidates(
        self, layer: StacLayer, bbox: BBox, start: dt.datetime | None, end: dt.datetime | None
    ) -> list[pystac.Item]:
        # coverage and time are re-checked here whatever the backend: servers differ in how they treat
        # intervals, and a scene that only touches the footprint is useless to the aligner
        found = self.finder().find(layer.collection, bbox, start, end)
        return [i for i in found if covers(i, bbox) and _overlaps(i, start, end)]

    def _choose_reference(self, layer: StacLayer, anchor: Anchor, bbox: BBox) -> pystac.Item:
        if anchor.date is not None:
            start, end = anchor.date - self.anchor_window, anchor.date + self.anchor_window
        else:
            start, end = self.search_range
        found = self._candidates(layer, bbox, start, end)
        chosen = pick_reference(found, anchor.date, self.max_cloud_cover)
        if chosen is None:
            clouds = sorted(c for c in map(_cloud, found) if c is not None)
            raise QuarantineError(
                "no_clear_scene",
                f"anchor {anchor.anchor_id!r}: expected a {layer.collection} item covering the footprint "
                f"between {start.date()} and {end.date()} with eo:cloud_cover < {self.max_cloud_cover}; "
                f"found {len(found)} covering items with cloud cover {clouds}",
            )
        return chosen

    def _choose(self, layer: StacLayer, bbox: BBox, s2_time: dt.datetime) -> list[pystac.Item]:
        if layer.timing == "window":
            window = dt.timedelta(days=self.window_days)
            found = self._candidates(layer, bbox, s2_time - window, s2_time + window)
            if layer.split_orbits:
                return pick_per_orbit(found, s2_time, self.window_days)
            picked = pick_closest(found, s2_time, self.window_days)
        else:
            picked = pick_closest(self._candidates(layer, bbox, None, None), s2_time, None)
        return [picked] if picked is not None else []

    def _layer_refs(self, layer: StacLayer, item: pystac.Item, s2_time: dt.datetime) -> list[LayerRef]:
        orbit = str(item.properties.get("sat:orbit_state") or "") if layer.split_orbits else ""
        class_map = (
            parse_class_map(layer.class_map, get_modality(layer.modality)) if layer.class_map else None
        )
        props: dict[str, Any] = {
            **layer.hints,
            "stac:item": item.id,
            "stac:collection": layer.collection,
            "offset_days": round(offset_days(item, s2_time), 4),
        }
        if layer.timing == "reference":
            props["eo:cloud_cover"] = item.properties.get("eo:cloud_cover")
            # what the aligner needs to remove the radiometric offset of baseline >= 04.00 (see align.py)
            for key in S2_RADIOMETRY_KEYS:
                if key in item.properties:
                    props[key] = item.properties[key]
        if orbit:
            props["sat:orbit_state"] = orbit
        if "start_datetime" in item.properties:
            props["start_datetime"] = item.properties["start_datetime"]
            props["end_datetime"] = item.properties.get("end_datetime")
        refs = []
        for key, bands in layer.assets:
            asset = item.assets.get(key)
            if asset is None:
                continue  # e.g. a product generation without that band: the aligner sees it absent
            names = tuple(f"{b}_{orbit[:3]}" for b in bands) if orbit else bands
            refs.append(
                LayerRef(
                    modality=layer.modality,
                    path=_asset_href(asset),
                    bands=names,
                    datetime=layer_time(item, s2_time),
                    class_map=class_map,
                    properties={**props, **_raster_band_scaling(asset), "stac:asset": key},
                )
            )
        return refs


def _asset_href(asset: pystac.Asset) -> str:
    """The asset's href as rasterio opens it. An absolute local path or a URL is taken as it is: pystac would
    join a local path onto the host of an item's remote ``self`` link (a mirror of an API's items)."""
    href = asset.href
    if "://" in href or href.startswith("/vsi") or Path(href).is_absolute():
        return href
    return asset.get_absolute_href() or href


#: item properties that say whether a Sentinel-2 item's pixels carry the +1000 DN offset
S2_RADIOMETRY_KEYS = ("s2:processing_baseline", "earthsearch:boa_offset_applied")


def _raster_band_scaling(asset: pystac.Asset) -> dict[str, float]:
    """``raster:bands`` offset/scale of a one-band asset (Earth Search: -0.1 / 0.0001 for baseline >= 04.00)."""
    bands = asset.extra_fields.get("raster:bands") or []
    if len(bands) != 1 or not isinstance(bands[0], Mapping) or bands[0].get("offset") is None:
        return {}
    return {"raster:offset": float(bands[0]["offset"]), "raster:scale": float(bands[0].get("scale", 1.0))}


def _require_positive(**values: float) -> None:
    for name, value in values.items():
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive number, got {value!r}")


def _profile_for(location: str) -> str:
    for name, profile in PUBLIC_PROFILES.items():
        if profile.url.split("//", 1)[1].split("/", 1)[0] in location:
            return name
    return DEFAULT_PROFILE


def _parse_range(text: str) -> tuple[dt.datetime, dt.datetime]:
    start, sep, end = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return parse_time(start), parse_time(end)
    except ValueError:
        raise ValueError(
            f"datetime must be START/END in ISO 8601 (e.g. 2017-01-01/2022-12-31), got {text!r}"
        ) from None
