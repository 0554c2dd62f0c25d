"""Reading a scene window by window and writing the output in resumable row blocks, then as a COG.

Inputs: one raster per modality. The first file's grid (CRS, transform, size) is the scene's grid; another
file on a different grid is read through a :class:`rasterio.vrt.WarpedVRT` onto it, so every read is still
one window (the warp happens per window, never for the whole scene). Bands are taken by name: the file's band
descriptions, or names the caller gives; a file that lacks a band the model needs is refused before any pixel
is read, naming what was expected and what the file holds.

Output: a tiled, compressed GeoTIFF ``OUT.partial.tif`` is written one row block at a time, and a sidecar
``OUT.state.json`` lists the blocks already written (with a fingerprint of the run, so a different run never
resumes from it). A killed run restarts after its last finished block. At the end the partial file is
converted to a Cloud-Optimised GeoTIFF (GDAL's COG driver: tiled, compressed, with overviews), both sidecars
are removed and the report is written next to the output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataset_scripts.errors import UsageError

#: GDAL's block cache for every read and write of a run, in MiB: its default (5 % of RAM) would let a long
#: run's resident memory grow with the scene
GDAL_CACHE_MB = 256


def gdal_env() -> Any:
    import rasterio

    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_NUM_THREADS="1")


@dataclass
class InputLayer:
    """One input raster: registry key, path, the bands it holds by name, and which of them are read.

    Attributes:
        key: the processor's image key (``"sentinel2_l2a"``, ``"sentinel1"``, ...).
        path: the raster file.
        file_bands: the name of every band of the file, in file order.
        indexes: 1-based band indexes that are read (the bands the model needs), in file order.
        names: the names of ``indexes``.
        reprojected: whether the file is read through a warped VRT onto the scene's grid.
    """

    key: str
    path: Path
    file_bands: list[str]
    indexes: list[int]
    names: list[str]
    reprojected: bool = False
    nodata: float | None = None


def band_names_of(path: Path, descriptions: Sequence[str | None], given: Sequence[str] | None, count: int) -> list[str]:
    """The file's band names: ``given`` (``--bands``) when passed, else the file's band descriptions."""
    if given is not None:
        if len(given) != count:
            raise UsageError(f"{path}: --bands names {len(given)} bands {list(given)} but the file holds {count}")
        return list(given)
    if all(descriptions) and len(set(descriptions)) == count:
        return [str(d) for d in descriptions]
    raise UsageError(
        f"{path}: the file's {count} bands carry no (unique) names (descriptions {list(descriptions)}); "
        "pass them in file order with --bands, e.g. --bands sentinel2_l2a=B01,B02,... "
    )


class SceneReader:
    """Windowed reads of every input on the first input's grid.

    Args:
        inputs: image key -> raster path; the first is the reference grid.
        wanted: image key -> the band names the model takes (the processor's input bands).
        band_names: image key -> the file's band names in file order, overriding its descriptions.
    """

    def __init__(
        self,
        inputs: Mapping[str, str | Path],
        wanted: Mapping[str, Sequence[str]],
        band_names: Mapping[str, Sequence[str]] | None = None,
    ):
        import rasterio
        from rasterio.vrt import WarpedVRT

        if not inputs:
            raise UsageError("expected at least one --input raster, got none")
        band_names = dict(band_names or {})
        unknown = [k for k in band_names if k not in inputs]
        if unknown:
            raise UsageError(f"--bands names {unknown} but the inputs are {list(inputs)}")
        self._files: list[Any] = []
        self._sources: dict[str, Any] = {}
        self.layers: dict[str, InputLayer] = {}
        ref = None
        for key, raw in inputs.items():
            path = Path(raw)
            if not path.is_file():
                raise UsageError(f"input {key}: {path} does not exist")
            try:
                ds = rasterio.open(path)
            except rasterio.errors.RasterioIOError as err:
                raise UsageError(f"input {key}: {path} is not a raster GDAL can open ({err})") from None
            self._files.append(ds)
            names = band_names_of(path, ds.descriptions, band_names.get(key), ds.count)
            need = list(wanted[key])
            missing = [b for b in need if b not in names]
            if missing:
                raise UsageError(
                    f"input {key}: {path} lacks bands {missing}; the model takes {need}, the file holds {names} "
                    "(pass the file's own band order with --bands if its descriptions are wrong)"
                )
            indexes = [i + 1 for i, b in enumerate(names) if b in need]
            source, reprojected = ds, False
            if ref is None:
                ref = ds
            elif (ds.crs, ds.transform, ds.width, ds.height) != (ref.crs, ref.transform, ref.width, ref.height):
                source = WarpedVRT(
                    ds, crs=ref.crs, transform=ref.transform, width=ref.width, height=ref.height,
                    resampling=rasterio.enums.Resampling.bilinear,
                    src_nodata=ds.nodata, nodata=ds.nodata,
                )  # fmt: skip
                self._files.append(source)
                reprojected = True
            self._sources[key] = source
            self.layers[key] = InputLayer(
                key, path, names, indexes, [names[i - 1] for i in indexes], reprojected,
                None if ds.nodata is None else float(ds.nodata),
            )  # fmt: skip
        assert ref is not None
        self.crs, self.transform = ref.crs, ref.transform
        self.height, self.width = ref.height, ref.width
        self.dtypes = {key: self._sources[key].dtypes[0] for key in inputs}

    def close(self) -> None:
        for f in reversed(self._files):
            f.close()

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def total_bands(self) -> int:
        return sum(len(layer.indexes) for layer in self.layers.values())

    def read(self, key: str, row: int, col: int, size: int, edge: str = "reflect") -> np.ndarray:
        """Bands of ``key`` over the ``size x size`` window at ``(row, col)`` as float32 (C, size, size).

        The part of the window outside the scene is padded (``reflect``: mirrored scene pixels; ``nodata``:
        NaN, i.e. no-data for the processor) and cropped away after the model ran. The file's no-data value
        becomes NaN. Read errors propagate (the caller records the window as bad).
        """
        from rasterio.windows import Window

        layer = self.layers[key]
        h = min(size, self.height - row)
        w = min(size, self.width - col)
        data = self._sources[key].read(layer.indexes, window=Window(col, row, w, h), out_dtype="float32")
        return pad_window(data, size, edge, layer.nodata)


def pad_window(data: np.ndarray, size: int, edge: str = "reflect", nodata: float | None = None) -> np.ndarray:
    """A window read (C, h, w) as float32 with ``nodata`` as NaN, padded at the bottom/right to (C, size, size)."""
    data = data.astype(np.float32)  # a copy: never writes NaN into the caller's array
    if nodata is not None:
        data[data == nodata] = np.nan
    h, w = data.shape[1:]
    if (h, w) == (size, size):
        return data
    pad = ((0, 0), (0, size - h), (0, size - w))
    if edge == "reflect" and h > 1 and w > 1:
        return np.pad(data, pad, mode="reflect")
    return np.pad(data, pad, mode="constant", constant_values=np.nan)


@dataclass
class OutputSpec:
    """What the output raster holds: bands, dtype, no-data, grid, descriptions, colours, overview resampling."""

    count: int
    dtype: str
    nodata: float
    crs: Any
    transform: Any
    height: int
    width: int
    descriptions: list[str]
    colormap: dict[int, tuple[int, int, int, int]] | None = None
    resampling: str = "average"
    tags: dict[str, str] = field(default_factory=dict)


def _block_size(rows_per_block: int) -> int:
    """The largest internal tile (16..512, a power of two) dividing the row block, so no block is written twice."""
    for b in (512, 256, 128, 64, 32, 16):
        if rows_per_block % b == 0:
            return b
    return 16


class ResumableWriter:
    """Row blocks into ``OUT.partial.tif``; finished blocks listed in ``OUT.state.json``; COG at the end."""

    def __init__(self, out: str | Path, spec: OutputSpec, fingerprint: Mapping[str, Any], rows_per_block: int):
        self.out = Path(out)
        self.spec = spec
        self.partial = self.out.with_name(self.out.name + ".partial.tif")
        self.state_path = self.out.with_name(self.out.name + ".state.json")
        self.fingerprint = json.loads(json.dumps(dict(fingerprint), default=str))
        self.block = _block_size(rows_per_block)
        self.state: dict[str, Any] = {"fingerprint": self.fingerprint, "done": [], "bad": [], "counts": {}}
        self.resumed = False

    def open(self) -> None:
        """Start a fresh partial file, or resume the one whose state file matches this run's fingerprint."""
        import rasterio

        if self.state_path.is_file() and self.partial.is_file():
            state = json.loads(self.state_path.read_text())
            if state.get("fingerprint") != self.fingerprint:
                raise UsageError(
                    f"{self.state_path} belongs to a different run (checkpoint, inputs or options differ); "
                    f"remove it and {self.partial.name} to start again, or rerun with the same options to resume"
                )
            self.state = state
            self.resumed = True
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        s = self.spec
        profile = {
            "driver": "GTiff", "count": s.count, "dtype": s.dtype, "nodata": s.nodata, "crs": s.crs,
            "transform": s.transform, "height": s.height, "width": s.width, "tiled": True,
            "blockxsize": self.block, "blockysize": self.block, "compress": "deflate", "BIGTIFF": "IF_SAFER",
        }  # fmt: skip
        with gdal_env(), rasterio.open(self.partial, "w", **profile) as dst:
            for i, d in enumerate(s.descriptions, start=1):
                dst.set_band_description(i, d)
            if s.colormap:
                dst.write_colormap(1, s.colormap)
            if s.tags:
                dst.update_tags(**s.tags)
        self._save_state()

    @property
    def done(self) -> set[int]:
        return set(self.state["done"])

    def write_block(self, index: int, row: int, data: np.ndarray, bad: Sequence[dict[str, Any]], counts: Mapping[str, int]) -> None:
        """Write rows ``row .. row + n`` of ``data`` (count, n, width); then record block ``index`` as done."""
        import rasterio
        from rasterio.windows import Window

        with gdal_env(), rasterio.open(self.partial, "r+") as dst:
            dst.write(data.astype(self.spec.dtype, copy=False), window=Window(0, row, data.shape[2], data.shape[1]))
        # the block is on disk (the file is closed) before the state says so: a kill in between redoes it
        self.state["done"].append(index)
        self.state["bad"].extend(bad)
        for k, v in counts.items():
            self.state["counts"][k] = self.state["counts"].get(k, 0) + int(v)
        self._save_state()

    def _save_state(self) -> None:
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.state_path)

    def finish(self) -> None:
        """Convert the partial file to a COG at ``out`` (tiled, compressed, overviews) and drop the sidecars."""
        import rasterio
        import rasterio.shutil

        tmp = self.out.with_name(self.out.name + ".cog.tmp.tif")
        with gdal_env():
            rasterio.shutil.copy(
                self.partial, tmp, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=512, BIGTIFF="IF_SAFER",
                OVERVIEW_RESAMPLING=self.spec.resampling.upper(), NUM_THREADS="1",
            )  # fmt: skip
        os.replace(tmp, self.out)
        self.partial.unlink()
        self.state_path.unlink()
