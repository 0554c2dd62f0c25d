"""Local files through a manifest: one row per raster file, grouped into one :class:`AnchorRequest` per anchor.

Columns (CSV with a header row, or JSON Lines with one object per line):

* ``anchor_id`` (required): rows sharing it are the layers of one anchor;
* ``modality`` (required): a registry name, with the product variant where one exists
  (``sentinel2_l1c``, ``sentinel2_l2a``, ``sentinel1``, ``dem``, ``esa_worldcover``, ``dynamic_world``, ...);
* ``path`` (required): the raster file; relative paths resolve against the manifest's folder;
* ``bands`` (optional): the file's band names in the file's order, comma-separated (a JSON list in JSON
  Lines works too); empty means the registry's canonical order (see :func:`canonical_bands`);
* ``datetime`` (optional): ISO 8601 acquisition time; empty means "read it from the file's tags";
* ``lat``, ``lon`` (optional): the anchor; empty means the centre of the files' common footprint;
* ``class_map`` (optional): for a categorical layer from another product, ``SRC:DST`` pairs joined by
  commas, ``DST`` a class name of the target layer or ``nodata`` (unmapped codes become no-data). The generic
  ``label`` layer (classes declared per task) takes integer codes (``0:0,1:1,9:nodata``) and, without a
  class map, keeps every code 0..254 as it is (255 is its no-data).

Any other column (``cloud_cover``, ``radiometric_offset``, ...) is kept in ``LayerRef.properties``; the
aligner reads ``cloud_cover`` (percent) for Sentinel-2 and ``radiometric_offset`` (``1000`` for products of
processing baseline >= 04.00, or ``processing_baseline``), and removes that offset (see
:func:`dataset_scripts.align.harmonise_sentinel2`).

A malformed manifest (a missing column, an unknown modality or band, a bad class map, a latitude out of
range) raises ``ValueError`` at construction, naming the line: that is a mistake in the user's input file,
not bad data, so nothing is built. An anchor id that names two different anchors (the same band of a
modality given twice, or rows disagreeing on lat/lon) is quarantined at build time with reason
``duplicate_anchor``: its rows cannot be told apart, so none of them is used.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from modeling_geomeld.modalities import SENTINEL2_ALL_BANDS, Modality, parse_class_map, resolve

from ..types import AnchorRequest, LayerRef, QuarantineError
from .quarantine import QuarantineLog

REQUIRED_COLUMNS = ("anchor_id", "modality", "path")
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, "bands", "datetime", "lat", "lon", "class_map")


def canonical_bands(modality: str, band_count: int) -> tuple[str, ...] | None:
    """The band names a file without a ``bands`` column is assumed to carry, or ``None`` if no order fits.

    Sentinel-2 L1C: all 13 bands (B10 included, dropped later by name); L2A: the 12 bands without B10; a
    one-band DEM: ``elevation`` (slope is derived); otherwise the registry's default bands.
    """
    mod, variant = resolve(modality)
    if mod.name == "sentinel2" and variant == "l1c":
        options: tuple[tuple[str, ...], ...] = (SENTINEL2_ALL_BANDS, mod.default_bands)
    elif mod.name == "dem":
        options = (("elevation",), mod.default_bands)
    else:
        options = (mod.default_bands,)
    return next((o for o in options if len(o) == band_count), None)


def _cell(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value).strip()


def _parse_bands(text: str, mod: Modality, where: str) -> tuple[str, ...] | None:
    if not text:
        return None
    names = tuple(b.strip() for b in text.split(",") if b.strip())
    unknown = [b for b in names if b not in mod.band_names]
    if unknown:
        raise ValueError(
            f"{where}: unknown {mod.name} bands {unknown}; expected names from {list(mod.band_names)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: band names must be unique, found {list(names)}")
    return names


def _parse_coordinate(text: str, name: str, limit: float, where: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {name} must be a number in degrees, found {text!r}") from None
    if not -limit <= value <= limit:
        raise ValueError(f"{where}: {name} must lie in [-{limit}, {limit}], found {value}")
    return value


def _parse_row(
    row: Mapping[str, Any], base: Path, where: str
) -> tuple[str, LayerRef, float | None, float | None]:
    missing = [c for c in REQUIRED_COLUMNS if not _cell(row, c)]
    if missing:
        raise ValueError(f"{where}: expected non-empty columns {list(REQUIRED_COLUMNS)}, missing {missing}")
    modality = _cell(row, "modality")
    try:
        mod, _ = resolve(modality)
    except KeyError as err:
        raise ValueError(f"{where}: {err.args[0]}") from None
    from ..writer import LAYERS

    if mod.name not in LAYERS:  # registered after the writer fixed its schema: it would be dropped unseen
        raise ValueError(
            f"{where}: modality {mod.name!r} was registered after the builder's storage schema was fixed (it holds "
            f"{list(LAYERS)}); declare it with GEOMELD_MODALITIES=FILE in the environment, so every builder "
            "process and worker knows it from the start"
        )
    class_map = None
    if text := _cell(row, "class_map"):
        try:
            class_map = parse_class_map(text, mod)
        except (KeyError, ValueError) as err:
            raise ValueError(f"{where}: bad class_map {text!r}: {err.args[0]}") from None
    if class_map is None and mod.name == "label":
        # the generic label layer's classes are the task's: its codes pass unchanged (the file's no-data still applies)
        class_map = {code: code for code in range(int(mod.nodata or 255))}
    path = Path(_cell(row, "path")).expanduser()
    if not path.is_absolute() and "://" not in str(path) and not str(path).startswith("/vsi"):
        path = base / path
    properties = {k: v for k, v in row.items() if k not in KNOWN_COLUMNS and v not in (None, "")}
    layer = LayerRef(
        modality=modality,
        path=str(path),
        bands=_parse_bands(_cell(row, "bands"), mod, where),
        datetime=_cell(row, "datetime") or None,
        class_map=class_map,
        properties=properties,
    )
    lat = _parse_coordinate(_cell(row, "lat"), "lat", 90.0, where)
    lon = _parse_coordinate(_cell(row, "lon"), "lon", 180.0, where)
    return _cell(row, "anchor_id"), layer, lat, lon


def _read_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(line description, row) for every data row of a CSV or JSON Lines manifest."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            absent = [c for c in REQUIRED_COLUMNS if c not in header]
            if absent:
                raise ValueError(
                    f"{path}: the header must name {list(REQUIRED_COLUMNS)}; missing {absent}, found {header}"
                )
            for row in reader:
                yield f"{path.name} line {reader.line_num}", row
    elif suffix in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path.name} line {number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{where}: expected one JSON object per line, found invalid JSON ({err.msg})"
                    ) from None
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: expected a JSON object, found {type(row).__name__}")
                yield where, row
    else:
        raise ValueError(
            f"manifest {path} must end in .csv, .jsonl or .ndjson, found {suffix or 'no suffix'!r}"
        )


class ManifestSource:
    """Anchors from a CSV / JSON Lines manifest of local raster files (``--source manifest:PATH``).

    Args:
        location: path of the manifest.
        strict: re-raise the first quarantined anchor instead of recording it (``geomeld build --strict``).
    """

    def __init__(self, location: str, *, strict: bool = False, **options: object):
        if options:
            raise TypeError(f"ManifestSource takes no options besides strict, got {sorted(options)}")
        self.path = Path(location).expanduser().resolve()
        if not self.path.is_file():
            raise ValueError(f"manifest {self.path} does not exist or is not a file")
        self._log = QuarantineLog(strict)
        self._anchors: dict[str, list[tuple[LayerRef, float | None, float | None]]] = {}
        for where, row in _read_rows(self.path):
            anchor_id, layer, lat, lon = _parse_row(row, self.path.parent, where)
            self._anchors.setdefault(anchor_id, []).append((layer, lat, lon))
        if not self._anchors:
            raise ValueError(f"manifest {self.path} has no data rows; expected one row per raster file")

    @property
    def quarantined(self) -> list:
        """Records of anchors skipped by this source (duplicate anchor ids), for the build report."""
        return self._log.records

    def describe(self) -> str:
        return f"manifest {self.path} ({len(self._anchors)} anchors)"

    def anchors(self) -> Iterator[AnchorRequest]:
        """One request per anchor id, in the manifest's order of first appearance."""
        for anchor_id, rows in self._anchors.items():
            try:
                yield _request(anchor_id, rows)
            except QuarantineError as err:
                self._log.add(anchor_id, err)


