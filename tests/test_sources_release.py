"""The original release format (tar shards of .h5 samples, tests/fixtures/make_release.py) as a source."""

from __future__ import annotations

import gzip
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from fixtures.make_release import (
    DUAL_POL_HH_HV,
    EXPECTED,
    H5_KEYS,
    METADATA_FIELDS,
    band_value,
    h5_bytes,
    make_release,
    sample_arrays,
    sample_metadata,
)

from dataset_scripts.sources import open_source
from dataset_scripts.sources.release import ReleaseSource, canonical_band_name, decode_member
from dataset_scripts.types import AlignedSample, QuarantineError
from modeling_geomeld.modalities import MODALITIES, SENTINEL2_BANDS

GOOD = [k for k, reason in EXPECTED.items() if reason is None]
BAD = {k: reason for k, reason in EXPECTED.items() if reason is not None}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def decoded(release: Path) -> tuple[dict[str, AlignedSample], ReleaseSource]:
    source = open_source(f"geomeld-release:{release}")
    samples = {s.metadata["release_key"]: s for s in source.anchors()}
    return samples, source


def test_good_samples_come_out_in_order_and_bad_ones_are_quarantined(decoded):
    samples, source = decoded
    assert list(samples) == GOOD  # s006 follows three bad samples; s200 follows a truncated shard
    assert {r.anchor_id: r.reason for r in source.quarantined} == BAD
    messages = {r.anchor_id: r.message for r in source.quarantined}
    assert "truncated" in messages["s101"] and "shard-000001.tar" in messages["s101"]
    assert "found 11 bands" in messages["s005"]


def test_every_band_is_recovered_by_name(decoded):
    samples, _ = decoded
    for key, sample in samples.items():
        for modality in ("sentinel2", "sentinel1", "dem", "canopy_height"):
            array, names = sample.arrays[modality], sample.bands[modality]
            assert array.shape[0] == len(names)
            # canonical registry order, whatever order the release stored them in
            assert list(names) == [b for b in MODALITIES[modality].band_names if b in names]
            for i, band in enumerate(names):
                if modality == "sentinel1" and band[:2] in ("HH", "HV") and key not in DUAL_POL_HH_HV:
                    assert np.isnan(array[i]).all(), (key, band)  # empty in the release: masked, not zeros
                    continue
                assert np.all(array[i] == np.float32(band_value(key, modality, band))), (key, modality, band)


def test_b8_and_b8a_differ_and_land_on_their_own_names(decoded):
    samples, _ = decoded
    for key in ("s000", "s001", "s002"):  # release spelling, no band_names, B8-before-B8A band_names
        s2 = samples[key]
        b08, b8a = s2.bands["sentinel2"].index("B08"), s2.bands["sentinel2"].index("B8A")
        assert b08 < b8a
        assert s2.arrays["sentinel2"][b08, 0, 0] == np.float32(band_value(key, "sentinel2", "B08"))
        assert s2.arrays["sentinel2"][b8a, 0, 0] == np.float32(band_value(key, "sentinel2", "B8A"))
        assert s2.arrays["sentinel2"][b08, 0, 0] != s2.arrays["sentinel2"][b8a, 0, 0]


def test_s1_orbit_bands_from_either_spelling(decoded):
    samples, _ = decoded
    for key in ("s000", "s002"):  # "VV_asc" and "asc_VV"/"desc_VV"
        s1 = samples[key]
        assert s1.bands["sentinel1"] == (
            "VV_asc",
            "VH_asc",
            "HH_asc",
            "HV_asc",
            "VV_des",
            "VH_des",
            "HH_des",
            "HV_des",
        )
        asc, des = s1.arrays["sentinel1"][0, 0, 0], s1.arrays["sentinel1"][4, 0, 0]
        assert asc == np.float32(band_value(key, "sentinel1", "VV_asc")) != des


