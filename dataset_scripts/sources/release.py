"""The original GeoMeld release as a source: WebDataset ``.tar`` shards with one ``.h5`` per sample.

``--source geomeld-release:LOCATION``, ``LOCATION`` a shard (``.tar``, ``.tar.gz``), a folder of shards,
a glob, or an fsspec URL of any of these (``hf://datasets/...``). Shards are read in name order, as
streams: members are never extracted to disk and nothing is ever unpickled (only ``.h5``/``.hdf5`` and
``.json`` members are read; anything else, ``.pyd``/``.pickle`` included, is skipped).

Each sample is a WebDataset group: consecutive members sharing a key (the path up to the first dot of
the file name). Its ``.h5`` holds the keys of the spec's table, which map onto the registry as in
:data:`RELEASE_LAYERS`: ``sentinel2`` (12 bands, or 9 in the NAIP subset, which drops B2-B4),
``sentinel1`` (8: VV, VH, HH, HV ascending then descending), ``aster`` -> ``dem`` (elevation, slope),
``canopy_height`` (height, std), ``esa_worldcover`` (codes 10..100), ``dynamic_world`` (labels + 1, 0 = no
data, the registry's convention too) and ``naip`` (R, G, B at 10x the grid). ``metadata`` is JSON (a
string dataset or attribute in the ``.h5``, or a ``.json`` member of the same group) with ``tile_id``, ``lat``,
``long``, ``acquisition_date``, ``terrain_class``, ``osm_tags``, ``water_analysis`` and ``band_names``.

Band order is taken by name: ``band_names`` (a mapping from ``.h5`` key to names, or a plain list for
``sentinel2``) names each array's bands in the release's spelling (``B1``, ``B8A``, ``VV_asc``, ...), which
:func:`canonical_band_name` turns into registry names; without it the documented release order applies.
Arrays come out in the registry's canonical order (B08 before B8A) via
:func:`~modeling_geomeld.modalities.reorder_bands`, with their stored dtype.

A corrupt sample (unreadable ``.h5``, truncated member, band names disagreeing with the array) is
quarantined on its own (see :mod:`dataset_scripts.sources.quarantine`) and the iteration goes on; a shard
truncated mid-member loses the rest of that shard only. :func:`decode_member` is a plain function of
bytes, so a distributed builder can ship :class:`ReleaseMember` objects to workers and decode there.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import tarfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import h5py
import numpy as np

from modeling_geomeld.modalities import (
    MODALITIES,
    SENTINEL1_RELEASE_ORDER,
    SENTINEL2_RELEASE_ORDER,
    reorder_bands,
)

from ..types import AlignedSample, QuarantineError
from .quarantine import QuarantineLog, QuarantineRecord


@dataclass(frozen=True)
class ReleaseLayer:
    """How one ``.h5`` key of the release maps onto the registry."""

    modality: str
    release_order: tuple[str, ...]  # band names (registry spelling) in the release's stored order
    #: other documented layouts, by band count (the NAIP subset's 9-band Sentinel-2)
    alternatives: Mapping[int, tuple[str, ...]] = field(default_factory=dict)


#: the release drops B2-B4 from Sentinel-2 where NAIP supplies the visible bands
NAIP_SUBSET_S2_ORDER: tuple[str, ...] = tuple(
    b for b in SENTINEL2_RELEASE_ORDER if b not in {"B02", "B03", "B04"}
)

RELEASE_LAYERS: Mapping[str, ReleaseLayer] = {
    "sentinel2": ReleaseLayer("sentinel2", SENTINEL2_RELEASE_ORDER, {9: NAIP_SUBSET_S2_ORDER}),
    "sentinel1": ReleaseLayer("sentinel1", SENTINEL1_RELEASE_ORDER),
    "aster": ReleaseLayer("dem", ("elevation", "slope")),
    "canopy_height": ReleaseLayer("canopy_height", ("height", "std")),
    "esa_worldcover": ReleaseLayer("esa_worldcover", ("class",)),
    "dynamic_world": ReleaseLayer("dynamic_world", ("label",)),
    "naip": ReleaseLayer("naip", ("R", "G", "B")),
}
#: NAIP is 1 m over the same footprint as the 10 m grid
NAIP_SCALE = 10
_H5_EXTENSIONS = ("h5", "hdf5")
_SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


# ------------------------------------------------------------------------------------------------------
# Band names.

_S2_NAME = re.compile(r"^(?:S2_?)?B0?(\d{1,2})(A?)$", re.IGNORECASE)
_POLARISATIONS = ("VV", "VH", "HH", "HV")


def canonical_band_name(modality: str, name: str) -> str:
    """A release band name in registry spelling: ``B1`` -> ``B01``, ``b8a`` -> ``B8A``,
    ``asc_VV``/``VV_ascending`` -> ``VV_asc``; raises ``ValueError`` for a name the registry lacks."""
    known = MODALITIES[modality].band_names
    if name in known:
        return name
    if modality == "sentinel2" and (m := _S2_NAME.match(name.strip())):
        candidate = f"B{int(m.group(1)):02d}" if not m.group(2) else f"B{int(m.group(1))}A"
    elif modality == "sentinel1":
        candidate = _s1_name(name)
    else:
        lowered = {b.lower(): b for b in known}
        candidate = lowered.get(name.strip().lower(), name)
    if candidate not in known:
        raise ValueError(f"{modality} band {name!r} is not one of the registry's bands {list(known)}")
    return candidate


def _s1_name(name: str) -> str:
    tokens = [t for t in re.split(r"[^a-z]+", name.lower()) if t]
    pols = [t.upper() for t in tokens if t.upper() in _POLARISATIONS]
    orbits = [t[:3] for t in tokens if t.startswith(("asc", "des"))]
    if len(pols) != 1 or len(orbits) > 1:
        return name
    return f"{pols[0]}_{orbits[0]}" if orbits else pols[0]


def release_band_names(key: str, count: int, named: Sequence[str] | None, where: str = "") -> tuple[str, ...]:
    """Registry names of the ``count`` bands stored under ``key``: from metadata, else the release order."""
    layer = RELEASE_LAYERS[key]
    if named is not None:
        names = tuple(canonical_band_name(layer.modality, str(n)) for n in named)
    elif count == len(layer.release_order):
        names = layer.release_order
    else:
        names = layer.alternatives.get(count, ())
    if len(names) != count:
        expected = [len(layer.release_order), *layer.alternatives]
        source = f"metadata band_names {list(named)}" if named is not None else f"{expected} bands"
        raise QuarantineError(
            "band_count_mismatch",
            f"{where}release key {key!r}: expected {source}, found {count} bands in the array",
        )
    return names


# ------------------------------------------------------------------------------------------------------
# Reading shards as streams.


@dataclass(frozen=True)
class ReleaseMember:
    """The raw bytes of one WebDataset sample (one key), as read from a shard.

    ``files`` maps extension (``"h5"``, ``"json"``) to bytes; ``read_error`` says why the bytes are
    incomplete (a truncated shard), in which case :func:`decode_member` quarantines the sample.
    """

    shard: str
    key: str
    files: dict[str, bytes]
    read_error: str | None = None


def _split_name(name: str) -> tuple[str, str]:
    """WebDataset convention: ``dir/000123.sentinel.h5`` -> key ``dir/000123``, extension ``sentinel.h5``."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def _wanted(ext: str) -> str | None:
    """The extension we read, normalised (``"h5"``/``"json"``), or ``None`` to skip the member."""
    last = ext.rsplit(".", 1)[-1].lower()
    if last in _H5_EXTENSIONS:
        return "h5"
    return "json" if last == "json" else None


