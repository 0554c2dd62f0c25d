"""Test set-up: offline by default, and the location of the shared real samples."""

from __future__ import annotations

import os
from pathlib import Path

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