def _request(anchor_id: str, rows: list[tuple[LayerRef, float | None, float | None]]) -> AnchorRequest:
    """Group one anchor's rows; an id naming two different anchors raises ``duplicate_anchor``."""
    seen: dict[str, dict[str, str]] = {}  # modality -> band -> path; "*" stands for "all bands of the file"
    for layer, _, _ in rows:
        mod, _ = resolve(layer.modality)
        given = seen.setdefault(mod.name, {})
        for band in layer.bands or ("*",):
            clash = next((b for b in given if b in (band, "*") or band == "*"), None)
            if clash is not None:
                raise QuarantineError(
                    "duplicate_anchor",
                    f"anchor {anchor_id!r}: expected each {mod.name} band once per anchor id, found "
                    f"{'all bands' if '*' in (band, clash) else band} in {given[clash]} and {layer.path} "
                    "(the id names two anchors)",
                )
            given[band] = layer.path
    coords = {(lat, lon) for _, lat, lon in rows if lat is not None or lon is not None}
    if len(coords) > 1:
        raise QuarantineError(
            "duplicate_anchor",
            f"anchor {anchor_id!r}: expected one lat/lon per anchor id, found {sorted(coords, key=str)}",
        )
    lat, lon = next(iter(coords)) if coords else (None, None)
    if (lat is None) != (lon is None):
        raise QuarantineError(
            "bad_location",
            f"anchor {anchor_id!r}: expected both lat and lon or neither, found lat={lat}, lon={lon}",
        )
    return AnchorRequest(anchor_id, [layer for layer, _, _ in rows], lat=lat, lon=lon)