def iter_shard(shard: str, stream: io.BufferedIOBase) -> Iterator[ReleaseMember]:
    """Group a tar stream's members by key; a read failure ends the shard with one incomplete member."""
    key = ""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                member_key, ext = _split_name(info.name)
                if member_key != key and key:
                    yield ReleaseMember(shard, key, files)
                    files = {}
                key = member_key
                kind = _wanted(ext)
                payload = tar.extractfile(info)
                if kind is not None and payload is not None:
                    files[kind] = payload.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        yield ReleaseMember(shard, key or "<shard>", files, read_error=f"{type(err).__name__}: {err}")
        return
    if key:
        yield ReleaseMember(shard, key, files)


def shard_paths(location: str) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """The shards at ``location`` (a shard, a folder, a glob or a URL of these), in name order."""
    fs, path = fsspec.core.url_to_fs(location)
    if any(c in path for c in "*?["):
        paths = list(fs.glob(path))
    elif fs.isdir(path):
        paths = [p for p in fs.ls(path, detail=False) if str(p).endswith(_SHARD_SUFFIXES)]
    else:
        paths = [path]
    missing = [p for p in paths if not fs.exists(p)]
    if missing or not paths:
        raise ValueError(
            f"geomeld-release location {location!r} holds no shards (missing: {missing}); expected a "
            ".tar/.tar.gz file, a folder of them, or a glob"
        )
    return fs, sorted(paths)


