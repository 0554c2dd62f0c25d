"""A reader of our own for GEO-Bench v1.0 on disk, serving `datasets.Dataset` objects, that never unpickles.

Layout (ServiceNow/geo-bench, `geobench/dataset.py`)::

    <root>/classification_v1.0/<task>/   and   <root>/segmentation_v1.0/<task>/
        task_specs.pkl                     a pickled TaskSpecifications: read statically for class names
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
  anything, within :class:`PickleLimits` (stream length, opcodes, memo entries, values reachable, depth), so a
  hostile or damaged file fails fast with :class:`CorruptSampleError` naming it. A plain HDF5 attribute
  ``"label"`` (int or multi-hot list), as our older test fixture writes, is read first when present.
* ``task_specs.pkl`` is read the same way (:func:`read_task_specs`) for the label type's class names
  (:attr:`GeoBenchTask.label_names`); the task facts we rely on otherwise (bands, metric) are PRESETS, checked
  against GEO-Bench's own reader on files its writer made (tests/test_geobench_official.py).
* m-cashew-plant and m-SA-crop-type hold 12 S2 bands (their converters drop B10) plus ``"Cloud Probability"``,
  each band name dated (``"04 - Red_2019-11-10"``).
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
import struct
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
            _preset("m-cashew-plant", _S, "segmentation", 7, "mean_iou", {"sentinel2": S2_NO_CIRRUS}, 256,
                    notes="12 S2 bands (the converter drops B10) + 'Cloud Probability' (not served); dated names"),
            _preset("m-SA-crop-type", _S, "segmentation", 10, "mean_iou", {"sentinel2": S2_NO_CIRRUS}, 256,
                    notes="12 S2 bands (the converter drops B10) + 'Cloud Probability' (not served); dated names"),
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
# Reading pickles without unpickling, within limits.
class StaticPickleError(ValueError):
    """A pickle stream the static reader refuses: malformed, of an unsupported kind, or past a limit."""


@dataclass(frozen=True)
class PickleLimits:
    """Bounds on what one pickle stream may cost the static reader, so that a hostile file fails fast.

    Attributes:
        max_bytes: length of the stream.
        max_ops: opcodes read (the work of reading; one opcode costs O(1) amortised).
        max_memo: memo entries.
        max_size: values reachable from one value, shared references counted every time they are reached (the
            measure a "billion laughs" stream blows up: 30 self-doublings of one list reach 2**30 values).
        max_depth: nesting depth of containers.
    """

    max_bytes: int = 16 * 2**20
    max_ops: int = 200_000
    max_memo: int = 100_000
    max_size: int = 1_000_000
    max_depth: int = 64


DEFAULT_LIMITS = PickleLimits()


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


_PUSH_ARG = frozenset(
    [
        "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT", "STRING",
        "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES",
        "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
    ]
)  # fmt: skip
_CONSTANTS = MappingProxyType({"NONE": None, "NEWTRUE": True, "NEWFALSE": False})
_CODECS_ENCODE = PickleGlobal("_codecs", "encode")
#: dict keys the reader accepts: hashing these costs O(1) (a tuple's hash walks all of it, shared parts again)
_KEY_TYPES = (str, int, float, bool, bytes, type(None), PickleGlobal)


class _StaticUnpickler:
    """The stack machine of :mod:`pickle`, building inert values, with every container's size and depth counted
    as it grows (see :class:`PickleLimits`)."""

    def __init__(self, limits: PickleLimits) -> None:
        self.limits = limits
        self.stack: list[Any] = []
        self.marks: list[int] = []  # stack heights at each MARK, like the real Unpickler's metastack
        self.memo: dict[int, Any] = {}
        self.size: dict[int, int] = {}  # id(container) -> values reachable from it
        self.depth: dict[int, int] = {}
        self.alive: list[Any] = []  # keeps counted containers alive, so their ids stay theirs

    # -- bookkeeping -------------------------------------------------------------------------------------
    def _track(self, obj: Any, children: Sequence[Any]) -> Any:
        self.alive.append(obj)
        self.size[id(obj)] = 1
        self.depth[id(obj)] = 1
        self._grow(obj, children)
        return obj

    def _grow(self, obj: Any, children: Sequence[Any]) -> None:
        key = id(obj)
        size, depth = self.size[key], self.depth[key]
        for child in children:
            size += self.size.get(id(child), 1)
            depth = max(depth, self.depth.get(id(child), 0) + 1)
        if size > self.limits.max_size:
            raise StaticPickleError(f"a value would reach more than {self.limits.max_size} values (max_size)")
        if depth > self.limits.max_depth:
            raise StaticPickleError(f"values nest deeper than {self.limits.max_depth} levels (max_depth)")
        self.size[key], self.depth[key] = size, depth

    def _pop(self, n: int = 1) -> list[Any]:
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) - floor < n:
            raise StaticPickleError(f"expected {n} values on the stack, found {len(self.stack) - floor}")
        items = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        return items

    def _pop_mark(self) -> list[Any]:
        if not self.marks:
            raise StaticPickleError("pickle stream has no MARK where one is needed")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def _top(self, kind: type | tuple[type, ...], opcode: str) -> Any:
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) <= floor or not isinstance(self.stack[-1], kind):
            found = type(self.stack[-1]).__name__ if len(self.stack) > floor else "nothing"
            raise StaticPickleError(f"{opcode} needs a {kind} on the stack, found {found}")
        return self.stack[-1]

    def _key(self, key: Any) -> Any:
        if isinstance(key, _KEY_TYPES):
            return key
        if isinstance(key, tuple) and self.size.get(id(key), 1) <= 64:
            return key
        raise StaticPickleError(f"dict key of type {type(key).__name__} is not read statically")

    def _setitems(self, target: dict, items: list[Any]) -> None:
        if len(items) % 2:
            raise StaticPickleError("SETITEMS needs key, value pairs")
        for key, value in zip(items[::2], items[1::2], strict=True):
            target[self._key(key)] = value
        self._grow(target, items)

    # -- one opcode --------------------------------------------------------------------------------------
    def apply(self, name: str, arg: Any) -> None:
        """One opcode: one branch per opcode family; any opcode not listed is refused."""
        stack = self.stack
        if name in _PUSH_ARG:
            stack.append(arg)
        elif name in _CONSTANTS:
            stack.append(_CONSTANTS[name])
        elif name == "MARK":
            self.marks.append(len(stack))
        elif name == "EMPTY_DICT":
            stack.append(self._track({}, ()))
        elif name in ("EMPTY_LIST", "EMPTY_SET"):
            stack.append(self._track([], ()))
        elif name == "EMPTY_TUPLE":
            stack.append(self._track((), ()))
        elif name == "DICT":
            items = self._pop_mark()
            stack.append(self._track({}, ()))
            self._setitems(stack[-1], items)
        elif name in ("LIST", "TUPLE", "FROZENSET"):
            items = self._pop_mark()
            stack.append(self._track(items if name == "LIST" else tuple(items), items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            items = self._pop(int(name[-1]))
            stack.append(self._track(tuple(items), items))
        elif name == "APPEND":
            (value,) = self._pop()
            target = self._top(list, name)
            target.append(value)
            self._grow(target, (value,))
        elif name in ("APPENDS", "ADDITEMS"):
            items = self._pop_mark()
            target = self._top(list, name)
            target.extend(items)
            self._grow(target, items)
        elif name == "SETITEM":
            key, value = self._pop(2)
            self._setitems(self._top(dict, name), [key, value])
        elif name == "SETITEMS":
            items = self._pop_mark()
            self._setitems(self._top(dict, name), items)
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            stack.append(PickleGlobal(module, attr))
        elif name == "STACK_GLOBAL":
            module, attr = self._pop(2)
            if not (isinstance(module, str) and isinstance(attr, str)):
                raise StaticPickleError("STACK_GLOBAL needs two strings")
            stack.append(PickleGlobal(module, attr))
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
            popped = self._pop(3 if name == "NEWOBJ_EX" else 2)
            func, args = popped[0], popped[1]
            if func == _CODECS_ENCODE and _is_latin1_args(args):
                stack.append(args[0].encode("latin1"))
            else:
                stack.append(self._track(PickleCall(func, args), (func, args)))
        elif name == "BUILD":
            (state,) = self._pop()
            (target,) = self._pop()
            call = (
                target if isinstance(target, PickleCall) else self._track(PickleCall(target, ()), (target,))
            )
            call.state = state
            self._grow(call, (state,))
            stack.append(call)
        elif name == "MEMOIZE":
            self._memo_put(len(self.memo))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self._memo_put(int(arg))
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if int(arg) not in self.memo:
                raise StaticPickleError(f"{name} of memo entry {arg}, which was never stored")
            stack.append(self.memo[int(arg)])
        elif name == "POP":
            if self.marks and self.marks[-1] == len(stack):  # POP of a MARK, as the real Unpickler does
                self.marks.pop()
            else:
                self._pop()
        elif name == "POP_MARK":
            self._pop_mark()
        elif name == "DUP":
            stack.append(self._pop()[0])
            stack.append(stack[-1])
        else:
            raise StaticPickleError(f"pickle opcode {name} is not supported by the static reader")

    def _memo_put(self, index: int) -> None:
        if len(self.memo) >= self.limits.max_memo and index not in self.memo:
            raise StaticPickleError(f"more than {self.limits.max_memo} memo entries (max_memo)")
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) <= floor:
            raise StaticPickleError("memo store with nothing on the stack")
        self.memo[index] = self.stack[-1]


def _is_latin1_args(args: Any) -> bool:
    """Protocols 2-3 spell bytes as ``_codecs.encode(text, "latin1")``: rebuilt without calling anything."""
    return (
        isinstance(args, tuple)
        and len(args) == 2
        and isinstance(args[0], str)
        and args[1] in ("latin1", "latin-1")
    )


def _run(machine: _StaticUnpickler, data: bytes, limits: PickleLimits) -> None:
    ops = 0
    try:
        for opcode, arg, pos in pickletools.genops(data):
            ops += 1
            if ops > limits.max_ops:
                raise StaticPickleError(f"more than {limits.max_ops} opcodes (max_ops)")
            if opcode.name in ("PROTO", "FRAME"):
                continue
            if opcode.name == "STOP":
                return
            try:
                machine.apply(opcode.name, arg)
            except StaticPickleError as exc:
                raise StaticPickleError(f"at byte {pos} ({opcode.name}): {exc}") from None
    except StaticPickleError:
        raise
    except (ValueError, EOFError, OverflowError, struct.error) as exc:  # pickletools on a malformed stream
        raise StaticPickleError(f"malformed pickle stream: {exc}") from None


def static_unpickle(data: bytes, limits: PickleLimits = DEFAULT_LIMITS) -> Any:
    """The structure of a pickle, read opcode by opcode without importing or calling anything.

    Plain values (ints, floats, strings, bytes, lists, tuples, dicts) come back as themselves, sets as lists;
    class references as :class:`PickleGlobal` and constructed objects as :class:`PickleCall`. A hostile file can
    name any callable and it is never run; it cannot make reading cost more than ``limits`` allow either. Every
    failure is a :class:`StaticPickleError`.
    """
    if len(data) > limits.max_bytes:
        raise StaticPickleError(f"pickle of {len(data)} bytes is over {limits.max_bytes} (max_bytes)")
    machine = _StaticUnpickler(limits)
    # pickletools warns about invalid escapes in text opcodes of a damaged stream: not the user's concern
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _run(machine, data, limits)
    if len(machine.stack) != 1 or machine.marks:
        raise StaticPickleError(f"pickle stream left {len(machine.stack)} values on the stack, expected 1")
    return machine.stack[0]


def _numpy_dtype(obj: Any) -> np.dtype:
    """``np.dtype('<i8')`` from its pickled form ``dtype('i8', False, True)`` with state ``(3, '<', ...)``."""
    if not (
        isinstance(obj, PickleCall)
        and obj.func in (PickleGlobal("numpy", "dtype"), PickleGlobal("numpy.core.multiarray", "dtype"))
        and isinstance(obj.args, tuple)
        and obj.args
        and isinstance(obj.args[0], str)
    ):
        raise StaticPickleError(f"expected a pickled numpy dtype, found {_describe(obj)}")
    code = obj.args[0]
    order = obj.state[1] if isinstance(obj.state, tuple) and len(obj.state) > 1 else "|"
    if not re.fullmatch(r"[biuf][1248]|b1|\?", code) or order not in ("<", ">", "|", "="):
        raise StaticPickleError(
            f"numpy dtype {code!r} (byte order {order!r}) is not a plain numeric label type"
        )
    return np.dtype(("" if order == "|" else order) + code)


def _describe(obj: Any) -> str:
    """A short, bounded description (a repr of shared structure can be exponentially long)."""
    if isinstance(obj, PickleCall):
        func = obj.func
        return f"a call of {func.module}.{func.name}" if isinstance(func, PickleGlobal) else "a call"
    if isinstance(obj, str | bytes):
        return f"{type(obj).__name__} {obj[:40]!r}"
    return type(obj).__name__


def _numpy_array(raw: Any, dtype: Any, shape: Any, fortran: bool) -> np.ndarray:
    if not isinstance(raw, bytes | bytearray):
        raise StaticPickleError("numpy array in the pickle holds objects, not raw numbers")
    if not (isinstance(shape, tuple) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise StaticPickleError(f"numpy array shape {_describe(shape)} is not a tuple of sizes")
    array = np.frombuffer(bytes(raw), dtype=_numpy_dtype(dtype))
    if array.size != int(np.prod(shape, dtype=object)):
        raise StaticPickleError(f"numpy array of {array.size} values cannot take shape {shape}")
    return array.reshape(shape, order="F" if fortran else "C").copy()


def decode_static_value(obj: Any, limits: PickleLimits = DEFAULT_LIMITS) -> Any:
    """Plain values as is, numpy arrays and scalars rebuilt from their raw bytes; anything else is refused.

    The walk is bounded: at most ``limits.max_size`` values and ``limits.max_depth`` levels, and a value that
    contains itself is refused.
    """
    budget = [limits.max_size]

    def walk(value: Any, depth: int, path: frozenset[int]) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise StaticPickleError(f"value reaches more than {limits.max_size} values (max_size)")
        if depth > limits.max_depth:
            raise StaticPickleError(f"value nests deeper than {limits.max_depth} levels (max_depth)")
        if isinstance(value, bool | int | float | str) or value is None:
            return value
        if id(value) in path:
            raise StaticPickleError("value contains itself")
        if isinstance(value, list | tuple):
            inner = path | {id(value)}
            return [walk(v, depth + 1, inner) for v in value]
        if (
            isinstance(value, PickleCall)
            and isinstance(value.func, PickleGlobal)
            and value.func.module.startswith("numpy")
        ):
            return _numpy_value(value)
        raise StaticPickleError(f"cannot read a value from {_describe(value)} without running code")

    return walk(obj, 0, frozenset())


def _numpy_value(obj: PickleCall) -> Any:
    name, args, state = obj.func.name, obj.args, obj.state
    if name == "_reconstruct" and isinstance(state, tuple) and len(state) == 5:
        _version, shape, dtype, fortran, raw = state
        return _numpy_array(raw, dtype, shape, bool(fortran))
    if (
        name == "_frombuffer" and isinstance(args, tuple) and len(args) == 4
    ):  # protocol 5: (buffer, dtype, shape, order)
        raw, dtype, shape, order = args
        return _numpy_array(raw, dtype, shape, order == "F")
    if name == "scalar" and isinstance(args, tuple) and len(args) == 2 and isinstance(args[1], bytes):
        dtype = _numpy_dtype(args[0])
        if len(args[1]) != dtype.itemsize:
            raise StaticPickleError(f"numpy scalar of {len(args[1])} bytes for dtype {dtype}")
        return np.frombuffer(args[1], dtype=dtype)[0].item()
    raise StaticPickleError(f"cannot read a value from {_describe(obj)} without running code")


def _pickled_attr_label(raw: Any, limits: PickleLimits = DEFAULT_LIMITS) -> Any:
    """The label in GEO-Bench's ``attrs["pickle"]``: ``str(pickle.dumps(d))``, the repr of a bytes object."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    # a bytes literal and nothing else: literal_eval then parses one token, in time linear in its length
    if len(text) > 4 * limits.max_bytes + 3 or not re.fullmatch(r"b(['\"]).*\1", text, re.DOTALL):
        raise StaticPickleError("attribute 'pickle' is not the repr of a bytes object")
    try:
        with warnings.catch_warnings():  # invalid escapes in a damaged literal: reported below if they matter
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            payload = ast.literal_eval(text)
    except (ValueError, SyntaxError, RecursionError, TypeError) as exc:
        raise StaticPickleError(
            f"attribute 'pickle' is not the repr of a bytes object ({type(exc).__name__})"
        ) from None
    if not isinstance(payload, bytes):
        raise StaticPickleError("attribute 'pickle' is not the repr of a bytes object")
    attrs = static_unpickle(payload, limits)
    if not isinstance(attrs, dict) or "label" not in attrs:
        raise StaticPickleError("attribute 'pickle' holds no 'label' entry")
    return decode_static_value(attrs["label"], limits)


