"""Your own labelled GeoTIFFs: a labelled manifest -> the real builder -> per-sample labels and spatial-block splits.

A *labelled manifest* (CSV, Parquet or JSON Lines) has the builder's manifest columns
(:mod:`dataset_scripts.sources.manifest`: ``anchor_id``, ``modality``, ``path``, optional ``bands``,
``datetime``, ``lat``, ``lon``, ...; one row per raster file, rows sharing an ``anchor_id`` are one sample) plus,
per anchor (on any of its rows; rows that give it must agree):

* ``label``: classification -- a class name or index; several joined by ``;`` (or a list in Parquet / JSON
  Lines) make the task multi-label; or
* ``label_path``: segmentation -- a class-code raster in any CRS and resolution; the builder aligns it onto
  the sample's grid as the ``label`` layer with nearest resampling (codes are never averaged);
* ``split`` (optional): ``train`` / ``validation`` / ``test``; without it, samples are split by spatial
  blocks (:func:`block_splits`).

The class list comes from the manifest's sidecar (``labels.csv`` -> ``labels.yaml`` / ``labels.yml`` /
``labels.json`` beside it) or an explicit file::

    classes:                    # index order; `code` (default: the index) is the value in label rasters
      - {name: water, code: 1, color: "#419bdf"}
      - {name: trees, code: 2}
    nodata: [0]                 # optional: raster codes that mean "no label" (ignored by the loss)
    block_size_m: 5000          # optional: side of the spatial blocks (default 10 km)
    test_fraction: 0.25         # optional: share of blocks held out (default 0.2)
    seed: 0                     # optional: the block shuffle's seed
    size_px: 128                # optional: the sample grid's side at 10 m (default 128)

A bare list of names (``classes: [water, trees]``) works too. Mistakes in the files themselves (no label
column, no class list, a malformed class list) raise :class:`~dataset_scripts.errors.UsageError`; a bad
*row* -- an unknown class name, a label raster with codes outside the class list, a raster that does not
overlap its sample -- is quarantined with its reason and the rest is built and trained on.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import UsageError

LabelKind = Literal["segmentation", "single_label", "multi_label"]
LABEL_COLUMNS = ("label", "label_path", "split")
SPLIT_NAMES = ("train", "validation", "test")
SIDECAR_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_BLOCK_M = 10_000.0
DEFAULT_TEST_FRACTION = 0.2
#: the `label` layer's no-data code (the registry's)
LABEL_NODATA = 255


@dataclass(frozen=True)
class ClassList:
    """A task's classes in index order: names, raster codes, colours, and the raster codes meaning "no label"."""

    names: tuple[str, ...]
    codes: tuple[int, ...]
    colors: tuple[str | None, ...]
    nodata_codes: tuple[int, ...] = ()
    source: str = ""

    def __len__(self) -> int:
        return len(self.names)

    def index(self, value: Any, where: str) -> int:
        """A class name (case-insensitive) or index -> index; raises ``KeyError`` naming what is known."""
        text = str(value).strip()
        lowered = [n.lower() for n in self.names]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        if text.lstrip("-").isdigit() and 0 <= int(text) < len(self.names):
            return int(text)
        raise KeyError(
            f"{where}: expected a class name from {list(self.names)} or an index 0..{len(self.names) - 1}, found {text!r}"
        )

    def code_lut(self) -> np.ndarray:
        """Raster code (0..255) -> class index; -1 for no-data codes, -2 for codes outside the class list."""
        lut = np.full(256, -2, dtype=np.int64)
        lut[LABEL_NODATA] = -1
        for code in self.nodata_codes:
            lut[code] = -1
        for i, code in enumerate(self.codes):
            lut[code] = i
        return lut


