"""Test set-up: offline by default, and the location of the shared real samples."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# Never touch the network: a hub lookup without these retries for ~23 s or hangs.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GEOMELD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
TERRAMIND = SHARED_DATA / "terramind-samples"
WORLDCOVER = SHARED_DATA / "worldcover"


@pytest.fixture(scope="session")
def terramind_dir() -> Path:
    if not TERRAMIND.is_dir():
        pytest.skip(
            f"real samples not found at {TERRAMIND} (set GEOMELD_SHARED_DATA to the shared data folder)"
        )
    return TERRAMIND


@pytest.fixture(scope="session")
def worldcover_dir() -> Path:
    if not WORLDCOVER.is_dir():
        pytest.skip(
            f"WorldCover crop not found at {WORLDCOVER} (set GEOMELD_SHARED_DATA to the shared data folder)"
        )
    return WORLDCOVER


@pytest.fixture(scope="session")
def space_assets(terramind_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Dataset, tiny checkpoint and retrieval index shared by the Space tests (see tests/_space_helpers.py)."""
    from _space_helpers import build_collection, tiny_checkpoint

    from space_app.retrieval import build_index

    root = tmp_path_factory.mktemp("space")
    dataset = build_collection(terramind_dir, root)
    checkpoint = tiny_checkpoint(root / "checkpoint")
    build_index(checkpoint, dataset, root / "index", batch_size=8, progress=False)
    return {"root": root, "dataset": dataset, "checkpoint": checkpoint, "index": root / "index"}


@pytest.fixture(scope="session")
def space_server(space_assets: dict[str, Path]) -> Any:
    """`geomeld serve` in its own process on a free loopback port for the whole session; yields its URL."""
    from space_app.loadtest import start_server, stop_server

    a = space_assets
    try:
        server, url = start_server(a["checkpoint"], a["index"], a["dataset"], log=a["root"] / "serve.log")
    except RuntimeError as err:
        pytest.fail(str(err))
    yield url
    stop_server(server)