# ------------------------------------------------------------------------------------------------------
# Decoding one sample.


def _corrupt(member: ReleaseMember, what: str) -> QuarantineError:
    return QuarantineError("corrupt_file", f"{member.shard}:{member.key}: {what}")


def _read_h5(member: ReleaseMember) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays of the known keys and the metadata JSON of one ``.h5`` (read from memory)."""
    if member.read_error is not None:
        raise _corrupt(member, f"expected a complete sample, the shard is truncated ({member.read_error})")
    if "h5" not in member.files:
        raise _corrupt(member, f"expected a .h5 member, found only {sorted(member.files) or 'nothing'}")
    try:
        with h5py.File(io.BytesIO(member.files["h5"]), "r") as h5:
            arrays = {key: np.asarray(h5[key][()]) for key in RELEASE_LAYERS if key in h5}
            meta_raw = h5["metadata"][()] if "metadata" in h5 else h5.attrs.get("metadata")
        meta_raw = meta_raw if meta_raw is not None else member.files.get("json")
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise _corrupt(member, f"expected a readable HDF5 file, h5py says: {err}") from err
    return arrays, _parse_metadata(member, meta_raw)


def _parse_metadata(member: ReleaseMember, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, np.ndarray):
        raw = raw.tobytes() if raw.dtype == np.uint8 else raw.item()
    try:
        meta = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _corrupt(member, f"expected JSON metadata, found {str(raw)[:60]!r} ({err})") from err
    if not isinstance(meta, dict):
        raise _corrupt(member, f"expected a JSON object as metadata, found {type(meta).__name__}")
    return meta


def _named_bands(meta: Mapping[str, Any], key: str) -> Sequence[str] | None:
    """``band_names`` for one ``.h5`` key: ``{key or modality: [...]}``, or a plain list for sentinel2."""
    names = meta.get("band_names")
    if isinstance(names, Mapping):
        found = names.get(key, names.get(RELEASE_LAYERS[key].modality))
        return list(found) if found is not None else None
    if isinstance(names, list) and key == "sentinel2":
        return [str(n) for n in names]
    return None


def _check_grid(member: ReleaseMember, arrays: Mapping[str, np.ndarray]) -> None:
    """10 m layers share one (H, W); NAIP is NAIP_SCALE times it over the same footprint."""
    shapes = {k: a.shape[-2:] for k, a in arrays.items() if k != "naip"}
    if len(set(shapes.values())) > 1:
        raise _corrupt(member, f"expected all 10 m layers on one grid, found shapes {shapes}")
    if "naip" in arrays and shapes:
        (h, w), naip = next(iter(shapes.values())), arrays["naip"].shape[-2:]
        if naip != (h * NAIP_SCALE, w * NAIP_SCALE):
            raise _corrupt(
                member, f"expected naip {(h * NAIP_SCALE, w * NAIP_SCALE)} for a {(h, w)} grid, found {naip}"
            )


def _canonical(
    modality: str, array: np.ndarray, given: tuple[str, ...]
) -> tuple[np.ndarray, tuple[str, ...]]:
    wanted = tuple(b for b in MODALITIES[modality].band_names if b in given)
    return reorder_bands(array, given, wanted, modality=modality), wanted


def _iso_date(value: Any) -> str | None:
    """The release's ``acquisition_date`` as ISO 8601 text, or ``None`` where it is absent or unparseable
    (it stays in ``acquisition_date`` as given)."""
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).isoformat() if value else None
    except ValueError:
        return None


def _sample_metadata(member: ReleaseMember, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Release metadata in GeoMeld's names: ``long`` -> ``lon``, ``acquisition_date`` also as ISO
    ``datetime``, ``water_analysis`` flattened."""
    # osm_tags and water_analysis pass through as they come: the captioners ground sentences in them
    out = {k: v for k, v in meta.items() if k not in {"long", "band_names"}}
    if "long" in meta:
        out["lon"] = meta["long"]
    water = meta.get("water_analysis")
    if isinstance(water, Mapping):
        out["water_detected"] = water.get("detected")
        out["water_percentage"] = water.get("percentage")
    if "band_names" in meta:
        out["release_band_names"] = meta["band_names"]
    when = _iso_date(meta.get("acquisition_date"))
    if when is not None:
        out["datetime"] = when  # the writer's date filter columns (year, month) read this key
    out.update(source="geomeld-release", release_shard=member.shard, release_key=member.key)
    return out