def _read_mapping(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"class list {path}: expected JSON, found a syntax error at line {err.lineno}: {err.msg}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UsageError(f"class list {path}: expected YAML, found a syntax error: {err}") from None


def _parse_classes(data: Any, where: str) -> ClassList:
    entries = data.get("classes") if isinstance(data, Mapping) else data
    if not isinstance(entries, list) or len(entries) < 2:
        raise UsageError(f"{where}: expected `classes:` as a list of at least 2 classes (names or {{name, code}}), found {entries!r}")
    names: list[str] = []
    codes: list[int] = []
    colors: list[str | None] = []
    for i, entry in enumerate(entries):
        item = {"name": entry} if isinstance(entry, (str, int)) and not isinstance(entry, bool) else entry
        if not isinstance(item, Mapping) or not str(item.get("name", "")).strip():
            raise UsageError(f"{where}: class #{i}: expected a name or a mapping with `name`, found {entry!r}")
        code = item.get("code", i)
        if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code < LABEL_NODATA:
            raise UsageError(f"{where}: class {item['name']!r}: expected an integer `code` in 0..254, found {code!r}")
        names.append(str(item["name"]).strip())
        codes.append(code)
        color = item.get("color") or item.get("colour")
        if color and not (isinstance(color, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", color)):
            raise UsageError(f"{where}: class {item['name']!r}: expected `color` as '#rrggbb', found {color!r}")
        colors.append(str(color) if color else None)
    keys: list[tuple[str, list[Any]]] = [("name", [n.lower() for n in names]), ("code", list(codes))]
    for what, values in keys:
        twice = sorted({v for v in values if values.count(v) > 1}, key=str)
        if twice:
            raise UsageError(f"{where}: expected each class {what} once, found {twice} more than once")
    nodata = data.get("nodata", []) if isinstance(data, Mapping) else []
    nodata = [nodata] if isinstance(nodata, int) else nodata
    if not isinstance(nodata, list) or not all(isinstance(c, int) and 0 <= c <= 255 for c in nodata):
        raise UsageError(f"{where}: expected `nodata` as a code or a list of codes in 0..255, found {nodata!r}")
    clash = sorted(set(nodata) & set(codes))
    if clash:
        raise UsageError(f"{where}: expected `nodata` codes apart from the class codes, found {clash} in both")
    return ClassList(tuple(names), tuple(codes), tuple(colors), tuple(nodata), where)


def sidecar_of(manifest: Path) -> Path | None:
    """``labels.csv`` -> ``labels.yaml`` / ``labels.yml`` / ``labels.json`` beside it, whichever exists first."""
    return next((p for s in SIDECAR_SUFFIXES if (p := manifest.with_suffix(s)).is_file() and p != manifest), None)


@dataclass(frozen=True)
class LabelSettings:
    """What the class-list file says beyond the classes: the split and grid settings (see the module doc)."""

    classes: ClassList
    block_size_m: float = DEFAULT_BLOCK_M
    test_fraction: float = DEFAULT_TEST_FRACTION
    seed: int = 0
    size_px: int = 128


def read_settings(manifest: Path, classes: str | Path | None = None) -> LabelSettings:
    """The class list (``classes`` file, else the manifest's sidecar) and the settings beside it."""
    path = Path(classes).expanduser() if classes else sidecar_of(manifest)
    if path is None:
        raise UsageError(
            f"labelled manifest {manifest}: expected a class list in a sidecar "
            f"({', '.join(manifest.with_suffix(s).name for s in SIDECAR_SUFFIXES)}) or --classes FILE, found neither"
        )
    if not path.is_file():
        raise UsageError(f"--classes {path}: expected a YAML or JSON class list, found no such file")
    data = _read_mapping(path)
    out = _parse_classes(data, f"class list {path}")
    extra: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for key, kind, ok in (
            ("block_size_m", float, lambda v: v > 0),
            ("test_fraction", float, lambda v: 0 < v < 1),
            ("seed", int, lambda v: True),
            ("size_px", int, lambda v: v >= 16),
        ):
            if key in data:
                value = data[key]
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not ok(value):
                    raise UsageError(f"class list {path}: expected `{key}` as a valid {kind.__name__}, found {value!r}")
                extra[key] = kind(value)
    return LabelSettings(out, **extra)


# -- the manifest --------------------------------------------------------------------------------------------
def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV, Parquet or JSON Lines manifest, as dicts."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return [dict(r) for r in csv.DictReader(f)]
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise UsageError(f"{path.name} line {number}: expected a JSON object, found invalid JSON ({err.msg})") from None
        return rows
    raise UsageError(f"labelled manifest {path}: expected a .csv, .parquet or .jsonl file, found suffix {suffix or 'none'!r}")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


@dataclass
class LabelledManifest:
    """A labelled manifest, read and checked: the builder's rows, the labels and splits per anchor.

    Attributes:
        kind: ``segmentation`` (``label_path``), ``single_label`` or ``multi_label`` (``label``).
        builder_rows: the rows for :class:`~dataset_scripts.sources.manifest.ManifestSource`, label rasters
            among them as ``label`` layers.
        labels: per anchor, the class indices (classification).
        splits: per anchor, the given split (empty: split by spatial blocks).
        quarantined: anchors left out before building, with reason and message.
    """

    path: Path
    kind: LabelKind
    settings: LabelSettings
    builder_rows: list[dict[str, Any]]
    labels: dict[str, list[int]] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)
    quarantined: list[dict[str, str]] = field(default_factory=list)

    @property
    def classes(self) -> ClassList:
        return self.settings.classes


def _label_values(value: Any) -> list[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v).strip() for v in value if not _blank(v)]
    return [v.strip() for v in str(value).split(";") if v.strip()]


def _per_anchor(rows: list[dict[str, Any]], column: str, path: Path) -> dict[str, tuple[Any, int]]:
    """anchor -> (value, line) of ``column`` where any row gives it; rows of one anchor must agree."""
    out: dict[str, tuple[Any, int]] = {}
    for line, row in enumerate(rows, start=2):
        value = row.get(column)
        if _blank(value):
            continue
        anchor = str(row.get("anchor_id", "")).strip()
        known = out.get(anchor)
        same = known is None or _label_values(known[0]) == _label_values(value)
        if not same:
            raise UsageError(
                f"{path.name} line {line}: anchor {anchor!r}: expected one {column} per anchor, found "
                f"{known[0]!r} (line {known[1]}) and {value!r}"  # type: ignore[index]
            )
        out.setdefault(anchor, (value, line))
    return out


def _identity_class_map(classes: ClassList) -> str:
    """Every raster code passes the builder unchanged (nodata codes become no-data), so codes outside the class
    list survive alignment and are reported per sample instead of vanishing into no-data."""
    pairs = [f"{c}:{'nodata' if c in classes.nodata_codes else c}" for c in range(LABEL_NODATA)]
    return ",".join(pairs)


def read_labelled_manifest(path: str | Path, classes: str | Path | None = None) -> LabelledManifest:
    """Read and check a labelled manifest (see the module docstring)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"labels:{path}: expected a labelled manifest (CSV, Parquet or JSON Lines), found no such file")
    rows = read_rows(path)
    if not rows:
        raise UsageError(f"labelled manifest {path}: expected one row per raster file, found no rows")
    columns = set().union(*(r.keys() for r in rows))
    missing = [c for c in ("anchor_id", "modality", "path") if c not in columns]
    if missing:
        raise UsageError(f"labelled manifest {path}: expected the builder's columns anchor_id, modality, path; missing {missing}")
    has = {c: c in columns and any(not _blank(r.get(c)) for r in rows) for c in LABEL_COLUMNS}
    if has["label"] == has["label_path"]:
        raise UsageError(
            f"labelled manifest {path}: expected exactly one of the columns `label` (classification) or `label_path` "
            f"(segmentation mask), found {'both' if has['label'] else 'neither'} (columns: {sorted(columns)})"
        )
    settings = read_settings(path, classes)
    anchors = list(dict.fromkeys(str(r.get("anchor_id", "")).strip() for r in rows))
    quarantined: list[dict[str, str]] = []
    skip: set[str] = set()
    labels: dict[str, list[int]] = {}
    extra_rows: list[dict[str, Any]] = []
    if has["label"]:
        given = _per_anchor(rows, "label", path)
        multi = any(len(_label_values(v)) > 1 or isinstance(v, (list, tuple, np.ndarray)) for v, _ in given.values())
        kind: LabelKind = "multi_label" if multi else "single_label"
        for anchor in anchors:
            if anchor not in given:
                quarantined.append({"anchor_id": anchor, "reason": "missing_label", "message": f"anchor {anchor!r}: expected a `label` on one of its rows, found none"})
                skip.add(anchor)
                continue
            value, line = given[anchor]
            try:
                labels[anchor] = sorted({settings.classes.index(v, f"{path.name} line {line}, anchor {anchor!r}") for v in _label_values(value)})
            except KeyError as err:
                quarantined.append({"anchor_id": anchor, "reason": "unknown_class", "message": str(err.args[0])})
                skip.add(anchor)
    else:
        kind = "segmentation"
        given = _per_anchor(rows, "label_path", path)
        class_map = _identity_class_map(settings.classes)
        for anchor in anchors:
            if anchor not in given:
                quarantined.append({"anchor_id": anchor, "reason": "missing_label", "message": f"anchor {anchor!r}: expected a `label_path` on one of its rows, found none"})
                skip.add(anchor)
                continue
            raster = str(given[anchor][0]).strip()
            if "://" not in raster and not raster.startswith("/vsi") and not Path(raster).expanduser().is_absolute():
                raster = str(path.parent / Path(raster).expanduser())
            extra_rows.append({"anchor_id": anchor, "modality": "label", "path": raster, "class_map": class_map})
    splits = {a: str(v).strip().lower() for a, (v, _) in _per_anchor(rows, "split", path).items()} if has["split"] else {}
    bad = sorted({s for s in splits.values() if s not in SPLIT_NAMES})
    if bad:
        raise UsageError(f"labelled manifest {path}: expected `split` values from {list(SPLIT_NAMES)}, found {bad}")
    if splits and (absent := [a for a in anchors if a not in splits]):
        raise UsageError(f"labelled manifest {path}: expected a `split` for every anchor once the column is given, found none for {absent[:5]}")
    builder_rows = []
    for row in rows:
        anchor = str(row.get("anchor_id", "")).strip()
        if anchor in skip:
            continue
        clean = {k: v for k, v in row.items() if k not in LABEL_COLUMNS and not _blank(v)}
        where = str(clean.get("path", ""))
        remote = "://" in where or where.startswith("/vsi")
        if not remote and not Path(where).expanduser().is_absolute():  # the builder's manifest lives elsewhere
            clean["path"] = str(path.parent / Path(where).expanduser())
        builder_rows.append(clean)
    builder_rows += extra_rows
    if not builder_rows:
        reasons = "; ".join(q["message"] for q in quarantined[:3])
        raise UsageError(f"labelled manifest {path}: expected at least one usable anchor, found none ({reasons})")
    return LabelledManifest(path, kind, settings, builder_rows, labels, splits, quarantined)


# -- splits ------------------------------------------------------------------------------------------------
def block_of(lat: float, lon: float, crs: str, block_m: float) -> tuple[str, int, int]:
    """The spatial block holding (lat, lon): ``block_m`` squares on the sample's own projected grid (its UTM zone)."""
    from rasterio.warp import transform

    xs, ys = transform("EPSG:4326", crs, [lon], [lat])
    return crs, math.floor(xs[0] / block_m), math.floor(ys[0] / block_m)


def block_splits(blocks: Mapping[str, tuple[str, int, int]], test_fraction: float, seed: int) -> dict[str, str]:
    """anchor -> ``train`` / ``test``: whole blocks, shuffled with ``seed``, ``test_fraction`` of them held out.

    Every anchor of a block shares its split, so neighbouring samples never straddle train and test.
    """
    distinct = sorted(set(blocks.values()))
    if len(distinct) < 2:
        raise UsageError(
            f"expected at least 2 spatial blocks to split train from test, found {len(distinct)} block for "
            f"{len(blocks)} samples; set a smaller `block_size_m` in the class list, or give a `split` column"
        )
    order = np.random.default_rng(seed).permutation(len(distinct))
    n_test = min(len(distinct) - 1, max(1, round(test_fraction * len(distinct))))
    test = {distinct[i] for i in order[:n_test]}
    return {a: "test" if b in test else "train" for a, b in blocks.items()}


# -- after the build -----------------------------------------------------------------------------------------
@dataclass
class LabelledSamples:
    """The built samples of a labelled manifest, ready for a processor.

    Attributes:
        images: per sample, ``{modality key: (bands, H, W) float32}`` (Sentinel-2 keyed with its product).
        bands: per sample, ``{modality key: band names}``.
        labels: per sample, an index map ``(H, W)`` int64 (-1 no label), or the class indices.
        splits: per sample, ``train`` / ``validation`` / ``test``.
        blocks: per sample, its spatial block (block splits only).
        quarantined: every anchor left out (before, in and after the build), with reason and message.
    """

    anchor_ids: list[str]
    images: list[dict[str, np.ndarray]]
    bands: list[dict[str, list[str]]]
    labels: list[Any]
    splits: list[str]
    blocks: dict[str, tuple[str, int, int]]
    quarantined: list[dict[str, str]]


def read_built(root: Path, manifest: LabelledManifest) -> LabelledSamples:
    """Decode the built samples, map label codes to indices (codes outside the class list quarantine their
    sample) and assign splits."""
    import pyarrow.parquet as pq

    from .loading import band_names, decode_row

    report = json.loads((root / "build_report.json").read_text(encoding="utf-8"))
    quarantined = list(manifest.quarantined) + [
        {k: str(v) for k, v in q.items()} for q in report.get("quarantined_anchors", [])
    ]
    lut = manifest.classes.code_lut()
    rows = [r for f in sorted((root / "data").rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    out = LabelledSamples([], [], [], [], [], {}, quarantined)
    for row in sorted(rows, key=lambda r: r["tile_id"]):
        anchor = row["tile_id"]
        layers = decode_row(row)
        names = band_names(row)
        label = layers.pop("label", None)
        names.pop("label", None)
        if manifest.kind == "segmentation":
            if label is None:
                quarantined.append({"anchor_id": anchor, "reason": "missing_label", "message": f"anchor {anchor!r}: expected a label layer in the built sample, found none"})
                continue
            indices = lut[np.asarray(label[0], dtype=np.int64)]
            unknown = sorted({int(c) for c in np.unique(np.asarray(label[0])[indices == -2])})
            if unknown:
                quarantined.append({
                    "anchor_id": anchor, "reason": "unknown_class",
                    "message": f"anchor {anchor!r}: expected label codes {list(manifest.classes.codes)} (no-data "
                    f"{list(manifest.classes.nodata_codes)}), found codes {unknown} in the label raster",
                })  # fmt: skip
                continue
            target: Any = indices
        else:
            target = manifest.labels[anchor]
        s2_product = row.get("s2_product") or "l2a"
        images = {(f"sentinel2_{s2_product}" if m == "sentinel2" else m): a.astype(np.float32) for m, a in layers.items()}
        out.anchor_ids.append(anchor)
        out.images.append(images)
        out.bands.append({(f"sentinel2_{s2_product}" if m == "sentinel2" else m): b for m, b in names.items()})
        out.labels.append(target)
        if not manifest.splits:
            out.blocks[anchor] = block_of(float(row["lat"]), float(row["lon"]), str(row["crs"]), manifest.settings.block_size_m)
    if manifest.splits:
        out.splits = [manifest.splits[a] for a in out.anchor_ids]
    elif out.anchor_ids:
        chosen = block_splits(out.blocks, manifest.settings.test_fraction, manifest.settings.seed)
        out.splits = [chosen[a] for a in out.anchor_ids]
    return out


def build_labelled(
    manifest: LabelledManifest, out: str | Path, *, progress: bool = False, workers: int | Literal["auto"] = 0
) -> LabelledSamples:
    """Build the manifest's samples through the real builder into ``out`` (replacing what is there), then read them.

    The label raster is aligned with nearest resampling; the user's imagery is taken as given (no cloud-cover
    filter: the user chose the scenes, a 10 % rule would silently drop labelled samples).
    """
    from .align import AlignConfig
    from .build import BuildError, BuildOptions, build

    root = Path(out).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    builder_manifest = root.parent / f".{root.name}-manifest.jsonl"
    builder_manifest.write_text("".join(json.dumps(r, default=str) + "\n" for r in manifest.builder_rows), encoding="utf-8")
    options = BuildOptions(
        overwrite=True, workers=workers, progress=progress,
        align=AlignConfig(size_px=manifest.settings.size_px, categorical_resampling="nearest", max_cloud_cover=100.0),
    )  # fmt: skip
    try:
        build(f"manifest:{builder_manifest}", root, options)
    except BuildError as err:
        raise UsageError(f"labelled manifest {manifest.path}: the build produced no usable sample: {_one_line(err)}") from None
    return read_built(root, manifest)


def _one_line(err: Exception) -> str:
    return " | ".join(line.strip() for line in str(err).splitlines() if line.strip())


def class_counts(labels: Sequence[Any], kind: LabelKind, num_classes: int) -> list[int]:
    """How often each class occurs (pixels for segmentation, samples otherwise): the task card's sanity numbers."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for label in labels:
        if kind == "segmentation":
            valid = np.asarray(label)[np.asarray(label) >= 0]
            counts += np.bincount(valid, minlength=num_classes)[:num_classes]
        else:
            counts[list(label)] += 1
    return counts.tolist()
