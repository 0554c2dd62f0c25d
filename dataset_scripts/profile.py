"""Where a build's time goes: seconds per stage, summed over the anchors of a shard, then over a build.

Stages (:data:`STAGES`): ``read`` (opening the files and reading each footprint's window: what becomes
remote I/O on cloud COGs), ``reproject`` (GDAL warping onto the anchor grid), ``signals``, ``captions``
(the template captioner, with ``--caption``), ``encode`` (a row: raster bytes, thumbnail PNG, footprint),
``write`` (sorting, Arrow conversion, compression, the Parquet file) and ``other`` (the rest of the
alignment protocol: harmonisation, cloud estimate, checks, slope, storage dtypes), so the shares add up to
the shard's wall time.

Beside the seconds, :func:`count` tallies quantities a projection needs: ``files_opened`` and
``window_bytes`` (decoded bytes of every window read; on cloud COGs the bytes to fetch scale with them).

The timings are collected per task in a :class:`contextvars.ContextVar`, so thread workers running two
shards at once never mix them; nothing is recorded outside a :func:`collect` block.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

STAGES = ("read", "reproject", "signals", "captions", "encode", "write", "other")

COUNTS = ("files_opened", "window_bytes")

#: the tally being collected: ``{"seconds": {stage: s}, "counts": {name: n}}``
_CURRENT: ContextVar[dict[str, dict[str, float]] | None] = ContextVar("geomeld_build_profile", default=None)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the block's wall time to ``name`` of the profile being collected (if any)."""
    tally = _CURRENT.get()
    if tally is None:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        add(tally["seconds"], {name: time.perf_counter() - t0})


def count(name: str, value: float) -> None:
    """Add ``value`` to the count ``name`` of the profile being collected (if any)."""
    tally = _CURRENT.get()
    if tally is not None:
        add(tally["counts"], {name: value})


@contextmanager
def collect() -> Iterator[dict[str, dict[str, float]]]:
    """Collect ``{"seconds", "counts"}`` inside the block; ``other`` is the wall time the stages leave.

    Nested stages are not supported: a stage is timed by the innermost code that does the work.
    """
    tally: dict[str, dict[str, float]] = {"seconds": {}, "counts": {}}
    token = _CURRENT.set(tally)
    t0 = time.perf_counter()
    try:
        yield tally
    finally:
        _CURRENT.reset(token)
        wall = time.perf_counter() - t0
        seconds = tally["seconds"]
        seconds["other"] = max(0.0, wall - sum(v for k, v in seconds.items() if k != "other"))


def add(total: dict[str, float], part: Mapping[str, float]) -> None:
    for name, value in part.items():
        total[name] = total.get(name, 0.0) + value


def table(seconds: Mapping[str, float], counts: Mapping[str, float], anchors: int) -> dict[str, Any]:
    """The report's profile: per stage, seconds per anchor and share of the summed stage time; counts per anchor."""
    total = sum(seconds.values())
    return {
        "anchors": anchors,
        "seconds": round(total, 4),
        "per_anchor": {name: round(counts.get(name, 0.0) / anchors, 1) if anchors else 0.0 for name in COUNTS},
        "stages": {
            name: {
                "s_per_anchor": round(seconds.get(name, 0.0) / anchors, 6) if anchors else 0.0,
                "share": round(seconds.get(name, 0.0) / total, 4) if total else 0.0,
            }
            for name in STAGES
        },
    }


def lines(profile: Mapping[str, Any]) -> list[str]:
    """Human lines of :func:`table`'s result (for the build summary and the benchmark)."""
    if not profile.get("anchors"):
        return []
    stages = profile["stages"]
    parts = [f"{n} {s['s_per_anchor'] * 1000:.1f} ms ({s['share']:.0%})" for n, s in stages.items()]
    return [f"cost per anchor over {profile['anchors']} anchors built here: " + ", ".join(parts)]
