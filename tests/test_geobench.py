"""The GEO-Bench reader on a generated fixture in the real layout (tests/fixtures/make_geobench.py)."""

from __future__ import annotations

import builtins
import io
import json
import pickle
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from fixtures.make_geobench import TASKS, band_value, label_for, make_geobench

from dataset_scripts.geobench import (
    PRESETS,
    CorruptSampleError,
    GeoBenchTask,
    PickleLimits,
    StaticPickleError,
    band_index,
    decode_static_value,
    get_preset,
    load_geobench,
    resolve_root,
    sentinel2_name,
    static_unpickle,
)

SIZE = 16


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_geobench(tmp_path_factory.mktemp("geobench"), SIZE)


@pytest.fixture
def own_root(tmp_path: Path, root: Path) -> Path:
    """A private copy, for tests that damage files."""
    return Path(shutil.copytree(root, tmp_path / "geobench"))


def test_sentinel2_names_map_by_number_never_by_position() -> None:
    assert sentinel2_name("08A - Vegetation Red Edge") == "B8A"
    assert sentinel2_name("08A - Red edge 4") == "B8A"
    assert sentinel2_name("08 - NIR") == "B08"
    assert sentinel2_name("10 - SWIR - Cirrus") == "B10"
    assert sentinel2_name("01 - VH.Real") is None  # So2Sat SAR channels share the numbering
    assert sentinel2_name("label") is None


def test_dated_band_names_keep_the_requested_date() -> None:
    keys = ["04 - Red_2016-01-01", "Cloud Probability", "04 - Red_2015-01-01", "05 - NIR_2015-01-01", "label"]
    assert band_index(keys, "landsat8") == {
        "B4": ("04 - Red_2015-01-01", "04 - Red"),
        "B5": ("05 - NIR_2015-01-01", "05 - NIR"),
    }
    red_only = [k for k in keys if not k.startswith("05")]
    assert band_index(red_only, "landsat8", date_index=1) == {"B4": ("04 - Red_2016-01-01", "04 - Red")}
    with pytest.raises(ValueError, match=r"B5 has dates \['2015-01-01'\]; date_index 1"):
        band_index(keys, "landsat8", date_index=1)


def test_file_order_is_not_band_order(root: Path) -> None:
    """Guards the band-order tests below: the fixture must not store bands in canonical order."""
    with h5py.File(root / "classification_v1.0/m-bigearthnet/id_0000.hdf5") as f:
        keys = list(f.keys())
    assert keys != list(TASKS["m-bigearthnet"][1])


def test_bands_come_back_in_requested_order_by_name(root: Path) -> None:
    task = GeoBenchTask.open("m-so2sat", root=root)
    sample = task.read_sample("id_0003")
    s2_names = TASKS["m-so2sat"][1][8:]
    assert sample["sentinel2"].shape == (10, SIZE, SIZE)
    np.testing.assert_allclose(
        sample["sentinel2"][:, 0, 0], [band_value(n) + 0.03 for n in s2_names], atol=1e-4
    )
    np.testing.assert_allclose(sample["sentinel1"][:, 0, 0], [-1, -2, -3, -4, -5, -6, -7, -8], atol=0.05)

    swapped = GeoBenchTask.open("m-so2sat", root=root, bands={"sentinel2": ["B8A", "B08", "B02"]})
    got = swapped.read_sample("id_0003")
    assert set(got) == {"sample_name", "sentinel2", "label"}
    np.testing.assert_allclose(got["sentinel2"][:, 0, 0], [850.03, 800.03, 200.03], atol=1e-3)


def test_partitions_and_splits(root: Path) -> None:
    task = GeoBenchTask.open("m-bigearthnet", root=root)
    assert task.partitions() == ["0.01x_train", "1.00x_train", "default"]
    assert task.sample_names("train") == ["id_0000", "id_0001", "id_0002", "id_0003"]
    assert task.sample_names("valid") == ["id_0004", "id_0005"]
    assert task.sample_names("test") == ["id_0006", "id_0007"]
    assert task.sample_names("train", "0.01x_train") == ["id_0000"]
    with pytest.raises(ValueError, match=r"no partition '0.05x_train'; found \['0.01x_train'"):
        task.sample_names("train", "0.05x_train")
    with pytest.raises(
        ValueError, match=r"unknown split 'val'; expected one of \['train', 'valid', 'test'\]"
    ):
        task.sample_names("val")


