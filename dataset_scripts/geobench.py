"""A reader of our own for GEO-Bench v1.0 on disk, serving `datasets.Dataset` objects, that never unpickles.

Layout (ServiceNow/geo-bench, `geobench/dataset.py`)::

    <root>/classification_v1.0/<task>/   and   <root>/segmentation_v1.0/<task>/
        task_specs.pkl                     a pickle: never opened here, task facts come from PRESETS
        band_stats.json                    {band name: {"mean", "std", "min", "max", ...}}
        default_partition.json             {"train": [sample names], "valid": [...], "test": [...]}
        <partition>_partition.json         e.g. 0.01x_train_partition.json ... 1.00x_train_partition.json
        <sample name>.hdf5                 one HDF5 dataset per band, named after the band

Naming conventions, as GEO-Bench writes them:

* A band dataset is named by the band's ``name`` (``Band.get_descriptor()``), with ``_<date>`` appended when
  the band carries a date (time series). Sentinel-2: ``"01 - Coastal aerosol"``, ``"02 - Blue"``,
  ``"03 - Green"``, ``"04 - Red"``, ``"05 - Vegetation Red Edge"`` (also 06 and 07: the same words, told apart
  only by the number), ``"08 - NIR"``, ``"08A - Vegetation Red Edge"``, ``"09 - Water vapour"``,
  ``"10 - SWIR - Cirrus"``, ``"11 - SWIR"``, ``"12 - SWIR"``. The number before the dash is what identifies an
  S2 band, so it is what we map: ``"08 - ..."`` -> ``B08``, ``"08A - ..."`` -> ``B8A``, whatever the words.
  m-so2sat's Sentinel-1 channels: ``"01 - VH.Real"``, ``"02 - VH.Imaginary"``, ``"03 - VV.Real"``,
  ``"04 - VV.Imaginary"``, ``"05 - VH.LEE Filtered"``, ``"06 - VV.LEE Filtered"``,
  ``"07 - VH.LEE Filtered.Real"``, ``"08 - VV.LEE Filtered.Imaginary"`` (complex components and Lee-filtered
  intensities, not dB backscatter). Landsat-8 (m-forestnet) uses ``"02 - Blue"`` ... ``"07 - SWIR2"``;
  aerial RGB tasks use ``"Red"``, ``"Green"``, ``"Blue"`` (m-chesapeake adds ``"NearInfrared"``).
* Dates are written ``%Y-%m-%d`` (``"04 - Red_2016-01-01"`` in m-forestnet).
* Partitions: ``default`` and ``0.01x_train``, ``0.02x_train``, ``0.05x_train``, ``0.10x_train``, ``0.20x_train``,
  ``0.50x_train``, ``1.00x_train``; splits ``train``, ``valid``, ``test``.
* Segmentation targets are a dataset named ``"label"`` (H, W).
* Classification targets live in the file attribute ``"pickle"``: ``str(pickle.dumps(attr_dict))`` with
  ``attr_dict["label"]`` an int (single-label) or a multi-hot numpy array (m-bigearthnet). We read that string
  with :func:`static_unpickle`, which walks the opcodes with :mod:`pickletools` and never imports or calls
  anything. A plain HDF5 attribute ``"label"`` (int or multi-hot list), as our test fixture writes, is read
  first when present.
* m-eurosat and m-brick-kiln in the published v1.0 store wrong band names for most channels (geo-bench issues
  #28, #29): selecting by name picks the wrong channel there. We warn, as GEO-Bench does.

The data root comes from the ``root`` argument or the ``GEO_BENCH_DIR`` environment variable.
"""

from __future__ import annotations

import ast
import json
import os
import pickletools
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import h5py
import numpy as np

from modeling_geomeld.modalities import reorder_bands

ENV_VAR = "GEO_BENCH_DIR"
SPLITS: tuple[str, ...] = ("train", "valid", "test")
LabelKind = Literal["single_label", "multi_label", "segmentation"]
Benchmark = Literal["classification_v1.0", "segmentation_v1.0"]


class CorruptSampleError(ValueError):
    """A GEO-Bench file exists but cannot be read as what it should be; the message names the file."""


