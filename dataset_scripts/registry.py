"""The modality registry without the model: load ``modeling_geomeld.modalities`` without its package's ``__init__``.

``import modeling_geomeld`` imports transformers and torch to register the Auto classes (4-8 s per process on
the build machine), and any ``from modeling_geomeld.modalities import X`` runs that ``__init__`` first. The
builder needs only the registry (standard library and numpy), so :func:`load` finds the package's folder with
a top-level ``importlib.util.find_spec`` (which locates a package without importing it), executes
``modalities.py`` from there and places it in ``sys.modules`` under its canonical name. Every later
``from modeling_geomeld.modalities import X`` is then served from ``sys.modules`` without touching the package,
and a later ``import modeling_geomeld`` binds the same module object (its ``__init__`` does
``from . import modalities``, which finds the submodule already in ``sys.modules``): one registry per process.

:mod:`dataset_scripts` runs :func:`load` when it is imported, so every builder module (and every Dask worker
unpickling a builder task) gets the registry this way.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACKAGE = "modeling_geomeld"
NAME = f"{PACKAGE}.modalities"


def load() -> ModuleType:
    """The registry module, loaded without running ``modeling_geomeld/__init__.py`` if not loaded yet."""
    module = sys.modules.get(NAME)
    if module is not None:
        return module
    if PACKAGE in sys.modules:  # the package is (being) imported: its own import machinery owns the submodule
        return importlib.import_module(NAME)
    package = importlib.util.find_spec(PACKAGE)
    if package is None or not package.submodule_search_locations:
        raise ImportError(f"expected the {PACKAGE} package (pip install geomeld), found no such package")
    path = Path(next(iter(package.submodule_search_locations))) / "modalities.py"
    spec = importlib.util.spec_from_file_location(NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"expected the modality registry at {path}, found nothing importable there")
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module  # before executing, as the import system does (dataclasses look it up by name)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[NAME]
        raise
    return module
