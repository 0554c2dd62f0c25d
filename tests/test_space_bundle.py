"""The Space deploys as shipped: its requirements are registry packages that cover the app's imports, and the
bundle's ``app.py`` imports the bundled code, not the developer's installed copy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from space_app.bundle import bundle_space, distribution_name, requirement_names

ROOT = Path(__file__).resolve().parents[1]
PYPI_LIST = Path("/work/.library/env/packages/pypi.tsv")


def _pyproject_names() -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [distribution_name(d) for d in deps]


def test_requirements_are_the_runtime_dependencies_and_not_geomeld() -> None:
    names = requirement_names()
    assert "geomeld" not in names  # not a registry package: the bundle carries the code instead
    assert sorted(names) == sorted(_pyproject_names())


def test_every_requirement_is_on_the_registry() -> None:
    if not PYPI_LIST.is_file():
        pytest.skip(f"no list of the registry's packages at {PYPI_LIST}")
    listed = set()
    with PYPI_LIST.open(encoding="utf-8") as fh:
        for line in fh:
            listed.add(line.split("\t", 1)[0].lower().replace("_", "-"))
    missing = [n for n in requirement_names() if n not in listed]
    assert not missing, missing


def test_the_bundle_imports_its_own_code(tmp_path: Path) -> None:
    out = bundle_space(tmp_path / "space")
    assert {"app.py", "requirements.txt", "README.md", "space_app", "modeling_geomeld", "dataset_scripts"} <= {p.name for p in out.iterdir()}
    assert "app_file: app.py" in (out / "README.md").read_text()
    code = "import runpy, sys; sys.argv = ['app.py', '--help']; runpy.run_path('app.py', run_name='__main__')"
    probe = "import space_app.app, modeling_geomeld, dataset_scripts; print(space_app.app.__file__, modeling_geomeld.__file__)"
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, '.'); {probe}"], cwd=out, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(path.startswith(str(out)) for path in done.stdout.split()), done.stdout
    helped = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--checkpoint" in helped.stdout, helped.stderr[-2000:]
    with pytest.raises(FileExistsError):
        bundle_space(out)