# ------------------------------------------------------------------------------------------------------
# Band names: GEO-Bench spelling -> our registry names, by name only.
_S2_NUMBERED = re.compile(r"^\s*(\d{1,2}A?)\s*-\s*(.+?)\s*$", re.IGNORECASE)
_SAR_WORD = re.compile(r"\b(VV|VH|HH|HV)\b")
_SO2SAT_S1 = MappingProxyType(
    {
        "01 - VH.Real": "VH_real",
        "02 - VH.Imaginary": "VH_imag",
        "03 - VV.Real": "VV_real",
        "04 - VV.Imaginary": "VV_imag",
        "05 - VH.LEE Filtered": "VH_lee",
        "06 - VV.LEE Filtered": "VV_lee",
        "07 - VH.LEE Filtered.Real": "VHVV_lee_real",
        "08 - VV.LEE Filtered.Imaginary": "VHVV_lee_imag",
    }
)
_RGBN = MappingProxyType(
    {"red": "R", "green": "G", "blue": "B", "nir": "NIR", "near infrared": "NIR", "nearinfrared": "NIR"}
)


def sentinel2_name(geobench_name: str) -> str | None:
    """``"08A - Vegetation Red Edge"`` -> ``"B8A"``, ``"08 - NIR"`` -> ``"B08"``; ``None`` if not an S2 band.

    Only the number identifies the band (05, 06 and 07 share their words), and SAR channels that happen to be
    numbered the same way (``"01 - VH.Real"``) are rejected by their polarisation.
    """
    match = _S2_NUMBERED.match(geobench_name)
    if match is None or _SAR_WORD.search(match.group(2)):
        return None
    code = match.group(1).upper()
    if code.endswith("A"):
        return f"B{int(code[:-1])}A"
    number = int(code)
    return f"B{number:02d}" if 1 <= number <= 12 else None


def sentinel1_name(geobench_name: str) -> str | None:
    """So2Sat's eight SAR channels by their GEO-Bench names, or a bare polarisation (``"VV"``) as is."""
    if geobench_name in _SO2SAT_S1:
        return _SO2SAT_S1[geobench_name]
    bare = geobench_name.strip().upper()
    return bare if bare in ("VV", "VH", "HH", "HV") else None


def landsat8_name(geobench_name: str) -> str | None:
    """``"05 - NIR"`` -> ``"B5"`` (Landsat-8 OLI band numbers, not in the GeoMeld registry)."""
    match = _S2_NUMBERED.match(geobench_name)
    if match is None or match.group(1).upper().endswith("A"):
        return None
    return f"B{int(match.group(1))}"


def rgbn_name(geobench_name: str) -> str | None:
    """``"Red"`` -> ``"R"`` etc., the NAIP-style names of the registry's ``naip`` modality."""
    return _RGBN.get(geobench_name.strip().lower())


#: per modality, the function mapping a GEO-Bench band name to ours (``None``: not a band of this modality)
BAND_PARSERS = MappingProxyType(
    {"sentinel1": sentinel1_name, "sentinel2": sentinel2_name, "landsat8": landsat8_name, "aerial": rgbn_name,
     "naip": rgbn_name}
)  # fmt: skip

# ------------------------------------------------------------------------------------------------------
# Task presets: the facts task_specs.pkl would hold, as data.
S2_ALL = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
S2_NO_CIRRUS = tuple(b for b in S2_ALL if b != "B10")
SO2SAT_S2 = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
SO2SAT_S1 = tuple(_SO2SAT_S1.values())
RGB = ("R", "G", "B")


@dataclass(frozen=True)
class TaskPreset:
    """What we know of a GEO-Bench v1.0 task without opening its pickle.

    Attributes:
        name: GEO-Bench's folder name (``"m-bigearthnet"``).
        benchmark: ``"classification_v1.0"`` or ``"segmentation_v1.0"``.
        label_kind: ``"single_label"``, ``"multi_label"`` or ``"segmentation"``.
        num_classes: number of classes (labels for multi-label).
        metric: name of our metric module (``micro_f1``, ``accuracy``, ``mean_iou``).
        modalities: modality -> the task's bands in our names, the default selection.
        patch_size: side of the square patches in pixels.
        notes: caveats (provenance of facts, known data problems).
        wrong_band_names: the published files' band names are wrong (warned about on load).
    """

    name: str
    benchmark: Benchmark
    label_kind: LabelKind
    num_classes: int
    metric: str
    modalities: Mapping[str, tuple[str, ...]]
    patch_size: int
    notes: str = ""
    wrong_band_names: bool = False


