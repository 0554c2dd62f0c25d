"""Plausible stored values per product, declared as data, and the check every built sample passes.

A file in the wrong unit aligns without complaint: Sentinel-2 reflectance as 0..1 floats, Sentinel-1 in
linear power where the registry says dB, a fill value such as -32768 without a no-data tag. Each would
train the model on nonsense. :func:`check_value_ranges` looks at each continuous layer of an aligned sample
(valid, finite pixels) and quarantines it with a reason that says what was expected and what was found:

* ``implausible_units`` -- the values match a known wrong unit (:attr:`ValueRange.wrong_units`);
* ``out_of_range`` -- more than :attr:`ValueRange.max_outside` of the values lie outside
  ``[low, high]``, reported with the most frequent outside value (an untagged fill shows as one value).

Quarantine rather than convert: a guessed conversion would hide the upstream mistake, and the fix (tag the
no-data value, scale the source) belongs to the source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .types import AlignedSample, QuarantineError


@dataclass(frozen=True)
class ValueRange:
    """The plausible stored values of one product.

    Attributes:
        unit: the stored unit (the registry's).
        low, high: values outside this interval are implausible in that unit.
        max_outside: the share of valid pixels that may lie outside (saturated or odd pixels happen).
        wrong_units: ``(name, p1_low, p99_high, min_low)`` for a known wrong unit: values whose 1st and
            99th percentiles lie within ``[p1_low, p99_high]`` and whose minimum is at least ``min_low``.
    """

    unit: str
    low: float
    high: float
    max_outside: float = 0.01
    wrong_units: tuple[tuple[str, float, float, float], ...] = ()


#: per modality (registry base name): the plausible range of its stored values
VALUE_RANGES: dict[str, ValueRange] = {
    # reflectance x 10000; -1000 leaves room for the baseline >= 04.00 offset where a source still carries it,
    # bright clouds and snow reach ~20000 in L1C
    "sentinel2": ValueRange(
        "reflectance x 10000", -1000.0, 21000.0,
        wrong_units=(("reflectance 0..1 (expected reflectance x 10000)", -0.2, 2.0, -0.2),),
    ),
    # backscatter in dB: -50 (noise floor) .. +30 (corner reflectors)
    "sentinel1": ValueRange(
        "dB", -60.0, 40.0,
        wrong_units=(("linear power (expected dB: 10 log10 of it)", 0.0, 5.0, 0.0),),
    ),
    "dem": ValueRange("m", -500.0, 9000.0),
    "canopy_height": ValueRange("m", 0.0, 120.0),
    "jrc_water": ValueRange("percent", 0.0, 100.0),
}  # fmt: skip


def check_value_ranges(sample: AlignedSample, ranges: dict[str, ValueRange] | None = None) -> None:
    """Raise :class:`QuarantineError` for the first layer of ``sample`` whose values are implausible."""
    for name, declared in (ranges or VALUE_RANGES).items():
        array = sample.arrays.get(name)
        if array is None:
            continue
        values = np.asarray(array, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        where = f"sample {sample.tile_id!r}, layer {name}"
        lo, hi = np.percentile(values, [1, 99])
        for wrong, p1_low, p99_high, min_low in declared.wrong_units:
            if lo >= p1_low and hi <= p99_high and float(values.min()) >= min_low:
                raise QuarantineError(
                    "implausible_units",
                    f"{where}: expected {declared.unit}, found values like {wrong.split(' (')[0]} "
                    f"(1st-99th percentile {lo:.4g}..{hi:.4g}): {wrong}",
                )
        outside = values[(values < declared.low) | (values > declared.high)]
        share = outside.size / values.size
        if share > declared.max_outside:
            common, counts = np.unique(outside, return_counts=True)
            top = float(common[int(np.argmax(counts))])
            raise QuarantineError(
                "out_of_range",
                f"{where}: expected {declared.unit} within [{declared.low:g}, {declared.high:g}] (at most "
                f"{declared.max_outside:.0%} outside), found {share:.1%} outside, most often {top:g} "
                "(an untagged no-data fill? tag the file's no-data value)",
            )
