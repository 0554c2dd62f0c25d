"""The model package holds only the model: its top-level files are what ships inside a checkpoint.

Everything that drives the model (training, evaluation, demo, export, conversion) lives in sub-packages, and
the top-level model files import nothing from ``dataset_scripts`` or ``space_app`` (``../shared/docs/STYLE.md``,
"The layout of this project"). The walk reads the files' own import statements, so a new import that breaks
the rule fails here, not in a user's ``trust_remote_code`` load.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "modeling_geomeld"
#: what ships in a checkpoint, plus the command-line dispatcher (which only lists subcommand modules)
MODEL_FILES = {
    "__init__.py",
    "configuration_geomeld.py",
    "modeling_geomeld.py",
    "image_processing_geomeld.py",
    "processing_geomeld.py",
    "modalities.py",
    "masking.py",
    "text.py",
    "pipeline_geomeld.py",  # the pipelines ship in checkpoint folders (custom_pipelines)
}
APPLICATION = ("dataset_scripts", "space_app")


def _imports(path: Path) -> list[tuple[str, int]]:
    """(module, level) of every import statement in ``path``, nested ones included."""
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, node.level))
        elif isinstance(node, ast.ImportFrom):  # `from . import name`: each name is a module of the package
            out += [(alias.name, node.level) for alias in node.names]
    return out


def test_the_top_level_holds_only_the_model_and_the_dispatcher() -> None:
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top == MODEL_FILES | {"cli.py"}, f"application code at the top of modeling_geomeld: {top - MODEL_FILES}"


def test_model_files_import_no_application_code() -> None:
    for name in sorted(MODEL_FILES):
        for module, level in _imports(PACKAGE / name):
            assert not module.startswith(APPLICATION), f"{name} imports {module}"
            if level:  # relative imports stay among the model files, so the checkpoint copy is complete
                target = module.split(".")[0]
                assert level == 1 and f"{target}.py" in MODEL_FILES, f"{name} imports .{module}"


def test_application_defaults_never_point_outside_the_package() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "shared/data" not in text.replace("../shared/data", ""), f"{path} defaults into the dev workspace"
        assert 'parents[2] / "shared"' not in text, path