def _preset(
    name: str, bench: Benchmark, kind: LabelKind, n: int, metric: str, mods: dict, size: int, **kw: Any
) -> TaskPreset:
    return TaskPreset(name, bench, kind, n, metric, MappingProxyType(mods), size, **kw)


_C: Benchmark = "classification_v1.0"
_S: Benchmark = "segmentation_v1.0"
PRESETS: Mapping[str, TaskPreset] = MappingProxyType(
    {
        p.name: p
        for p in (
            _preset("m-bigearthnet", _C, "multi_label", 43, "micro_f1", {"sentinel2": S2_NO_CIRRUS}, 120,
                    notes="20000/1000/1000; the paper reports micro-F1"),
            _preset("m-so2sat", _C, "single_label", 17, "accuracy",
                    {"sentinel1": SO2SAT_S1, "sentinel2": SO2SAT_S2}, 32,
                    notes="18 bands: 8 SAR channels (complex parts, Lee-filtered intensities; names not in the "
                          "registry) + 10 S2 (reflectance near 0..1, not x 10000: normalise with band_stats)"),
            _preset("m-eurosat", _C, "single_label", 10, "accuracy", {"sentinel2": S2_ALL}, 64,
                    wrong_band_names=True, notes="geo-bench issue #28: stored band names are wrong"),
            _preset("m-brick-kiln", _C, "single_label", 2, "accuracy", {"sentinel2": S2_ALL}, 64,
                    wrong_band_names=True, notes="geo-bench issue #29: stored band names are wrong"),
            _preset("m-forestnet", _C, "single_label", 12, "accuracy",
                    {"landsat8": ("B4", "B3", "B2", "B5", "B6", "B7")}, 332,
                    notes="Landsat-8, 15 m; one sample per date, band names carry the date"),
            _preset("m-pv4ger", _C, "single_label", 2, "accuracy", {"aerial": RGB}, 320, notes="aerial RGB"),
            _preset("m-cashew-plant", _S, "segmentation", 7, "mean_iou", {"sentinel2": S2_ALL}, 256),
            _preset("m-SA-crop-type", _S, "segmentation", 10, "mean_iou", {"sentinel2": S2_ALL}, 256),
            _preset("m-chesapeake", _S, "segmentation", 7, "mean_iou", {"naip": ("R", "G", "B", "NIR")}, 256,
                    notes="NAIP 1 m RGB + NIR"),
            _preset("m-pv4ger-seg", _S, "segmentation", 2, "mean_iou", {"aerial": RGB}, 320, notes="aerial RGB"),
            _preset("m-nz-cattle", _S, "segmentation", 2, "mean_iou", {"aerial": RGB}, 500, notes="aerial RGB"),
            _preset("m-NeonTree", _S, "segmentation", 2, "mean_iou", {"aerial": RGB}, 400,
                    notes="aerial RGB; the hyperspectral and canopy-height layers are not read"),
        )
    }
)  # fmt: skip


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def get_preset(task: str) -> TaskPreset:
    """Preset by task name, forgiving case and ``_`` for ``-`` (``"m_sa_crop_type"``)."""
    by_key = {_key(n): p for n, p in PRESETS.items()}
    if _key(task) not in by_key:
        raise ValueError(f"unknown GEO-Bench task {task!r}; expected one of {sorted(PRESETS)}")
    return by_key[_key(task)]


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The GEO-Bench data root from ``root`` or ``$GEO_BENCH_DIR``, checked to exist."""
    value = root if root is not None else os.environ.get(ENV_VAR)
    if not value:
        raise FileNotFoundError(
            f"no GEO-Bench data root: pass root=... (--data-root) or set {ENV_VAR}=/path/to/geobench, the folder "
            "holding classification_v1.0/ and segmentation_v1.0/"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        source = "root argument" if root is not None else f"${ENV_VAR}"
        raise FileNotFoundError(f"GEO-Bench data root {path} (from the {source}) is not a directory")
    return path


# ------------------------------------------------------------------------------------------------------
# Reading the pickled attribute without unpickling.
@dataclass(frozen=True)
class PickleGlobal:
    """A ``module.name`` reference in a pickle; never imported."""

    module: str
    name: str


@dataclass(eq=False)
class PickleCall:
    """What unpickling would have built by calling ``func(*args)`` then setting ``state``; never called."""

    func: Any
    args: Any
    state: Any = None


_MARK = object()
_PUSH_ARG = frozenset(
    [
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "FLOAT",
        "BINFLOAT",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "UNICODE",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
        "BYTEARRAY8",
    ]
)
_CONSTANTS = MappingProxyType({"NONE": None, "NEWTRUE": True, "NEWFALSE": False})


_CODECS_ENCODE = PickleGlobal("_codecs", "encode")


def _latin1_bytes(args: Any) -> Any:
    """Protocols 2-3 spell bytes as ``_codecs.encode(text, "latin1")``; rebuild them without calling anything."""
    if (
        isinstance(args, tuple)
        and len(args) == 2
        and isinstance(args[0], str)
        and args[1] in ("latin1", "latin-1")
    ):
        return args[0].encode("latin1")
    return PickleCall(_CODECS_ENCODE, args)


def _pop_mark(stack: list) -> list:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _MARK:
            items = stack[i + 1 :]
            del stack[i:]
            return items
    raise ValueError("pickle stream has no MARK where one is needed")


def _apply(name: str, arg: Any, stack: list, memo: dict) -> None:
    """Apply one opcode to the stack, one branch per opcode family; any opcode not listed is refused."""
    if name in _PUSH_ARG:
        stack.append(arg)
    elif name in _CONSTANTS:
        stack.append(_CONSTANTS[name])
    elif name == "MARK":
        stack.append(_MARK)
    elif name == "EMPTY_DICT":
        stack.append({})
    elif name in ("EMPTY_LIST", "EMPTY_SET"):
        stack.append([])
    elif name == "EMPTY_TUPLE":
        stack.append(())
    elif name == "DICT":
        items = _pop_mark(stack)
        stack.append(dict(zip(items[::2], items[1::2], strict=True)))
    elif name in ("LIST", "TUPLE", "FROZENSET"):
        items = _pop_mark(stack)
        stack.append(items if name == "LIST" else tuple(items))
    elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
        n = int(name[-1])
        packed = tuple(stack[-n:])
        del stack[-n:]
        stack.append(packed)
    elif name == "APPEND":
        value = stack.pop()
        stack[-1].append(value)
    elif name in ("APPENDS", "ADDITEMS"):
        items = _pop_mark(stack)
        stack[-1].extend(items)
    elif name == "SETITEM":
        value, key = stack.pop(), stack.pop()
        stack[-1][key] = value
    elif name == "SETITEMS":
        items = _pop_mark(stack)
        for key, value in zip(items[::2], items[1::2], strict=True):
            stack[-1][key] = value
    elif name == "GLOBAL":
        module, _, attr = arg.partition(" ")
        stack.append(PickleGlobal(module, attr))
    elif name == "STACK_GLOBAL":
        attr, module = stack.pop(), stack.pop()
        stack.append(PickleGlobal(str(module), str(attr)))
    elif name in ("REDUCE", "NEWOBJ"):
        args, func = stack.pop(), stack.pop()
        stack.append(_latin1_bytes(args) if func == _CODECS_ENCODE else PickleCall(func, args))
    elif name == "NEWOBJ_EX":
        _kwargs, args, func = stack.pop(), stack.pop(), stack.pop()
        stack.append(PickleCall(func, args))
    elif name == "BUILD":
        state = stack.pop()
        if not isinstance(stack[-1], PickleCall):
            stack[-1] = PickleCall(stack[-1], ())
        stack[-1].state = state
    elif name == "MEMOIZE":
        memo[len(memo)] = stack[-1]
    elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
        memo[arg] = stack[-1]
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        stack.append(memo[arg])
    elif name == "POP":
        stack.pop()
    elif name == "POP_MARK":
        _pop_mark(stack)
    elif name == "DUP":
        stack.append(stack[-1])
    elif name == "BINPERSID":
        stack.append(PickleGlobal("<persistent>", repr(stack.pop())))
    elif name == "PERSID":
        stack.append(PickleGlobal("<persistent>", repr(arg)))
    else:
        raise ValueError(f"pickle opcode {name} is not supported by the static reader")


def static_unpickle(data: bytes) -> Any:
    """The structure of a pickle, read opcode by opcode without importing or calling anything.

    Plain values (ints, floats, strings, bytes, lists, tuples, dicts) come back as themselves; class references
    as :class:`PickleGlobal` and constructed objects as :class:`PickleCall`. This is enough to read a label
    out of GEO-Bench's ``attrs["pickle"]`` safely: a hostile file can name any callable, and it is never run.
    """
    stack: list = []
    memo: dict = {}
    for opcode, arg, _pos in pickletools.genops(data):
        if opcode.name in ("PROTO", "FRAME"):
            continue
        if opcode.name == "STOP":
            break
        _apply(opcode.name, arg, stack, memo)
    if len(stack) != 1:
        raise ValueError(f"pickle stream left {len(stack)} values on the stack, expected 1")
    return stack[0]


def _numpy_dtype(obj: Any) -> np.dtype:
    """``np.dtype('<i8')`` from its pickled form ``dtype('i8', False, True)`` with state ``(3, '<', ...)``."""
    if not (
        isinstance(obj, PickleCall)
        and obj.func in (PickleGlobal("numpy", "dtype"), PickleGlobal("numpy.core.multiarray", "dtype"))
    ):
        raise ValueError(f"expected a pickled numpy dtype, found {obj!r}")
    code = str(obj.args[0])
    order = obj.state[1] if isinstance(obj.state, tuple) and len(obj.state) > 1 else "|"
    if code == "O" or code.startswith(("V", "U")):
        raise ValueError(f"numpy dtype {code!r} is not a plain numeric label type")
    return np.dtype(("" if order == "|" else order) + code)


def decode_static_value(obj: Any) -> Any:
    """Plain values as is, numpy arrays and scalars rebuilt from their raw bytes; anything else is rejected."""
    if isinstance(obj, int | float | str | bool) or obj is None:
        return obj
    if isinstance(obj, list | tuple):
        return [decode_static_value(v) for v in obj]
    if (
        isinstance(obj, PickleCall)
        and isinstance(obj.func, PickleGlobal)
        and obj.func.module.startswith("numpy")
    ):
        if obj.func.name == "_reconstruct" and isinstance(obj.state, tuple) and len(obj.state) == 5:
            _version, shape, dtype, fortran, raw = obj.state
            if not isinstance(raw, bytes | bytearray):
                raise ValueError("numpy array in the pickle holds objects, not raw numbers")
            array = np.frombuffer(bytes(raw), dtype=_numpy_dtype(dtype))
            return array.reshape(tuple(shape), order="F" if fortran else "C").copy()
        if obj.func.name == "_frombuffer" and len(obj.args) == 4:  # protocol 5: (buffer, dtype, shape, order)
            raw, dtype, shape, order = obj.args
            array = np.frombuffer(bytes(raw), dtype=_numpy_dtype(dtype))
            return array.reshape(tuple(shape), order="F" if order == "F" else "C").copy()
        if obj.func.name == "scalar" and len(obj.args) == 2:
            return np.frombuffer(bytes(obj.args[1]), dtype=_numpy_dtype(obj.args[0]))[0].item()
    raise ValueError(f"cannot read a label from {obj!r} without running code")


def _pickled_attr_label(raw: Any) -> Any:
    # GEO-Bench stores str(pickle.dumps(d)), i.e. the repr of a bytes object; literal_eval only parses it
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    payload = ast.literal_eval(text)
    if not isinstance(payload, bytes):
        raise ValueError("attribute 'pickle' is not the repr of a bytes object")
    attrs = static_unpickle(payload)
    if not isinstance(attrs, dict) or "label" not in attrs:
        raise ValueError("attribute 'pickle' holds no 'label' entry")
    return decode_static_value(attrs["label"])


# ------------------------------------------------------------------------------------------------------
# Samples.
_DATE_SUFFIX = re.compile(r"^(?P<band>.+?)_(?P<date>\d{4}-\d{2}-\d{2}.*)$")


def _split_date(dataset_name: str) -> tuple[str, str]:
    match = _DATE_SUFFIX.match(dataset_name)
    return (match["band"], match["date"]) if match else (dataset_name, "")


def band_index(file_keys: Sequence[str], modality: str, date_index: int = 0) -> dict[str, tuple[str, str]]:
    """Our band name -> (HDF5 dataset name, GEO-Bench band name) for one modality, in the file's order.

    Time series (``"<band>_<date>"``) keep the ``date_index``-th date in sorted order (0: the earliest).
    """
    parse = BAND_PARSERS[modality]
    by_band: dict[str, dict[str, tuple[str, str]]] = {}
    for key in file_keys:
        base, date = _split_date(key)
        ours = parse(base)
        if ours is None:  # an underscore that is part of the name, not a date
            base, date, ours = key, "", parse(key)
        if ours is not None:
            by_band.setdefault(ours, {})[date] = (key, base)
    out = {}
    for ours, dated in by_band.items():
        dates = sorted(dated)
        if date_index >= len(dates):
            raise ValueError(
                f"{modality} band {ours} has dates {dates}; date_index {date_index} is out of range"
            )
        out[ours] = dated[dates[date_index]]
    return out


@dataclass(frozen=True)
class BandStatsTable:
    """``band_stats.json`` of a task: GEO-Bench band name -> mean and std."""

    mean: Mapping[str, float]
    std: Mapping[str, float]

    @classmethod
    def read(cls, path: Path) -> BandStatsTable:
        try:
            table = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is missing; it is needed for normalize=True") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptSampleError(f"{path} is not valid JSON: {exc}") from None
        try:
            return cls(
                MappingProxyType({k: float(v["mean"]) for k, v in table.items()}),
                MappingProxyType({k: float(v["std"]) for k, v in table.items()}),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise CorruptSampleError(
                f"{path}: expected {{band: {{'mean': x, 'std': y}}}}, failed at {exc!r}"
            ) from None

    def normalise(self, array: np.ndarray, geobench_names: Sequence[str], source: Path) -> np.ndarray:
        """z-score each band (axis 0) with the statistics of its GEO-Bench name."""
        missing = [n for n in geobench_names if n not in self.mean]
        if missing:
            raise ValueError(f"{source} has no statistics for bands {missing}; it has {sorted(self.mean)}")
        mean = np.array([self.mean[n] for n in geobench_names], dtype=np.float32)[:, None, None]
        std = np.array([self.std[n] for n in geobench_names], dtype=np.float32)[:, None, None]
        return (array - mean) / np.where(std > 0, std, 1.0)


def _read_band(f: h5py.File, key: str, path: Path) -> np.ndarray:
    data = np.asarray(f[key])
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 2:
        raise CorruptSampleError(f"{path}: band {key!r} has shape {data.shape}, expected (height, width)")
    return data.astype(np.float32)


@dataclass(frozen=True)
class GeoBenchTask:
    """One GEO-Bench task folder, read through its preset.

    Attributes:
        preset: the task's facts.
        directory: ``<root>/<benchmark>/<task>``.
        bands: modality -> bands (our names) to serve, in this order; defaults to the preset's.
        normalize: z-score with ``band_stats.json``.
        date_index: which date to keep for time-series bands.
    """

    preset: TaskPreset
    directory: Path
    bands: Mapping[str, tuple[str, ...]]
    normalize: bool = False
    date_index: int = 0

    @classmethod
    def open(
        cls,
        task: str,
        root: str | os.PathLike | None = None,
        bands: Mapping[str, Sequence[str]] | None = None,
        normalize: bool = False,
        date_index: int = 0,
    ) -> GeoBenchTask:
        """Resolve a task by name under the data root (argument or ``$GEO_BENCH_DIR``) and check the selection."""
        preset = get_preset(task)
        directory = resolve_root(root) / preset.benchmark / preset.name
        if not directory.is_dir():
            raise FileNotFoundError(f"GEO-Bench task folder {directory} does not exist")
        selection = {m: tuple(b) for m, b in (bands or preset.modalities).items()}
        unknown = [m for m in selection if m not in preset.modalities]
        if unknown:
            raise ValueError(
                f"{preset.name} has no modalities {unknown}; expected some of {list(preset.modalities)}"
            )
        for modality, wanted in selection.items():
            if not wanted or len(set(wanted)) != len(wanted):
                raise ValueError(f"{preset.name}/{modality}: expected unique band names, got {list(wanted)}")
        if preset.wrong_band_names:
            warnings.warn(
                f"{preset.name}: {preset.notes}; bands selected by name may be the wrong channels",
                stacklevel=2,
            )
        return cls(preset, directory, MappingProxyType(selection), normalize, date_index)

    # -- partitions ----------------------------------------------------------------------------------
    def partitions(self) -> list[str]:
        """Partition names present on disk (``default``, ``0.01x_train``, ...)."""
        return sorted(p.name[: -len("_partition.json")] for p in self.directory.glob("*_partition.json"))

    def sample_names(self, split: str, partition: str = "default") -> list[str]:
        """Sample names of ``split`` in ``partition``, as listed in ``<partition>_partition.json``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        path = self.directory / f"{partition}_partition.json"
        if not path.is_file():
            raise ValueError(f"{self.preset.name} has no partition {partition!r}; found {self.partitions()}")
        try:
            table = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptSampleError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(table, dict) or split not in table:
            found = list(table) if isinstance(table, dict) else type(table).__name__
            raise CorruptSampleError(f"{path}: expected a dict with split {split!r}, found {found}")
        return [str(n) for n in table[split]]

    # -- samples -------------------------------------------------------------------------------------
    def read_sample(self, name: str, stats: BandStatsTable | None = None) -> dict[str, Any]:
        """One sample as ``{"sample_name", <modality>: float32 (C, H, W), "label"}``, bands by name.

        With ``normalize`` set and no ``stats`` given, ``band_stats.json`` is read for this one call; pass the
        table (:meth:`band_stats`) when reading many samples.
        """
        if stats is None and self.normalize:
            stats = self.band_stats()
        path = self.directory / f"{name}.hdf5"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is listed in a partition of {self.preset.name} but does not exist"
            )
        try:
            with h5py.File(path, "r") as f:
                return self._read_open(f, name, path, stats)
        except OSError as exc:
            raise CorruptSampleError(f"cannot read GEO-Bench sample {path}: {exc}") from None

    def _read_open(self, f: h5py.File, name: str, path: Path, stats: BandStatsTable | None) -> dict[str, Any]:
        keys = list(f.keys())
        sample: dict[str, Any] = {"sample_name": name}
        for modality, wanted in self.bands.items():
            index = band_index(keys, modality, self.date_index)
            missing = [b for b in wanted if b not in index]
            if missing:
                raise ValueError(
                    f"{path}: {modality} bands {missing} are missing; expected {list(wanted)}, "
                    f"found {list(index)} (datasets in the file: {keys})"
                )
            given = [b for b in index if b in wanted]  # file order
            array = np.stack([_read_band(f, index[b][0], path) for b in given])  # (C, H, W)
            if stats is not None:
                array = stats.normalise(array, [index[b][1] for b in given], path)
            sample[modality] = reorder_bands(array, given, wanted, modality=modality)
        sample["label"] = self._read_label(f, path)
        return sample

    def _read_label(self, f: h5py.File, path: Path) -> Any:
        preset = self.preset
        if preset.label_kind == "segmentation":
            if "label" not in f:
                raise CorruptSampleError(f"{path}: segmentation sample has no 'label' dataset")
            label = np.asarray(f["label"])
            return (label[..., 0] if label.ndim == 3 else label).astype(np.int64)
        if "label" in f.attrs:
            raw = f.attrs["label"]
        elif "label" in f:
            raw = np.asarray(f["label"])
        elif "pickle" in f.attrs:
            try:
                raw = _pickled_attr_label(f.attrs["pickle"])
            except (ValueError, SyntaxError) as exc:
                raise CorruptSampleError(
                    f"{path}: cannot read the label from attribute 'pickle': {exc}"
                ) from None
        else:
            raise CorruptSampleError(
                f"{path}: no label (attribute 'label', dataset 'label' or attribute 'pickle')"
            )
        return _check_label(raw, preset, path)

    def band_stats(self) -> BandStatsTable:
        """The task's ``band_stats.json``."""
        return BandStatsTable.read(self.directory / "band_stats.json")

    def iter_samples(self, split: str, partition: str = "default") -> Iterator[dict[str, Any]]:
        """Samples of a split, read lazily one file at a time."""
        stats = self.band_stats() if self.normalize else None
        for name in self.sample_names(split, partition):
            yield self.read_sample(name, stats)

    # -- datasets ------------------------------------------------------------------------------------
    def features(self, height: int, width: int) -> Any:
        """`datasets.Features` of the served columns for patches of ``height`` x ``width``."""
        import datasets

        columns: dict[str, Any] = {"sample_name": datasets.Value("string")}
        for modality, wanted in self.bands.items():
            columns[modality] = datasets.Array3D((len(wanted), height, width), "float32")
        kind = self.preset.label_kind
        if kind == "segmentation":
            columns["label"] = datasets.Array2D((height, width), "int64")
        elif kind == "multi_label":
            columns["label"] = datasets.Sequence(datasets.Value("int8"), length=self.preset.num_classes)
        else:
            columns["label"] = datasets.ClassLabel(num_classes=self.preset.num_classes)
        return datasets.Features(columns)

    def dataset(self, split: str, partition: str = "default", cache_dir: str | None = None) -> Any:
        """A `datasets.Dataset` of one split: a column per modality (float32 C, H, W), ``label``, ``sample_name``.

        Written through ``Dataset.from_generator`` so a full task streams to Arrow instead of sitting in memory.
        """
        import datasets

        names = self.sample_names(split, partition)
        if not names:
            raise ValueError(f"{self.preset.name}/{partition}: split {split!r} lists no samples")
        first = self.read_sample(names[0])
        height, width = next(first[m] for m in self.bands).shape[1:]
        # plain kwargs, so that `datasets` can fingerprint them; file sizes and times keep the cache honest
        files = [self.directory / f"{n}.hdf5" for n in names]
        # a string, not a list: `from_generator` would treat a list in gen_kwargs as shards to split over
        signature = json.dumps(
            [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()]
        )
        return datasets.Dataset.from_generator(
            _generate,
            features=self.features(height, width),
            gen_kwargs={
                "task": self.preset.name,
                "directory": str(self.directory),
                "bands": {m: list(b) for m, b in self.bands.items()},
                "normalize": self.normalize,
                "date_index": self.date_index,
                "split": split,
                "partition": partition,
                "signature": signature,
            },
            cache_dir=cache_dir,
            split=datasets.Split(split),
        )

    def dataset_dict(self, partition: str = "default", cache_dir: str | None = None) -> Any:
        """A `datasets.DatasetDict` with the splits of ``partition`` that list samples."""
        import datasets

        splits = [s for s in SPLITS if self.sample_names(s, partition)]
        return datasets.DatasetDict({s: self.dataset(s, partition, cache_dir) for s in splits})


