"""Shared pieces of the builder tests: the real TerraMind samples as the library describes them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataset_scripts.terramind import LOCATIONS, LULC_TO_DYNAMIC_WORLD, s2_datetime, write_manifest
from dataset_scripts.terramind import manifest_rows as terramind_rows

TERRAMIND_IDS = tuple(LOCATIONS)
#: README coordinates of the five locations (shared/data/README.md)
README_LATLON = {tile: (lat, lon) for tile, (_, lat, lon) in LOCATIONS.items()}



def failing_writes(real_write: Callable[[Any, Path], int], shard: int | None) -> Callable[[Any, Path], int]:
    """A stand-in for the builder's ``write_shard`` that fails (as a full disk would) for ``shard``, or every
    shard when ``None``, and writes the others with ``real_write``: an interrupted build, for resume tests."""

    def write(rows: Any, path: Path) -> int:
        if shard is None or path.stem.endswith(f"-{shard:05d}"):
            raise OSError("disk full (injected)")
        return real_write(rows, path)

    return write


__all__ = ["LULC_TO_DYNAMIC_WORLD", "README_LATLON", "TERRAMIND_IDS", "failing_writes", "s2_datetime", "terramind_rows", "write_manifest"]