# ------------------------------------------------------------------------------------------------------
# task_specs.pkl, read statically.
#: GEO-Bench label type classes (``geobench.label``, ``geobench.dataset``) -> our label kinds
_LABEL_KINDS: Mapping[str, LabelKind] = MappingProxyType(
    {
        "Classification": "single_label",
        "MultiLabelClassification": "multi_label",
        "SemanticSegmentation": "segmentation",
        "SegmentationClasses": "segmentation",
    }
)


@dataclass(frozen=True)
class TaskSpecsFacts:
    """What a task's ``task_specs.pkl`` (a pickled ``geobench.task.TaskSpecifications``) says, read statically.

    Attributes:
        dataset_name: the name stored in the file (GEO-Bench itself renames it after the folder on load).
        label_type: class name of the label type (``"MultiLabelClassification"``, ``"SegmentationClasses"`` ...).
        label_kind: our label kind for it, ``None`` for a type we do not read (``Detection``).
        n_classes: number of classes the label type declares.
        class_names: the label type's class names (``Classification._class_names``,
            ``MultiLabelClassification.class_name``, ``SegmentationClasses._class_names``); ``None`` when the
            converter stored none (m-cashew-plant's and m-SA-crop-type's converters do not).
        band_names: ``bands_info`` names, in the file's order.
        patch_size: the largest band's (height, width).
    """

    dataset_name: str | None
    label_type: str
    label_kind: LabelKind | None
    n_classes: int | None
    class_names: tuple[str, ...] | None
    band_names: tuple[str, ...]
    patch_size: tuple[int, ...] | None