def _generate(
    task: str,
    directory: str,
    bands: dict[str, list[str]],
    normalize: bool,
    date_index: int,
    split: str,
    partition: str,
    signature: str,
) -> Iterator[dict[str, Any]]:
    """Generator for ``Dataset.from_generator``; ``signature`` only feeds the cache fingerprint."""
    del signature
    selection = MappingProxyType({m: tuple(b) for m, b in bands.items()})
    reader = GeoBenchTask(get_preset(task), Path(directory), selection, normalize, date_index)
    yield from reader.iter_samples(split, partition)


def _check_label(raw: Any, preset: TaskPreset, path: Path) -> Any:
    value = np.asarray(raw)
    if preset.label_kind == "multi_label":
        flat = value.reshape(-1)
        if flat.shape[0] != preset.num_classes or not np.isin(flat, (0, 1)).all():
            raise CorruptSampleError(
                f"{path}: expected a multi-hot label of {preset.num_classes} zeros and ones, found {flat.tolist()}"
            )
        return flat.astype(np.int8)
    if value.size != 1 or not 0 <= int(value.reshape(-1)[0]) < preset.num_classes:
        raise CorruptSampleError(
            f"{path}: expected one class index in 0..{preset.num_classes - 1}, found {value.tolist()}"
        )
    return int(value.reshape(-1)[0])


def load_geobench(
    task: str,
    split: str | None = None,
    partition: str = "default",
    root: str | os.PathLike | None = None,
    bands: Mapping[str, Sequence[str]] | None = None,
    normalize: bool = False,
    cache_dir: str | None = None,
) -> Any:
    """A GEO-Bench task as a `datasets.Dataset` (one split) or `datasets.DatasetDict` (``split=None``).

    >>> ds = load_geobench("m-so2sat", "train", bands={"sentinel2": ["B04", "B03", "B02"]})  # doctest: +SKIP
    """
    reader = GeoBenchTask.open(task, root=root, bands=bands, normalize=normalize)
    if split is None:
        return reader.dataset_dict(partition, cache_dir)
    return reader.dataset(split, partition, cache_dir)