def test_naip_subset_sample(decoded):
    samples, _ = decoded
    s = samples["s002"]
    assert s.bands["sentinel2"] == tuple(b for b in SENTINEL2_BANDS if b not in ("B02", "B03", "B04"))
    assert s.arrays["naip"].shape == (3, 80, 80) and s.arrays["naip"].dtype == np.uint16
    assert s.bands["naip"] == ("R", "G", "B")
    assert "naip" not in samples["s000"].arrays  # absent, not zero-filled


def test_layers_keep_release_dtypes_and_registry_names(decoded):
    samples, _ = decoded
    s = samples["s000"]
    assert set(s.arrays) == {
        "sentinel2",
        "sentinel1",
        "dem",
        "canopy_height",
        "esa_worldcover",
        "dynamic_world",
    }
    assert s.bands["dem"] == ("elevation", "slope")  # the release's "aster" key
    assert s.arrays["esa_worldcover"].dtype == np.uint8 and s.arrays["dynamic_world"].dtype == np.uint8
    assert s.arrays["sentinel2"].dtype == np.float32


def test_metadata_is_mapped(decoded):
    samples, _ = decoded
    for key, s in samples.items():
        n = int(key[1:])
        assert s.tile_id == f"tile-{key}"
        assert s.metadata["lat"] == pytest.approx(40.0 + n / 1000.0)
        assert s.metadata["lon"] == pytest.approx(-105.0 - n / 1000.0)
        assert "long" not in s.metadata
        assert (s.metadata["water_detected"], s.metadata["water_percentage"]) == (True, 12.5)
        assert s.metadata["acquisition_date"] == "2020-07-14"
        assert s.metadata["datetime"] == "2020-07-14T00:00:00"
        assert s.metadata["osm_tags"] == {
            "natural": "water",
            "landuse": "forest",
        }  # as it comes, for captions
        assert s.metadata["water_analysis"] == {"detected": True, "percentage": 12.5}
        assert s.metadata["file_type_naip"] is (key == "s002")
        assert s.metadata["s2_offset_source"] == "none_found" and s.metadata["s2_offset_removed"] == 0.0
    assert "release_band_names" not in samples["s001"].metadata
    assert samples["s100"].metadata["terrain_class"] == "hills"  # metadata from a .json member


def test_strict_stops_at_the_first_bad_sample(release):
    source = ReleaseSource(str(release), strict=True)
    seen = []
    with pytest.raises(QuarantineError) as err:
        for sample in source.anchors():
            seen.append(sample.metadata["release_key"])
    assert err.value.reason == "corrupt_file" and "s003" in str(err.value)
    assert seen == ["s000", "s001", "s002"]


def test_pickle_members_are_never_read_and_members_ship_to_workers(release):
    source = ReleaseSource(str(release))
    members = {m.key: m for m in source.members()}
    assert set(members["s002"].files) == {"h5"}  # the .pyd member was skipped, its bytes never kept
    shipped = pickle.loads(pickle.dumps(members["s000"]))  # what a Dask worker receives
    assert decode_member(shipped).bands == decode_member(members["s000"]).bands


def test_gzipped_shards_globs_and_single_files(release, tmp_path):
    (tmp_path / "shard-000000.tar.gz").write_bytes(gzip.compress((release / "shard-000000.tar").read_bytes()))
    gz = ReleaseSource(str(tmp_path))
    assert [s.metadata["release_key"] for s in gz.anchors()] == ["s000", "s001", "s002", "s006"]
    glob = ReleaseSource(str(release / "shard-00000[12].tar"))
    assert [s.metadata["release_key"] for s in glob.anchors()] == ["s100", "s200"]
    single = ReleaseSource(str(release / "shard-000002.tar"))
    assert len(list(single.anchors())) == 1 and not single.quarantined


def test_a_location_without_shards_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="holds no shards"):
        ReleaseSource(str(tmp_path))
    with pytest.raises(ValueError, match="missing"):
        ReleaseSource(str(tmp_path / "nope.tar"))