def _state_of(obj: Any, what: str, class_names: Sequence[str] | None = None) -> dict:
    """The attribute dict of a pickled object (``PickleCall`` whose BUILD state is a dict)."""
    if not (
        isinstance(obj, PickleCall) and isinstance(obj.func, PickleGlobal) and isinstance(obj.state, dict)
    ):
        raise StaticPickleError(f"{what} is {_describe(obj)}, not a pickled object with attributes")
    if class_names is not None and obj.func.name not in class_names:
        raise StaticPickleError(
            f"{what} is a {obj.func.module}.{obj.func.name}, expected one of {list(class_names)}"
        )
    return obj.state


def _strings(value: Any, what: str, limits: PickleLimits) -> tuple[str, ...]:
    decoded = decode_static_value(value, limits)
    if not isinstance(decoded, list) or not all(isinstance(v, str) for v in decoded):
        raise StaticPickleError(f"{what} is not a list of strings")
    return tuple(decoded)


def task_specs_facts(obj: Any, limits: PickleLimits = DEFAULT_LIMITS) -> TaskSpecsFacts:
    """:class:`TaskSpecsFacts` from the statically unpickled ``TaskSpecifications``."""
    state = _state_of(obj, "task_specs.pkl", ("TaskSpecifications",))
    label: Any = state.get("label_type")
    label_state = _state_of(label, "its label_type")
    label_type = str(label.func.name)
    n_classes = decode_static_value(label_state.get("n_classes"), limits)
    if n_classes is not None and (isinstance(n_classes, bool) or not isinstance(n_classes, int)):
        raise StaticPickleError(f"label_type.n_classes is {_describe(n_classes)}, not an int")
    raw_names = next(
        (label_state[k] for k in ("_class_names", "class_name", "class_names") if k in label_state), None
    )
    names = None if raw_names is None else _strings(raw_names, "label_type class names", limits)
    bands = state.get("bands_info") or []
    if not isinstance(bands, list):
        raise StaticPickleError(f"bands_info is {_describe(bands)}, not a list")
    band_names = tuple(
        decode_static_value(_state_of(b, "a bands_info entry").get("name"), limits) for b in bands
    )
    if not all(isinstance(n, str) for n in band_names):
        raise StaticPickleError("a bands_info entry has no string name")
    patch = decode_static_value(state.get("patch_size"), limits)
    dataset_name = decode_static_value(state.get("dataset_name"), limits)
    return TaskSpecsFacts(
        dataset_name=dataset_name if isinstance(dataset_name, str) else None,
        label_type=label_type,
        label_kind=_LABEL_KINDS.get(label_type),
        n_classes=n_classes,
        class_names=names,
        band_names=band_names,
        patch_size=tuple(int(p) for p in patch)
        if isinstance(patch, list) and all(isinstance(p, int) for p in patch)
        else None,
    )


