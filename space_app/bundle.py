"""A folder that deploys as a Hugging Face Space as it is: ``geomeld space-bundle --out DIR``.

``geomeld`` is not on PyPI, so a Space cannot ``pip install`` it: the bundle carries the project's own code
(``space_app``, ``modeling_geomeld``, ``dataset_scripts``) next to a two-line ``app.py``, and its
``requirements.txt`` (this package's ``space_app/requirements.txt``) names only packages the registry has.
The checkpoint, index and dataset go under the demo's default paths ``outputs/demo/{checkpoint,index,dataset}``
that ``app.py`` reads when the ``GEOMELD_*`` variables are unset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = ("space_app", "modeling_geomeld", "dataset_scripts")
LAUNCHER = '''"""Hugging Face Space entry point: the GeoMeld retrieval app (code bundled next to this file)."""
import sys

from space_app.app import main

sys.exit(main())
'''


def distribution_name(spec: str) -> str:
    """``dask[distributed]>=2025.1`` -> ``dask``: the normalised name of a requirement specifier."""
    import re

    return re.split(r"[<>=!~\[; ]", spec.strip(), maxsplit=1)[0].strip().lower().replace("_", "-")


def requirement_names(path: str | Path = HERE / "requirements.txt") -> list[str]:
    """The distribution names ``requirements.txt`` installs (options and comments left out)."""
    names = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(distribution_name(line))
    return names


def bundle_space(out: str | Path, checkpoint: str | Path | None = None, index: str | Path | None = None, dataset: str | Path | None = None) -> Path:
    """Write the Space folder ``out`` (refused when it exists and is not empty); data folders are optional."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"expected an empty or new folder for the Space bundle, found files in {out}")
    out.mkdir(parents=True, exist_ok=True)
    root = HERE.parent
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(root / package, out / package, ignore=ignore)
    shutil.copy2(HERE / "requirements.txt", out / "requirements.txt")
    shutil.copy2(HERE / "README.md", out / "README.md")  # the Space card (front matter: sdk, app_file)
    (out / "app.py").write_text(LAUNCHER, encoding="utf-8")
    for name, folder in (("checkpoint", checkpoint), ("index", index), ("dataset", dataset)):
        if folder is not None:
            shutil.copytree(folder, out / "outputs" / "demo" / name, ignore=ignore)
    return out
