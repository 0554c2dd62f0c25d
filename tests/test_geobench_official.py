"""Our GEO-Bench reader against GEO-Bench's own code (the geobench 1.0.0 sdist, run from PYTHONPATH).

tests/fixtures/make_geobench_official.py writes five small tasks from real pixels with GEO-Bench's writer; the
same script, run again in a subprocess, reads them with GEO-Bench's reader (`load_sample_hdf5`, partitions, task
specs). Every band by name, every label and every partition must come out of our reader the same, exactly.
The sdist comes from `bash scripts/geobench_sdist.sh` (`make test` runs it); without it these tests skip.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from fixtures.make_geobench_official import generate, missing_sdist_reason, run_with_sdist

from dataset_scripts.geobench import (
    CorruptSampleError,
    GeoBenchTask,
    StaticPickleError,
    get_preset,
    label_from_pickle_attr,
    load_geobench,
    read_task_specs,
    static_unpickle,
)

TASKS = ("m-bigearthnet", "m-so2sat", "m-cashew-plant", "m-forestnet", "m-pv4ger")
#: GEO-Bench bands no modality of ours serves
NOT_SERVED = {"Cloud Probability"}
#: GEO-Bench band names (geobench.dataset's band lists) -> (modality, our band name), written out by hand so that
#: a mapping mistake in the reader cannot hide behind the same mistake here
S2 = {
    "01 - Coastal aerosol": "B01", "02 - Blue": "B02", "03 - Green": "B03", "04 - Red": "B04",
    "05 - Vegetation Red Edge": "B05", "06 - Vegetation Red Edge": "B06", "07 - Vegetation Red Edge": "B07",
    "08 - NIR": "B08", "08A - Vegetation Red Edge": "B8A", "09 - Water vapour": "B09", "10 - SWIR - Cirrus": "B10",
    "11 - SWIR": "B11", "12 - SWIR": "B12",
}  # fmt: skip
EXPECTED_NAMES = {
    "m-bigearthnet": {k: ("sentinel2", v) for k, v in S2.items()},
    "m-cashew-plant": {k: ("sentinel2", v) for k, v in S2.items()},
    "m-so2sat": {
        **{k: ("sentinel2", v) for k, v in S2.items()},
        "01 - VH.Real": ("sentinel1", "VH_real"), "02 - VH.Imaginary": ("sentinel1", "VH_imag"),
        "03 - VV.Real": ("sentinel1", "VV_real"), "04 - VV.Imaginary": ("sentinel1", "VV_imag"),
        "05 - VH.LEE Filtered": ("sentinel1", "VH_lee"), "06 - VV.LEE Filtered": ("sentinel1", "VV_lee"),
        "07 - VH.LEE Filtered.Real": ("sentinel1", "VHVV_lee_real"),
        "08 - VV.LEE Filtered.Imaginary": ("sentinel1", "VHVV_lee_imag"),
    },
    "m-forestnet": {
        "04 - Red": ("landsat8", "B4"), "03 - Green": ("landsat8", "B3"), "02 - Blue": ("landsat8", "B2"),
        "05 - NIR": ("landsat8", "B5"), "06 - SWIR1": ("landsat8", "B6"), "07 - SWIR2": ("landsat8", "B7"),
    },
    "m-pv4ger": {"Red": ("aerial", "R"), "Green": ("aerial", "G"), "Blue": ("aerial", "B")},
}  # fmt: skip


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    reason = missing_sdist_reason()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("official")
    root, dumps, home = generate(base / "geobench"), base / "reference", base / "home"
    home.mkdir()
    task_dirs = {t: root / get_preset(t).benchmark / t for t in TASKS}
    run_with_sdist("dump", str(dumps), *map(str, task_dirs.values()), home=home)
    references = {}
    for task in TASKS:
        arrays = np.load(dumps / task / "arrays.npz")
        references[task] = {
            "json": json.loads((dumps / task / "reference.json").read_text()),
            "arrays": arrays,
        }
    return {"root": root, "dirs": task_dirs, "ref": references}


@pytest.mark.parametrize("task", TASKS)
def test_every_band_and_label_matches_geobench_reader(official: dict, task: str) -> None:
    ref = official["ref"][task]
    reader = GeoBenchTask.open(task, root=official["root"])
    samples = ref["json"]["samples"]
    assert len(samples) >= 24
    for name, entry in samples.items():
        ours = reader.read_sample(name)
        served = 0
        for band in entry["bands"]:
            theirs = ref["arrays"][band["key"]]
            if band["name"] in NOT_SERVED:
                continue
            modality, our_name = EXPECTED_NAMES[task][band["name"]]
            got = ours[modality][reader.bands[modality].index(our_name)]
            np.testing.assert_array_equal(
                got, theirs.astype(np.float32), err_msg=f"{task}/{name}/{band['name']}"
            )
            served += 1
        assert served == sum(len(b) for b in reader.bands.values())  # every band we serve was checked
        if "label_key" in entry:
            np.testing.assert_array_equal(ours["label"], ref["arrays"][entry["label_key"]])
        elif isinstance(entry["label"], list):
            np.testing.assert_array_equal(ours["label"], entry["label"])
            assert ours["label"].dtype == np.int8
        else:
            assert ours["label"] == entry["label"] and isinstance(ours["label"], int)


@pytest.mark.parametrize("task", TASKS)
def test_partitions_match_geobench(official: dict, task: str) -> None:
    partitions = official["ref"][task]["json"]["partitions"]
    reader = GeoBenchTask.open(task, root=official["root"])
    assert reader.partitions() == sorted(partitions)
    assert len(partitions) == 8  # default and the 0.01x .. 1.00x train sweep, as GEO-Bench makes them
    for partition, splits in partitions.items():
        for split, names in splits.items():
            assert reader.sample_names(split, partition) == names


@pytest.mark.parametrize("task", TASKS)
def test_task_specs_read_statically_match_geobench(official: dict, task: str) -> None:
    ref = official["ref"][task]["json"]
    facts = read_task_specs(official["dirs"][task] / "task_specs.pkl")
    assert facts.label_type == ref["label_type"] and facts.n_classes == ref["n_classes"]
    assert list(facts.band_names) == ref["bands_info"]
    assert list(facts.patch_size or ()) == ref["patch_size"]
    reader = GeoBenchTask.open(task, root=official["root"])
    names = ref["class_names"] or [str(i) for i in range(ref["n_classes"])]
    assert list(reader.label_names) == names


def test_class_names_are_the_converters_not_indices(official: dict) -> None:
    open_task = GeoBenchTask.open
    assert open_task("m-bigearthnet", root=official["root"]).label_names[:2] == (
        "Continuous urban fabric", "Discontinuous urban fabric",
    )  # fmt: skip
    assert open_task("m-so2sat", root=official["root"]).label_names[-1] == "Water"
    assert open_task("m-pv4ger", root=official["root"]).label_names == ("no solar pv", "solar pv")
    assert open_task("m-forestnet", root=official["root"]).label_names[10] == "Secondary forest"
    # the cashew converter stores SegmentationClasses without names: GEO-Bench has none to give
    assert open_task("m-cashew-plant", root=official["root"]).label_names == tuple("0123456")


def test_geobench_task_carries_the_class_names(official: dict) -> None:
    from dataset_scripts.tasks import geobench_task
    from modeling_geomeld.image_processing_geomeld import GeoMeldImageProcessor

    processor = GeoMeldImageProcessor(input_modalities={"sentinel2": []}, crop_size=48, crop_mode="center")
    task = geobench_task("m-bigearthnet", processor, root=official["root"])
    assert task.label_names[1] == "Discontinuous urban fabric" and len(task.label_names) == 43
    assert task.train.labels.shape == (15, 43) and len(task.test) == 4


def test_datasets_from_the_official_files(official: dict, tmp_path: Path) -> None:
    splits = load_geobench("m-forestnet", root=official["root"], cache_dir=str(tmp_path))
    sizes = {s: len(v) for s, v in official["ref"]["m-forestnet"]["json"]["partitions"]["default"].items()}
    assert {s: splits[s].num_rows for s in splits} == sizes
    row = splits["train"].with_format("numpy")[0]
    assert row["landsat8"].shape == (6, 40, 40) and row["landsat8"].dtype == np.float32


def test_normalisation_uses_geobench_band_stats(official: dict) -> None:
    """band_stats.json as GEO-Bench's compute_dataset_statistics writes it, keyed by band name without date."""
    directory = official["dirs"]["m-cashew-plant"]
    stats = json.loads((directory / "band_stats.json").read_text())
    assert "08A - Vegetation Red Edge" in stats and "label" in stats
    bands = {"sentinel2": ["B8A", "B08"]}
    raw = GeoBenchTask.open("m-cashew-plant", root=official["root"], bands=bands).read_sample("sample_3")
    normed = GeoBenchTask.open(
        "m-cashew-plant", root=official["root"], bands=bands, normalize=True
    ).read_sample("sample_3")
    for i, name in enumerate(["08A - Vegetation Red Edge", "08 - NIR"]):
        expected = (raw["sentinel2"][i] - stats[name]["mean"]) / stats[name]["std"]
        np.testing.assert_allclose(normed["sentinel2"][i], expected, rtol=1e-5, atol=1e-5)