def read_task_specs(path: Path, limits: PickleLimits = DEFAULT_LIMITS) -> TaskSpecsFacts:
    """A task's ``task_specs.pkl`` read without unpickling; `CorruptSampleError` naming the file when it cannot."""
    path = Path(path)
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise CorruptSampleError(
            f"{path}: {size} bytes, over the {limits.max_bytes} a task specification may take"
        )
    try:
        return task_specs_facts(static_unpickle(path.read_bytes(), limits), limits)
    except StaticPickleError as exc:
        raise CorruptSampleError(f"{path}: cannot read the task specifications: {exc}") from None


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
            return label_from_pickle_attr(f.attrs["pickle"], preset, path)
        else:
            raise CorruptSampleError(
                f"{path}: no label (attribute 'label', dataset 'label' or attribute 'pickle')"
            )
        return _check_label(raw, preset, path)

    def task_specs(self) -> TaskSpecsFacts | None:
        """The task's ``task_specs.pkl``, read statically (:func:`read_task_specs`); ``None`` when absent."""
        path = self.directory / "task_specs.pkl"
        return read_task_specs(path) if path.is_file() else None

    @property
    def label_names(self) -> tuple[str, ...]:
        """Class names from ``task_specs.pkl``, checked against the preset's label kind and class count.

        ``"0"`` .. ``"N-1"`` when the file stores no names (as for m-cashew-plant), or when it is absent (warned).
        """
        preset = self.preset
        indices = tuple(str(i) for i in range(preset.num_classes))
        specs = self.task_specs()
        path = self.directory / "task_specs.pkl"
        if specs is None:
            warnings.warn(
                f"{path} is missing: class names of {preset.name} are {indices[0]}..{indices[-1]}",
                stacklevel=2,
            )
            return indices
        if specs.label_kind != preset.label_kind:
            raise CorruptSampleError(
                f"{path}: label type {specs.label_type} does not fit {preset.name} ({preset.label_kind})"
            )
        declared = specs.n_classes if specs.n_classes is not None else len(specs.class_names or indices)
        names = specs.class_names
        if declared != preset.num_classes or (names is not None and len(names) != preset.num_classes):
            found = f"{declared} classes" + ("" if names is None else f" and {len(names)} class names")
            raise CorruptSampleError(
                f"{path}: expected {preset.num_classes} classes for {preset.name}, found {found}"
            )
        return names if names is not None else indices

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
    """The label as GEO-Bench's label types accept it, or `CorruptSampleError` saying what was found."""
    try:
        value = np.asarray(raw)
        integral = value.dtype.kind in "biu" or (
            value.dtype.kind == "f"
            and bool(np.isfinite(value).all())
            and bool((value == np.round(value)).all())
        )
    except (ValueError, TypeError, OverflowError):
        integral, value = False, np.asarray([], dtype=np.int64)
    if not integral:
        raise CorruptSampleError(f"{path}: expected an integer label, found {_short(raw)}")
    if preset.label_kind == "multi_label":
        flat = value.reshape(-1)
        if flat.shape[0] != preset.num_classes or not np.isin(flat, (0, 1)).all():
            raise CorruptSampleError(
                f"{path}: expected a multi-hot label of {preset.num_classes} zeros and ones, found {_short(raw)}"
            )
        return flat.astype(np.int8)
    if value.size != 1 or not 0 <= int(value.reshape(-1)[0]) < preset.num_classes:
        raise CorruptSampleError(
            f"{path}: expected one class index in 0..{preset.num_classes - 1}, found {_short(raw)}"
        )
    return int(value.reshape(-1)[0])


def label_from_pickle_attr(raw: Any, preset: TaskPreset, path: Path) -> Any:
    """The checked label in a sample's ``attrs["pickle"]``, or `CorruptSampleError` naming ``path``."""
    try:
        value = _pickled_attr_label(raw)
    except StaticPickleError as exc:
        raise CorruptSampleError(f"{path}: cannot read the label from attribute 'pickle': {exc}") from None
    return _check_label(value, preset, path)


def _short(value: Any, limit: int = 120) -> str:
    """A label for an error message, cut short (a hostile one can be huge)."""
    try:
        text = repr(np.asarray(value).reshape(-1)[:50].tolist())
    except (ValueError, TypeError, OverflowError):
        text = _describe(value)
    return text if len(text) <= limit else text[:limit] + "..."


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
