"""Shared pieces of the builder tests: the real TerraMind samples as the library describes them."""

from __future__ import annotations

from dataset_scripts.terramind import LOCATIONS, LULC_TO_DYNAMIC_WORLD, s2_datetime, write_manifest
from dataset_scripts.terramind import manifest_rows as terramind_rows

TERRAMIND_IDS = tuple(LOCATIONS)
#: README coordinates of the five locations (shared/data/README.md)
README_LATLON = {tile: (lat, lon) for tile, (_, lat, lon) in LOCATIONS.items()}

__all__ = ["LULC_TO_DYNAMIC_WORLD", "README_LATLON", "TERRAMIND_IDS", "s2_datetime", "terramind_rows", "write_manifest"]