@pytest.mark.parametrize(
    ("modality", "name", "expected"),
    [
        ("sentinel2", "B1", "B01"),
        ("sentinel2", "b8a", "B8A"),
        ("sentinel2", "B8", "B08"),
        ("sentinel2", "B08", "B08"),
        ("sentinel2", "B10", "B10"),
        ("sentinel1", "VV_ascending", "VV_asc"),
        ("sentinel1", "desc-VH", "VH_des"),
        ("sentinel1", "vv", "VV"),
        ("dem", "Elevation", "elevation"),
    ],
)
def test_canonical_band_name(modality, name, expected):
    assert canonical_band_name(modality, name) == expected


@pytest.mark.parametrize(
    ("modality", "name"), [("sentinel2", "B13"), ("sentinel1", "VV_VH"), ("dem", "aspect")]
)
def test_unknown_band_names_are_rejected(modality, name):
    with pytest.raises(ValueError, match="registry's bands"):
        canonical_band_name(modality, name)


def test_fixture_follows_the_documented_layout(release):
    """h5 keys, S1 band count, metadata fields and the two Parquet configs as documented; no caption key."""
    import io
    import tarfile

    import h5py
    import pyarrow.parquet as pq

    with tarfile.open(release / "shard-000000.tar") as tar:
        for name in ("s000.h5", "s002.h5"):
            with h5py.File(io.BytesIO(tar.extractfile(name).read()), "r") as h5:
                assert set(h5) <= set(H5_KEYS) and "caption" not in h5 and "metadata" in h5
                assert h5["sentinel1"].shape[0] == 8
                assert h5["sentinel2"].shape[0] == (9 if name == "s002.h5" else 12)
                assert ("naip" in h5) is (name == "s002.h5")
                assert set(json.loads(h5["metadata"][()])) == set(METADATA_FIELDS)
    naip = pq.read_table(release / "naip" / "metadata.parquet").to_pylist()
    non_naip = pq.read_table(release / "non_naip" / "metadata.parquet").to_pylist()
    assert [r["tile_id"] for r in naip] == ["tile-s002"]
    assert len(non_naip) == len(GOOD) - 1 and set(non_naip[0]) == set(METADATA_FIELDS)


def test_hh_hv_are_masked_where_empty_and_kept_where_acquired(decoded):
    samples, _ = decoded
    s000, s006 = samples["s000"], samples["s006"]
    assert set(s000.metadata["s1_empty_bands"]) == {"HH_asc", "HV_asc", "HH_des", "HV_des"}
    assert s006.metadata["s1_empty_bands"] == []
    vv = s000.bands["sentinel1"].index("VV_asc")
    assert np.isfinite(s000.arrays["sentinel1"][vv]).all()


def test_shards_are_streamed_not_unpacked(release, tmp_path, monkeypatch):
    """A non-seekable stream decodes the same samples, and nothing is written to disk meanwhile."""
    from dataset_scripts.sources.release import iter_shard

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes):
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
            chunk = self.inner.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

        def seekable(self) -> bool:
            return False

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    data = (release / "shard-000000.tar").read_bytes()
    keys = [m.key for m in iter_shard("pipe", io.BufferedReader(Pipe(data)))]
    assert keys[:3] == ["s000", "s001", "s002"] and "s006" in keys
    assert list(tmp_path.iterdir()) == []


def test_release_metadata_offset_is_harmonised(tmp_path):
    """A release sample whose metadata declare baseline 05.00 DN: the offset comes off, once, recorded."""
    import tarfile

    arrays = sample_arrays("s000", 8)
    arrays["sentinel2"] = arrays["sentinel2"] + 1000.0
    meta = {**sample_metadata("s000", None), "s2:processing_baseline": "05.00"}
    with tarfile.open(tmp_path / "shard-000000.tar", "w") as tar:
        data = h5_bytes(arrays, meta)
        info = tarfile.TarInfo("s000.h5")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    [sample] = ReleaseSource(str(tmp_path)).anchors()
    assert (sample.metadata["s2_offset_removed"], sample.metadata["s2_offset_source"]) == (
        1000.0,
        "processing_baseline",
    )
    b01 = sample.bands["sentinel2"].index("B01")
    assert np.all(
        sample.arrays["sentinel2"][b01] == np.rint(np.float32(band_value("s000", "sentinel2", "B01")))
    )
