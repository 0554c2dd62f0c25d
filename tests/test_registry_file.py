"""The open modality registry: sensors declared in YAML / JSON files, used end to end, validated with clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from modeling_geomeld import modalities as registry
from modeling_geomeld.modalities import (
    MODALITIES,
    RegistryError,
    get_modality,
    load_registry_file,
    register_modality,
)

ROOT = Path(__file__).resolve().parents[1]
#: a PlanetScope SuperDove-like 4-band sensor, as a user would declare it (wavelengths from Planet's sheet)
DECLARATION = {
    "name": "superdove",
    "kind": "continuous",
    "dtype": "uint16",
    "gsd": 3.0,
    "nodata": 0,
    "license": "Planet Labs PBC licence (user's own)",
    "source": "PlanetScope SuperDove 4-band analytic SR",
    "bands": [
        {"name": "blue", "wavelength_nm": 490, "bandwidth_nm": 50, "unit": "reflectance x 10000", "valid_range": [1, 10000]},
        {"name": "green", "wavelength_nm": 565, "bandwidth_nm": 36, "unit": "reflectance x 10000", "valid_range": [1, 10000]},
        {"name": "red", "wavelength_nm": 665, "bandwidth_nm": 31, "unit": "reflectance x 10000", "valid_range": [1, 10000]},
        {"name": "nir", "wavelength_nm": 865, "bandwidth_nm": 40, "unit": "reflectance x 10000", "valid_range": [1, 10000]},
    ],
    "default_bands": ["blue", "green", "red", "nir"],
    "stats": {"blue": [600.0, 300.0], "green": [900.0, 350.0], "red": [1000.0, 450.0], "nir": [2600.0, 800.0]},
}  # fmt: skip
CROPS = {
    "name": "crop_types",
    "kind": "categorical",
    "dtype": "uint8",
    "gsd": 10,
    "nodata": 0,
    "license": "CC-BY-4.0",
    "bands": ["class"],
    "classes": [{"code": 1, "name": "wheat", "color": "#f5deb3"}, {"code": 7, "name": "maize"}],
}


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Leave the process's registry as it was (user modalities registered by a test are removed)."""
    before = set(MODALITIES)
    yield
    for name in set(MODALITIES) - before:
        registry.unregister_modality(name)


def _yaml(path: Path, entries: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"modalities": entries}, sort_keys=False), encoding="utf-8")
    return path


def test_yaml_and_json_declarations_register_equal_modalities(tmp_path: Path, clean_registry: None) -> None:
    (loaded,) = [m for m in load_registry_file(_yaml(tmp_path / "sensors.yaml", [DECLARATION, CROPS])) if m.name == "superdove"]
    assert MODALITIES["superdove"] is loaded is get_modality("superdove")  # the live view sees it
    assert loaded.band("red").wavelength_nm == 665 and loaded.band("nir").valid_range == (1.0, 10000.0)
    assert loaded.band_stats(["red"])[0].tolist() == [1000.0]
    crops = get_modality("crop_types")
    assert crops.code_to_index() == {1: 0, 7: 1} and crops.classes[1].color.startswith("#")
    as_json = registry.modality_to_dict(loaded)
    registry.unregister_modality("superdove")
    (tmp_path / "sensors.json").write_text(json.dumps({"modalities": [DECLARATION]}), encoding="utf-8")
    (again,) = load_registry_file(tmp_path / "sensors.json")
    assert registry.modality_to_dict(again) == {**as_json, "source": again.source}
    load_registry_file(tmp_path / "sensors.json")  # the same declaration again: a no-op


def test_a_declared_sensor_is_normalised_with_its_declared_statistics(tmp_path: Path, clean_registry: None) -> None:
    from modeling_geomeld import GeoMeldImageProcessor

    load_registry_file(_yaml(tmp_path / "s.yml", [DECLARATION]))
    proc = GeoMeldImageProcessor(input_modalities={"superdove": []}, crop_size=None)
    dn = np.random.default_rng(0).integers(1, 5000, size=(4, 32, 32)).astype(np.uint16)
    dn[:, 0, 0] = 0  # nodata / below the declared valid range
    file_order = ["nir", "red", "green", "blue"]  # the file's own order: reordered by name
    batch = proc({"superdove": dn[::-1]}, band_names={"superdove": file_order})
    values = batch["pixel_values"]["superdove"][0].numpy()
    mean = np.array([600.0, 900.0, 1000.0, 2600.0])[:, None, None]
    std = np.array([300.0, 350.0, 450.0, 800.0])[:, None, None]
    expected = (dn.astype(np.float64) - mean) / std
    np.testing.assert_allclose(values[:, 1:, 1:], expected[:, 1:, 1:], rtol=1e-5)
    assert not bool(batch["valid_mask"]["superdove"][0, 0, 0]) and int(batch["invalid_pixels"]["superdove"][0]) == 1