def test_labels_single_multi_and_segmentation(root: Path) -> None:
    ben = GeoBenchTask.open("m-bigearthnet", root=root).read_sample("id_0005")
    np.testing.assert_array_equal(ben["label"], label_for("multi_label", 43, 5, SIZE))
    assert ben["label"].dtype == np.int8
    assert GeoBenchTask.open("m-so2sat", root=root).read_sample("id_0006")["label"] == 6
    seg = GeoBenchTask.open("m-cashew-plant", root=root).read_sample("id_0002")
    np.testing.assert_array_equal(seg["label"], label_for("segmentation", 7, 2, SIZE))
    assert seg["sentinel2"].shape == (12, SIZE, SIZE)  # the preset serves no B10: the real task has none


def test_normalisation_uses_band_stats_by_name(root: Path) -> None:
    task_dir = root / "classification_v1.0/m-bigearthnet"
    stats = json.loads((task_dir / "band_stats.json").read_text())
    bands = {"sentinel2": ["B8A", "B08"]}
    raw = GeoBenchTask.open("m-bigearthnet", root=root, bands=bands).read_sample("id_0001")["sentinel2"]
    normed = GeoBenchTask.open("m-bigearthnet", root=root, bands=bands, normalize=True).read_sample("id_0001")
    for i, name in enumerate(["08A - Vegetation Red Edge", "08 - NIR"]):
        expected = (raw[i] - stats[name]["mean"]) / stats[name]["std"]
        np.testing.assert_allclose(normed["sentinel2"][i], expected, rtol=1e-5, atol=1e-5)


def test_datasets_per_split_and_partition(root: Path, tmp_path: Path) -> None:
    splits = load_geobench("m-so2sat", root=root, partition="0.01x_train", cache_dir=str(tmp_path))
    assert {s: splits[s].num_rows for s in splits} == {"train": 1, "valid": 2, "test": 2}
    train = load_geobench("m-so2sat", "train", root=root, cache_dir=str(tmp_path)).with_format("numpy")
    assert train.num_rows == 4
    row = train[1]
    assert row["sentinel2"].shape == (10, SIZE, SIZE) and row["sentinel2"].dtype == np.float32
    assert row["sentinel1"].shape == (8, SIZE, SIZE)
    assert int(row["label"]) == 1 and row["sample_name"] == "id_0001"
    seg = load_geobench("m-cashew-plant", "valid", root=root, cache_dir=str(tmp_path)).with_format("numpy")
    assert seg[0]["label"].shape == (SIZE, SIZE)


def test_root_from_environment_and_missing_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEO_BENCH_DIR", str(root))
    assert resolve_root() == root
    assert GeoBenchTask.open("m-so2sat").directory == root / "classification_v1.0" / "m-so2sat"
    monkeypatch.delenv("GEO_BENCH_DIR")
    with pytest.raises(FileNotFoundError, match="set GEO_BENCH_DIR="):
        GeoBenchTask.open("m-so2sat")
    with pytest.raises(FileNotFoundError, match=r"nowhere.*not a directory"):
        resolve_root(root / "nowhere")
    with pytest.raises(FileNotFoundError, match="m-SA-crop-type does not exist"):
        GeoBenchTask.open("m-sa_crop_type", root=root)  # a known task, not in this fixture


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown GEO-Bench task 'm-bigearth'.*'m-bigearthnet'.*'m-so2sat'"):
        get_preset("m-bigearth")
    assert get_preset("M_SA_CROP_TYPE").name == "m-SA-crop-type"
    assert len(PRESETS) == 12
    assert PRESETS["m-bigearthnet"].metric == "micro_f1" and PRESETS["m-bigearthnet"].num_classes == 43
    assert sum(len(b) for b in PRESETS["m-so2sat"].modalities.values()) == 18


