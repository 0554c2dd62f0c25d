"""The tile grid over a scene, the feathering weights that blend overlapping tiles, and the row-band blender.

Tiles of ``tile`` pixels start every ``stride = tile - overlap`` pixels from the scene's top-left corner, so
with ``tile`` and ``overlap`` multiples of the patch size every tile is aligned with the encoder's patch grid
of the whole scene (per-patch outputs of neighbouring tiles land on the same cells). The last tile of a row
or column may run past the scene's edge; the reader pads it and the blender crops it back.

Blending is a weighted mean: each tile's output is multiplied by a separable window that ramps from nearly 0
to 1 over the overlap (linear or raised cosine) and by its validity, accumulated, and divided by the summed
weights. A pixel that only one tile covers (the scene's border) gets that tile's value exactly; a pixel no
valid tile covers gets no weight and becomes no-data.

Only one row band of tiles is ever held: :class:`RowBandBlender` keeps ``tile`` rows of the output's full
width, and after each row of tiles hands back the ``stride`` rows that no later tile touches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Blend = Literal["cosine", "linear", "none"]


@dataclass(frozen=True)
class TileGrid:
    """Tile origins over a ``height x width`` scene (pixels).

    Attributes:
        height, width: scene size in pixels.
        tile: tile side in pixels (a multiple of the model's patch size).
        overlap: pixels shared by neighbouring tiles (a multiple of the patch size, less than ``tile``).
    """

    height: int
    width: int
    tile: int
    overlap: int

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"scene size must be positive, got {self.height} x {self.width}")
        if self.tile < 1 or not 0 <= self.overlap < self.tile:
            raise ValueError(f"expected 0 <= overlap < tile, got tile {self.tile}, overlap {self.overlap}")

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @staticmethod
    def _origins(n: int, tile: int, stride: int) -> list[int]:
        if n <= tile:
            return [0]
        return [k * stride for k in range(math.ceil((n - tile) / stride) + 1)]

    @property
    def rows(self) -> list[int]:
        """Top row of every row of tiles."""
        return self._origins(self.height, self.tile, self.stride)

    @property
    def cols(self) -> list[int]:
        """Left column of every column of tiles."""
        return self._origins(self.width, self.tile, self.stride)

    @property
    def padded_width(self) -> int:
        """Width the tiles span, the scene's width or more (the last tile runs past the edge)."""
        return self.cols[-1] + self.tile

    def band_rows(self, r: int) -> tuple[int, int]:
        """Output rows ``[start, stop)`` that are final once tile row ``r`` is blended."""
        rows = self.rows
        stop = rows[r + 1] if r + 1 < len(rows) else self.height
        return rows[r], min(stop, self.height)

    def scaled(self, factor: int) -> TileGrid:
        """The same grid in units of ``factor`` pixels (the patch grid of per-patch outputs)."""
        if self.tile % factor or self.overlap % factor:
            raise ValueError(f"tile {self.tile} and overlap {self.overlap} must be multiples of {factor}")
        return TileGrid(-(-self.height // factor), -(-self.width // factor), self.tile // factor, self.overlap // factor)


def ramp(tile: int, overlap: int, blend: Blend = "cosine") -> np.ndarray:
    """1-D window (tile,) float32: rises from ~0 to 1 over the first ``overlap`` samples, falls over the last.

    Samples sit at pixel centres, so the weights never reach 0 (a border pixel keeps a positive weight) and two
    neighbouring ramps sum to 1 for ``linear`` and ``cosine`` (sin^2 + cos^2): the blend is a partition of unity
    across the overlap.
    """
    w = np.ones(tile, dtype=np.float64)
    if overlap and blend != "none":
        t = (np.arange(overlap) + 0.5) / overlap  # (0, 1) at pixel centres
        rise = t if blend == "linear" else np.sin(0.5 * np.pi * t) ** 2
        w[:overlap] = np.minimum(w[:overlap], rise)
        w[tile - overlap :] = np.minimum(w[tile - overlap :], rise[::-1])
    elif blend not in ("cosine", "linear", "none"):
        raise ValueError(f"blend must be 'cosine', 'linear' or 'none', got {blend!r}")
    return w.astype(np.float32)


def window_weights(tile: int, overlap: int, blend: Blend = "cosine") -> np.ndarray:
    """2-D separable feathering window (tile, tile) float32."""
    w = ramp(tile, overlap, blend)
    return np.outer(w, w)


class RowBandBlender:
    """Weighted accumulation of tile outputs over one row band of the output (``tile`` rows, full width).

    ``add`` blends a tile in; ``flush(stop)`` returns the rows from the band's top to ``stop`` (global rows) as
    ``(values (C, n, width), weight (n, width))`` and moves the band down so the next row of tiles starts at
    ``stop``. Memory: ``(channels + 1) x tile x padded_width`` float32, whatever the scene's height.
    """

    def __init__(self, channels: int, grid: TileGrid):
        self.grid = grid
        self.top = 0
        self.values = np.zeros((channels, grid.tile, grid.padded_width), dtype=np.float32)
        self.weight = np.zeros((grid.tile, grid.padded_width), dtype=np.float32)

    def add(self, values: np.ndarray, weight: np.ndarray, row: int, col: int) -> None:
        """values (C, t, t) and weight (t, t) of the tile whose top-left corner is at global ``(row, col)``."""
        y = row - self.top
        if y < 0 or y + values.shape[1] > self.values.shape[1]:
            raise ValueError(f"tile at row {row} lies outside the current band starting at row {self.top}")
        t_h, t_w = values.shape[1:]
        self.values[:, y : y + t_h, col : col + t_w] += values * weight[None]
        self.weight[y : y + t_h, col : col + t_w] += weight

    def flush(self, stop: int) -> tuple[np.ndarray, np.ndarray]:
        n = stop - self.top
        if not 0 <= n <= self.values.shape[1]:
            raise ValueError(f"cannot flush rows {self.top}..{stop} from a band of {self.values.shape[1]} rows")
        width = self.grid.width
        out = self.values[:, :n, :width].copy(), self.weight[:n, :width].copy()
        # the rows below stop carry the overlap of this row of tiles into the next one
        self.values[:, : self.values.shape[1] - n] = self.values[:, n:]
        self.values[:, self.values.shape[1] - n :] = 0.0
        self.weight[: self.weight.shape[0] - n] = self.weight[n:]
        self.weight[self.weight.shape[0] - n :] = 0.0
        self.top = stop
        return out

    def reset(self, top: int) -> None:
        """Empty the band and place its top at global row ``top`` (a resumed run starting mid-scene)."""
        self.values[:] = 0.0
        self.weight[:] = 0.0
        self.top = top


def normalise(values: np.ndarray, weight: np.ndarray, fill: float) -> np.ndarray:
    """values / weight where weight > 0, ``fill`` where no valid tile contributed."""
    has = weight > 0
    out = np.divide(values, np.where(has, weight, 1.0)[None], dtype=np.float32)
    out[:, ~has] = fill
    return out