# -- damage to a real sample's pickle: the correct value or CorruptSampleError, never anything else -------------
def _payload(path: Path) -> bytes:
    import ast

    with h5py.File(path, "r") as f:
        return ast.literal_eval(f.attrs["pickle"])


@pytest.mark.parametrize(("task", "sample"), [("m-bigearthnet", "id_0001"), ("m-so2sat", "id_0002")])
def test_bit_flips_in_a_real_pickle_give_a_valid_label_or_a_named_error(
    official: dict, task: str, sample: str
) -> None:
    path = official["dirs"][task] / f"{sample}.hdf5"
    preset = get_preset(task)
    payload = _payload(path)
    expected = GeoBenchTask.open(task, root=official["root"]).read_sample(sample)["label"]
    outcomes = {"same": 0, "other valid": 0, "error": 0}
    slowest = 0.0
    for seed in range(400):
        rng = np.random.default_rng(seed)
        damaged = bytearray(payload)
        for _ in range(1 + seed % 3):
            bit = int(rng.integers(0, 8 * len(damaged)))
            damaged[bit // 8] ^= 1 << (bit % 8)
        start = time.perf_counter()
        try:
            got = label_from_pickle_attr(str(bytes(damaged)), preset, path)
        except CorruptSampleError as exc:
            assert str(path) in str(exc)
            outcomes["error"] += 1
        else:  # a flip inside the label's own bytes can make another valid label: still a label of this task
            same = np.array_equal(got, expected)
            outcomes["same" if same else "other valid"] += 1
            if preset.label_kind == "multi_label":
                assert got.shape == (43,) and set(np.unique(got)) <= {0, 1}
            else:
                assert isinstance(got, int) and 0 <= got < preset.num_classes
        slowest = max(slowest, time.perf_counter() - start)
    assert outcomes["same"] > 0 and outcomes["error"] > 0, outcomes  # both kinds of damage were exercised
    assert slowest < 1.0


def test_every_truncation_of_a_real_pickle_is_a_named_error(official: dict) -> None:
    path = official["dirs"]["m-bigearthnet"] / "id_0002.hdf5"
    payload = _payload(path)
    for cut in range(0, len(payload) - 1, 7):
        with pytest.raises(CorruptSampleError, match=r"id_0002\.hdf5: cannot read the label"):
            label_from_pickle_attr(str(payload[:cut]), get_preset("m-bigearthnet"), path)


def test_a_damaged_task_specs_file_is_named(official: dict, tmp_path: Path) -> None:
    data = (official["dirs"]["m-pv4ger"] / "task_specs.pkl").read_bytes()
    target = tmp_path / "task_specs.pkl"
    for cut in (1, len(data) // 3, len(data) - 2):
        target.write_bytes(data[:cut])
        with pytest.raises(CorruptSampleError, match=r"task_specs\.pkl: cannot read the task specifications"):
            read_task_specs(target)
    assert static_unpickle(data).func.name == "TaskSpecifications"
    with pytest.raises(StaticPickleError):
        static_unpickle(data[:-1])


def test_reading_the_official_files_unpickles_nothing(
    official: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Samples, partitions, statistics and class names, with pickle's loaders booby-trapped."""
    import pickle

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("the reader unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_unpickling)
    for task in TASKS:
        load_geobench(task, root=official["root"], normalize=True, cache_dir=str(tmp_path))
        assert len(GeoBenchTask.open(task, root=official["root"]).label_names) == get_preset(task).num_classes