def test_missing_band_names_what_was_expected_and_found(root: Path) -> None:
    task = GeoBenchTask.open("m-bigearthnet", root=root, bands={"sentinel2": ["B04", "B10"]})
    with pytest.raises(ValueError, match=r"id_0000.hdf5: sentinel2 bands \['B10'\] are missing.*found \['B"):
        task.read_sample("id_0000")
    with pytest.raises(ValueError, match=r"no modalities \['sentinel1'\]"):
        GeoBenchTask.open("m-bigearthnet", root=root, bands={"sentinel1": ["VV"]})


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file_is_named(own_root: Path, damage: str) -> None:
    path = own_root / "classification_v1.0/m-so2sat/id_0002.hdf5"
    data = path.read_bytes()
    path.write_bytes(b"not an hdf5 file at all" if damage == "garbage" else data[: len(data) // 2])
    task = GeoBenchTask.open("m-so2sat", root=own_root)
    task.read_sample("id_0001")  # neighbours still read
    with pytest.raises(CorruptSampleError, match=r"id_0002\.hdf5"):
        task.read_sample("id_0002")


def test_corrupt_partition_and_missing_sample_are_named(own_root: Path) -> None:
    task_dir = own_root / "classification_v1.0/m-so2sat"
    (task_dir / "id_0000.hdf5").unlink()
    task = GeoBenchTask.open("m-so2sat", root=own_root)
    with pytest.raises(FileNotFoundError, match=r"id_0000\.hdf5 is listed in a partition"):
        task.read_sample("id_0000")
    (task_dir / "default_partition.json").write_text("{not json")
    with pytest.raises(CorruptSampleError, match=r"default_partition\.json is not valid JSON"):
        task.sample_names("train")


def test_the_older_fixture_is_read_without_unpickling_or_task_specs(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real_open = io.open

    def watching_open(file, *args, **kwargs):
        opened.append(str(file))
        if str(file).endswith("task_specs.pkl"):
            raise AssertionError(f"the reader opened {file}")
        return real_open(file, *args, **kwargs)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("the reader unpickled something")

    monkeypatch.setattr(builtins, "open", watching_open)
    monkeypatch.setattr(io, "open", watching_open)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    for task in TASKS:
        load_geobench(task, root=root, normalize=True, cache_dir=str(tmp_path))
    assert any(p.endswith("default_partition.json") for p in opened)  # the watch did see the reader
    assert any(p.endswith("band_stats.json") for p in opened)
    assert not any(p.endswith("task_specs.pkl") for p in opened)


# -- labels in GEO-Bench's pickled attribute, read without unpickling -------------------------------------

RAN: list[str] = []


def _would_run_on_unpickle() -> None:
    RAN.append("ran")


class _Hostile:
    def __reduce__(self):
        return (_would_run_on_unpickle, ())


def _put_pickled_label(path: Path, label: object, protocol: int = 4) -> None:
    """Rewrite a sample as real GEO-Bench does: the label only inside ``attrs["pickle"]``."""
    attr_dict = {"label": label, "bands_order": ["02 - Blue"], "02 - Blue": {"band_info": _Hostile()}}
    with h5py.File(path, "a") as f:
        del f.attrs["label"]
        f.attrs["pickle"] = str(pickle.dumps(attr_dict, protocol=protocol))


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize(
    ("task", "label", "expected"),
    [
        ("m-so2sat", 5, 5),
        ("m-so2sat", np.int64(9), 9),
        ("m-bigearthnet", np.eye(43, dtype=np.int64)[3] + np.eye(43, dtype=np.int64)[40], [3, 40]),
        ("m-bigearthnet", np.eye(43, dtype=np.float32)[7], [7]),
        ("m-bigearthnet", [0] * 42 + [1], [42]),
    ],
)
def test_labels_from_the_pickled_attribute_without_running_code(
    own_root: Path, task: str, label: object, expected: object, protocol: int
) -> None:
    path = own_root / TASKS[task][0] / task / "id_0001.hdf5"
    _put_pickled_label(path, label, protocol)
    got = GeoBenchTask.open(task, root=own_root).read_sample("id_0001")["label"]
    if isinstance(expected, list):
        assert np.flatnonzero(got).tolist() == expected
    else:
        assert got == expected
    assert RAN == []


def test_static_unpickle_keeps_callables_inert() -> None:
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        value = static_unpickle(pickle.dumps({"a": [1, 2.5, "x", b"y"], "b": _Hostile()}, protocol=protocol))
        assert value["a"] == [1, 2.5, "x", b"y"]
        assert value["b"].func.name == "_would_run_on_unpickle"
    assert RAN == []


def test_unreadable_pickled_label_is_named(own_root: Path) -> None:
    path = own_root / "classification_v1.0/m-so2sat/id_0001.hdf5"
    _put_pickled_label(path, _Hostile())
    with pytest.raises(CorruptSampleError, match=r"id_0001\.hdf5: cannot read the label"):
        GeoBenchTask.open("m-so2sat", root=own_root).read_sample("id_0001")


# -- hostile and malformed pickles: each fails fast, as CorruptSampleError naming the file ---------------------
P = pickle  # the opcode constants (pickle.MARK, pickle.BINPUT ...), to build streams by hand


def _text(value: str) -> bytes:
    data = value.encode()
    return P.SHORT_BINUNICODE + bytes([len(data)]) + data


def _label_stream(label_ops: bytes) -> bytes:
    """``{"label": <label_ops>}`` as a protocol-4 stream."""
    return P.PROTO + b"\x04" + P.EMPTY_DICT + _text("label") + label_ops + P.SETITEM + P.STOP


def _laughs(levels: int) -> bytes:
    """A list holding the previous list twice, ``levels`` times over (BINPUT / BINGET): 2**levels leaves."""
    doubling = P.MARK + P.BINGET + b"\x00" + P.BINGET + b"\x00" + P.LIST + P.BINPUT + b"\x00" + P.POP
    return P.EMPTY_LIST + P.BINPUT + b"\x00" + P.POP + doubling * levels + P.BINGET + b"\x00"


def _tuple_laughs(levels: int) -> bytes:
    """The same with DUP and TUPLE2: two bytes a level."""
    return P.NONE + (P.DUP + P.TUPLE2) * levels


SELF_LIST = P.EMPTY_LIST + P.BINPUT + b"\x00" + P.MARK + P.BINGET + b"\x00" + P.APPENDS
HOSTILE = {
    "billion laughs": _label_stream(_laughs(30)),
    "billion laughs of tuples": _label_stream(_tuple_laughs(60)),
    "laughs as a dict key": P.PROTO + b"\x04" + P.EMPTY_DICT + _tuple_laughs(40) + P.NONE + P.SETITEM + P.STOP,
    "list appended to itself": _label_stream(SELF_LIST),
    "list appended to itself 200 times": _label_stream(SELF_LIST + (P.BINGET + b"\x00" + P.APPEND) * 200),
    "nesting 20000 deep": _label_stream(P.EMPTY_LIST * 20000 + P.APPEND * 19999),
    "300000 opcodes": _label_stream(P.NONE + (P.NONE + P.POP) * 150000),
    "SETITEM on a list": _label_stream(P.EMPTY_LIST + P.NONE + P.NONE + P.SETITEM),
    "APPEND to a dict": _label_stream(P.EMPTY_DICT + P.NONE + P.APPEND),
    "BINGET of nothing stored": _label_stream(P.BINGET + b"\x07"),
    "a list as a dict key": _label_stream(P.EMPTY_DICT + P.EMPTY_LIST + P.NONE + P.SETITEM),
    "bytes of a declared 2**40 length": _label_stream(P.BINBYTES8 + (2**40).to_bytes(8, "little") + b"xx"),
    "an unknown opcode": _label_stream(b"\xff"),
    "APPENDS without MARK": _label_stream(P.EMPTY_LIST + P.NONE + P.APPENDS),
    "TUPLE2 of an empty stack": P.PROTO + b"\x04" + P.TUPLE2 + P.STOP,
    "no STOP": _label_stream(P.NONE)[:-1],
    "a huge int": _label_stream(P.LONG4 + (4000).to_bytes(4, "little") + b"\x7f" * 4000),
    # numpy's _reconstruct with state (1, (1,), dtype("O"), False, 8 raw bytes): objects, not numbers
    "an object dtype array": _label_stream(
        P.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n" + P.EMPTY_TUPLE + P.REDUCE
        + P.MARK + P.BININT1 + b"\x01" + P.BININT1 + b"\x01" + P.TUPLE1
        + P.GLOBAL + b"numpy\ndtype\n" + _text("O") + P.NEWFALSE + P.NEWTRUE + P.TUPLE3 + P.REDUCE
        + P.NEWFALSE + P.SHORT_BINBYTES + b"\x08" + b"\x00" * 8 + P.TUPLE + P.BUILD
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_pickled_labels_fail_fast_and_named(own_root: Path, case: str) -> None:
    stream = HOSTILE[case]
    path = own_root / "classification_v1.0/m-so2sat/id_0001.hdf5"
    with h5py.File(path, "a") as f:
        del f.attrs["label"]
        f.attrs["pickle"] = str(stream)
    task = GeoBenchTask.open("m-so2sat", root=own_root)
    start = time.perf_counter()
    with pytest.raises(CorruptSampleError, match=r"id_0001\.hdf5: (cannot read the label|expected)"):
        task.read_sample("id_0001")
    assert time.perf_counter() - start < 1.0
    assert RAN == []


def test_the_billion_laughs_is_small_and_the_limits_name_themselves() -> None:
    assert len(HOSTILE["billion laughs"]) < 300 and len(HOSTILE["billion laughs of tuples"]) < 150
    for case in ("billion laughs", "billion laughs of tuples", "laughs as a dict key"):
        with pytest.raises(StaticPickleError, match=r"max_size|dict key"):
            static_unpickle(HOSTILE[case])
    with pytest.raises(StaticPickleError, match="max_depth"):
        static_unpickle(HOSTILE["nesting 20000 deep"])
    with pytest.raises(StaticPickleError, match="max_ops"):
        static_unpickle(HOSTILE["300000 opcodes"])
    memo_flood = (
        P.PROTO
        + b"\x04"
        + P.NONE
        + b"".join(P.LONG_BINPUT + i.to_bytes(4, "little") for i in range(50))
        + P.STOP
    )
    assert static_unpickle(memo_flood) is None
    with pytest.raises(StaticPickleError, match="max_memo"):
        static_unpickle(memo_flood, PickleLimits(max_memo=10))
    with pytest.raises(StaticPickleError, match="max_bytes"):
        static_unpickle(memo_flood, PickleLimits(max_bytes=100))
    with pytest.raises(StaticPickleError, match="contains itself"):
        decode_static_value(static_unpickle(HOSTILE["list appended to itself"])["label"])
    # shared references within the limits are fine: 2**10 leaves
    assert len(decode_static_value(static_unpickle(_label_stream(_laughs(10)))["label"])) == 2


def test_static_unpickle_reads_what_pickle_writes_within_the_limits() -> None:
    shared = [1, 2]
    value = {"a": [shared, shared, (3, "x")], "b": {"n": None, 4: 2.5}, "c": b"raw", "d": {5, 6}}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        got = static_unpickle(pickle.dumps(value, protocol=protocol))
        assert got["a"] == [[1, 2], [1, 2], (3, "x")] and got["b"] == {"n": None, 4: 2.5}
        assert got["c"] == b"raw"
        if protocol >= 4:  # EMPTY_SET + ADDITEMS; earlier protocols build a set by calling builtins.set
            assert sorted(got["d"]) == [5, 6]