def decode_member(member: ReleaseMember) -> AlignedSample:
    """One release sample as an :class:`AlignedSample`; raises :class:`QuarantineError` for bad input."""
    arrays, meta = _read_h5(member)
    if not arrays:
        raise _corrupt(member, f"expected at least one of {sorted(RELEASE_LAYERS)} in the .h5, found none")
    arrays = {k: a[np.newaxis] if a.ndim == 2 else a for k, a in arrays.items()}
    bad = {k: a.shape for k, a in arrays.items() if a.ndim != 3}
    if bad:
        raise _corrupt(member, f"expected (bands, H, W) arrays, found shapes {bad}")
    _check_grid(member, arrays)
    out_arrays: dict[str, np.ndarray] = {}
    out_bands: dict[str, tuple[str, ...]] = {}
    for key, array in arrays.items():
        modality = RELEASE_LAYERS[key].modality
        try:
            given = release_band_names(
                key, array.shape[0], _named_bands(meta, key), f"{member.shard}:{member.key}: "
            )
            out_arrays[modality], out_bands[modality] = _canonical(modality, array, given)
        except ValueError as err:  # an unknown or duplicated band name
            raise QuarantineError("band_count_mismatch", f"{member.shard}:{member.key}: {err}") from err
    metadata = _sample_metadata(member, meta)
    if "sentinel1" in out_arrays:
        out_arrays["sentinel1"], metadata["s1_empty_bands"] = _mask_empty(
            out_arrays["sentinel1"], out_bands["sentinel1"]
        )
    if "sentinel2" in out_arrays:
        out_arrays["sentinel2"], harmonised = _harmonise(member, meta, out_arrays["sentinel2"])
        metadata.update(harmonised)
    tile_id = str(meta.get("tile_id") or member.key)
    return AlignedSample(tile_id, out_arrays, out_bands, metadata)


def _mask_empty(array: np.ndarray, bands: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Sentinel-1 pixels the release leaves empty (zeros: HH/HV over most land, where only VV/VH are
    acquired) become NaN, GeoMeld's no-data, so they read as masked rather than as 0 dB backscatter;
    returns the names of the bands left without any data."""
    values = array.astype(np.float32, copy=True)
    values[values == 0] = np.nan
    return values, [b for i, b in enumerate(bands) if not np.isfinite(values[i]).any()]


def _harmonise(
    member: ReleaseMember, meta: Mapping[str, Any], s2: np.ndarray
) -> tuple[np.ndarray, dict[str, Any]]:
    """Remove a radiometric offset the release metadata declares (see :func:`~dataset_scripts.align.
    harmonise_sentinel2`, the one place it is done); where the metadata say nothing the values are kept."""
    from ..align import harmonise_sentinel2, sentinel2_offset

    found = sentinel2_offset(meta, {}, f"{member.shard}:{member.key}")
    info: dict[str, Any] = {
        "s2_radiometric_offset": 0.0,
        "s2_offset_removed": found.value if found else 0.0,
        "s2_offset_source": found.source if found else "none_found",
        "s2_processing_baseline": found.baseline if found else None,
    }
    if found is None or found.value == 0.0:
        return s2, info
    values = s2.astype(np.float32)
    values[values == 0] = np.nan  # 0 is Sentinel-2's no-data
    return harmonise_sentinel2(values, found.value), info


# ------------------------------------------------------------------------------------------------------
# The source.


class ReleaseSource:
    """``geomeld-release:LOCATION``: one :class:`AlignedSample` per ``.h5`` sample of the shards.

    Args:
        location: a shard, a folder of shards, a glob, or an fsspec URL of these.
        strict: raise the first :class:`QuarantineError` instead of recording it in ``quarantined``.
    """

    def __init__(self, location: str, *, strict: bool = False):
        self.location = location
        self.fs, self.shards = shard_paths(location)
        self._log = QuarantineLog(strict)

    @property
    def quarantined(self) -> list[QuarantineRecord]:
        return self._log.records

    def describe(self) -> str:
        return f"GeoMeld release ({len(self.shards)} WebDataset shards at {self.location})"

    def members(self) -> Iterator[ReleaseMember]:
        """Raw samples, shard by shard; cheap to ship to workers, decoded by :func:`decode_member`."""
        for shard in self.shards:
            try:
                stream = self.fs.open(shard, "rb")
            except OSError as err:
                yield ReleaseMember(str(shard), "<shard>", {}, read_error=f"cannot open the shard: {err}")
                continue
            with stream:
                yield from iter_shard(str(shard), stream)

    def anchors(self) -> Iterator[AlignedSample]:
        for member in self.members():
            try:
                yield decode_member(member)
            except QuarantineError as err:
                self._log.add(member.key, err)