def _without_the_file(script: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` (given `folder` as argv[1]) in a fresh process that never saw a registry file."""
    env = {k: v for k, v in os.environ.items() if k != registry.REGISTRY_ENV}
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_config_carries_the_declaration_and_loads_in_a_fresh_process(tmp_path: Path, clean_registry: None) -> None:
    from modeling_geomeld import GeoMeldConfig, GeoMeldVisionModel

    load_registry_file(_yaml(tmp_path / "s.yaml", [DECLARATION]))
    config = GeoMeldConfig.from_preset(
        "tiny", encoder_config={"input_modalities": {"superdove": ["blue", "green", "red", "nir"]}}
    )
    assert [d["name"] for d in config.custom_modalities] == ["superdove"]
    GeoMeldVisionModel(config).save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["custom_modalities"][0]["stats"]["default"]["nir"] == [2600.0, 800.0]
    script = (
        "import sys, torch\n"
        "from modeling_geomeld import GeoMeldVisionModel, GeoMeldImageProcessor, MODALITIES\n"
        "assert 'superdove' not in MODALITIES\n"
        "model = GeoMeldVisionModel.from_pretrained(sys.argv[1])\n"
        "mod = MODALITIES['superdove']\n"
        "proc = GeoMeldImageProcessor.from_model_config(model.config, crop_size=None)\n"
        "batch = proc({'superdove': torch.full((4, 32, 32), 1000.0).numpy()}, band_names={'superdove': list(mod.default_bands)})\n"
        "out = model(pixel_values=batch['pixel_values'], valid_mask=batch['valid_mask'])\n"
        "print(mod.band('nir').wavelength_nm, mod.band_stats(['nir'])[1][0], tuple(out.pooler_output.shape))\n"
    )
    done = _without_the_file(script, tmp_path / "model")
    assert done.stdout.split()[:2] == ["865.0", "800.0"]


def test_environment_variable_registers_files_at_import_without_the_model_package(tmp_path: Path) -> None:
    first = _yaml(tmp_path / "a.yaml", [DECLARATION])
    second = tmp_path / "b.json"
    second.write_text(json.dumps([CROPS]), encoding="utf-8")
    script = (
        "import sys\n"
        "import dataset_scripts\n"  # the builder's path: registry.load() runs modalities.py alone
        "from modeling_geomeld.modalities import MODALITIES\n"
        "print(sorted(set(MODALITIES) & {'superdove', 'crop_types'}), 'torch' in sys.modules)\n"
    )
    env = {**os.environ, registry.REGISTRY_ENV: f"{first}{os.pathsep}{second}"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['crop_types', 'superdove'] False"
    env[registry.REGISTRY_ENV] = str(tmp_path / "missing.yaml")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert done.returncode != 0
    assert f"GEOMELD_MODALITIES={tmp_path / 'missing.yaml'}" in done.stderr and "found no such file" in done.stderr


def _without(key: str) -> dict:
    return {k: v for k, v in DECLARATION.items() if k != key}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_without("gsd"), r"modality 'superdove': expected the fields \['name', 'dtype', 'gsd', 'license', 'bands'\], found \"missing \['gsd'\]\""),
        (_without("license"), r"found \"missing \['license'\]\""),
        ({**DECLARATION, "gsd": "ten"}, r"expected `gsd` in metres as a positive number, found 'ten'"),
        ({**DECLARATION, "dtype": "uint17"}, r"expected `dtype` as a numpy dtype .*found 'uint17'"),
        ({**DECLARATION, "bands": "blue,red"}, r"expected `bands` as a non-empty list, found 'blue,red'"),
        ({**DECLARATION, "bands": [*DECLARATION["bands"], {"name": "red"}]}, r"expected each band name once, found \['red'\]"),
        ({**DECLARATION, "name": "sentinel2"}, r"modality 'sentinel2': expected a name that is not a built-in modality .*found 'sentinel2'"),
        ({**DECLARATION, "name": "label"}, r"not a built-in modality"),
        ({**DECLARATION, "stats": {**DECLARATION["stats"], "swir": [1.0, 2.0]}}, r"stats: expected statistics for declared bands \['blue', 'green', 'red', 'nir'\], found \['swir'\]"),
        ({**DECLARATION, "stats": {"blue": [600.0, 300.0]}}, r"expected statistics of variant 'default' for every default band, found \"none for \['green', 'red', 'nir'\]\""),
        ({**DECLARATION, "stats": {**DECLARATION["stats"], "red": [1000.0, 0]}}, r"stats of 'red': expected a std as a positive number, found 0"),
        ({**DECLARATION, "default_bands": ["blue", "swir"]}, r"`default_bands` among the declared bands .*found \['swir'\]"),
        ({**DECLARATION, "wavelength": 490}, r"expected fields from .*found \['wavelength'\]"),
        ({**DECLARATION, "bands": [{"name": "blue", "valid_range": [10, 1]}]}, r"band 'blue': expected `valid_range` with low < high"),
        ({**DECLARATION, "name": "Super Dove"}, r"expected `name` of lower-case letters, digits and underscores, found 'Super Dove'"),
        ({**CROPS, "classes": None}, r"modality 'crop_types': expected `classes` as a non-empty list"),
        ({**CROPS, "classes": [{"code": 1, "name": "a"}, {"code": 1, "name": "b"}]}, r"expected each class code once, found \[1\]"),
        ({**CROPS, "classes": [{"code": 0, "name": "a"}]}, r"class 'a': expected an integer `code` in 0..255 other than no-data 0, found 0"),
        ({**CROPS, "kind": "discrete"}, r"expected `kind` from \['continuous', 'categorical'\], found 'discrete'"),
    ],
)
def test_every_validation_error_names_file_entry_expected_and_found(
    tmp_path: Path, clean_registry: None, entry: dict, message: str
) -> None:
    path = _yaml(tmp_path / "bad.yaml", [entry])
    with pytest.raises(RegistryError, match=message) as err:
        load_registry_file(path)
    assert str(err.value).startswith(f"{path}: modality ")
    assert entry.get("name", "") not in MODALITIES or registry.is_builtin(entry["name"])  # nothing half-registered


def test_file_level_errors(tmp_path: Path, clean_registry: None) -> None:
    with pytest.raises(RegistryError, match="found no such file"):
        load_registry_file(tmp_path / "absent.yaml")
    (tmp_path / "s.toml").write_text("x = 1")
    with pytest.raises(RegistryError, match=r"expected a \.yaml, \.yml or \.json registry file, found suffix '\.toml'"):
        load_registry_file(tmp_path / "s.toml")
    (tmp_path / "s.json").write_text('{"modalities": [}')
    with pytest.raises(RegistryError, match=r"s\.json: expected JSON, found a syntax error at line 1"):
        load_registry_file(tmp_path / "s.json")
    (tmp_path / "e.yaml").write_text("modalities: []\n")
    with pytest.raises(RegistryError, match=r"expected a non-empty `modalities:` list of declarations, found \[\]"):
        load_registry_file(tmp_path / "e.yaml")
    with pytest.raises(RegistryError, match=r"expected each modality name once, found \['superdove'\]"):
        load_registry_file(_yaml(tmp_path / "twice.yaml", [DECLARATION, DECLARATION]))
    load_registry_file(_yaml(tmp_path / "one.yaml", [DECLARATION]))
    changed = {**DECLARATION, "gsd": 4.0}
    with pytest.raises(RegistryError, match="expected a new name or the same declaration as the registered 'superdove'"):
        register_modality(changed, origin="notebook")
    with pytest.raises(RegistryError, match="found the built-in 'sentinel2'"):
        registry.unregister_modality("sentinel2")


BUILD_SCRIPT = """
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import rasterio
from rasterio.transform import from_origin

from dataset_scripts.align import AlignConfig
from dataset_scripts.build import BuildOptions, build
from dataset_scripts.loading import decode_row

folder = Path(sys.argv[1])
data = np.random.default_rng(0).integers(100, 5000, (4, 120, 120)).astype("uint16")
profile = dict(driver="GTiff", width=120, height=120, count=4, dtype="uint16", crs="EPSG:32632",
               transform=from_origin(500000, 6340000, 3, 3), nodata=0)
with rasterio.open(folder / "sd.tif", "w", **profile) as ds:
    ds.write(data)
(folder / "m.csv").write_text("anchor_id,modality,path,bands\\na,superdove,sd.tif,\\"nir,red,green,blue\\"\\n")
build(f"manifest:{folder / 'm.csv'}", folder / "out", BuildOptions(workers=0, progress=False, align=AlignConfig(size_px=16)))
rows = [r for f in (folder / "out" / "data").rglob("*.parquet") for r in pq.read_table(f).to_pylist()]
layer = decode_row(rows[0])["superdove"]
print(rows[0]["superdove_bands"], layer.shape, float(np.nanmean(layer[0])) > 100)
"""


def test_a_sensor_declared_in_the_environment_is_built_by_the_real_builder(tmp_path: Path) -> None:
    env = {**os.environ, registry.REGISTRY_ENV: str(_yaml(tmp_path / "s.yaml", [DECLARATION]))}
    done = subprocess.run(
        [sys.executable, "-c", BUILD_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=240, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # the file's own band order (nir first) is stored in the declared canonical order
    assert done.stdout.split("]")[0] == "['blue', 'green', 'red', 'nir'" and done.stdout.strip().endswith("(4, 16, 16) True")


def test_a_sensor_registered_after_the_writer_started_is_refused_by_the_manifest(tmp_path: Path, clean_registry: None) -> None:
    import dataset_scripts.writer  # noqa: F401  (the writer fixes its schema at import, before the registration)
    from dataset_scripts.sources.manifest import ManifestSource

    register_modality(DECLARATION, origin="notebook")
    (tmp_path / "m.csv").write_text("anchor_id,modality,path\na,superdove,sd.tif\n")
    with pytest.raises(ValueError, match=r"m\.csv line 2: modality 'superdove' was registered after the builder's storage schema"):
        ManifestSource(str(tmp_path / "m.csv"))


def test_processor_carries_the_declaration_and_loads_in_a_fresh_process(tmp_path: Path, clean_registry: None) -> None:
    """A folder's processor, like its config, loads with `AutoImageProcessor` where the registry file never was."""
    from modeling_geomeld import GeoMeldConfig, GeoMeldForSemanticSegmentation, GeoMeldImageProcessor
    from modeling_geomeld.hub import complete_folder

    load_registry_file(_yaml(tmp_path / "s.yaml", [DECLARATION]))
    config = GeoMeldConfig.from_preset(
        "tiny", num_labels=2, encoder_config={"input_modalities": {"superdove": ["blue", "green", "red", "nir"]}}
    )
    processor = GeoMeldImageProcessor.from_model_config(config)
    assert [d["name"] for d in processor.custom_modalities] == ["superdove"]
    assert GeoMeldImageProcessor().custom_modalities == []  # built-ins carry no declarations
    complete_folder(GeoMeldForSemanticSegmentation(config), processor, tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "preprocessor_config.json").read_text())
    assert saved["custom_modalities"][0]["bands"][3]["name"] == "nir"
    script = (
        "import sys, numpy as np\n"
        "import modeling_geomeld\n"
        "from transformers import AutoImageProcessor\n"
        "from modeling_geomeld.modalities import MODALITIES\n"
        "assert 'superdove' not in MODALITIES\n"
        "proc = AutoImageProcessor.from_pretrained(sys.argv[1])\n"
        "dn = np.full((4, 20, 20), 3400, dtype=np.uint16)\n"
        "batch = proc({'superdove': dn}, band_names={'superdove': ['blue', 'green', 'red', 'nir']})\n"
        "print(type(proc).__name__, float(batch['pixel_values']['superdove'][0, 3, 0, 0]), tuple(batch['pixel_values']['superdove'].shape))\n"
    )
    done = _without_the_file(script, tmp_path / "model")
    # nir normalised by the declared statistics (3400 - 2600) / 800 = 1.0; 20 px padded to the patch multiple
    assert done.stdout.split()[:2] == ["GeoMeldImageProcessor", "1.0"]
    assert done.stdout.strip().endswith("(1, 4, 32, 32)")
