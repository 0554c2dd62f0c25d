"""The pixel budget: how many values one raster read may allocate, checked from the header before reading.

A 262 kB GeoTIFF can declare 150000 x 150000 pixels at 1 cm; the builder's footprint window over it is then
~16 billion values, and ``read`` would allocate tens of GiB before anything could object. Every raster read
of the builder (and of the Space's uploads, which go through :func:`dataset_scripts.align.align`) first asks
:func:`check_read_budget` with the window it is about to read, sized from the file's header alone.
"""

from __future__ import annotations

import numpy as np

from .types import QuarantineError

#: default limit on the values (bands x rows x columns) of one read: 2^27 = 134M values, 512 MiB as float32,
#: 1000x a 12-band 128 x 128 footprint and 25x a 3-band 1280 x 1280 NAIP window with its margin
DEFAULT_MAX_READ_VALUES = 1 << 27


def check_read_budget(bands: int, height: int, width: int, dtype: str, max_values: int, where: str) -> None:
    """Raise :class:`QuarantineError` (``pixel_budget``) when a ``bands x height x width`` read exceeds ``max_values``."""
    values = int(bands) * int(height) * int(width)
    if values <= max_values:
        return
    size = values * np.dtype(dtype).itemsize
    raise QuarantineError(
        "pixel_budget",
        f"{where}: expected a read of at most {max_values:,} values (AlignConfig.max_read_values), found a "
        f"window of {bands} x {height} x {width} = {values:,} values ({size / 2**30:.1f} GiB of {dtype}) from the "
        "file's header; refused before reading (resample the file, or raise the budget if it is genuine)",
    )
