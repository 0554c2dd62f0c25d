"""``geomeld stats DIR``: per-band normalisation statistics of a built dataset, written to ``DIR/stats.json``.

Continuous layers get per-band mean and standard deviation over valid (finite) pixels; Sentinel-2 is
kept apart by product (``sentinel2_l1c`` / ``sentinel2_l2a``: L1C of baseline >= 04.00 carries a +1000
offset, so pooling would blur both). Class maps get class frequencies. Only the ``train`` split is read
when it exists (statistics from validation or test would leak into training), at most ``max_samples``
rows, in shard order so the result is reproducible. The card (``geomeld card``) shows the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modeling_geomeld.modalities import MODALITIES

from .loading import decode_table, iter_shard_batches
from .writer import LAYERS


@dataclass
class _Moments:
    """Running sums per band name (float64: 2.5M x 16k pixels overflow float32 sums)."""

    count: dict[str, int] = field(default_factory=dict)
    total: dict[str, float] = field(default_factory=dict)
    squares: dict[str, float] = field(default_factory=dict)

    def add(self, array: np.ndarray, bands: list[str]) -> None:
        for i, name in enumerate(bands):
            values = array[i][np.isfinite(array[i])].astype(np.float64)
            self.count[name] = self.count.get(name, 0) + int(values.size)
            self.total[name] = self.total.get(name, 0.0) + float(values.sum())
            self.squares[name] = self.squares.get(name, 0.0) + float(np.square(values).sum())

    def result(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, n in self.count.items():
            if n == 0:
                continue
            mean = self.total[name] / n
            var = max(self.squares[name] / n - mean * mean, 0.0)
            out[name] = {"mean": round(mean, 4), "std": round(float(np.sqrt(var)), 4), "pixels": n}
        return out


def _shards(root: Path, split: str | None) -> list[Path]:
    chosen = sorted(root.glob(f"data/*/{split}-*.parquet")) if split else []
    shards = chosen or sorted(root.glob("data/*/*.parquet"))
    if not shards:
        raise ValueError(
            f"expected Parquet shards under {root / 'data'} (run `geomeld build` first), found none"
        )
    return shards


def _key(name: str, product: str | None) -> str:
    return f"sentinel2_{product}" if name == "sentinel2" and product else name


def compute_stats(root: str | Path, max_samples: int = 10000, split: str | None = "train") -> dict[str, Any]:
    """Statistics of the dataset at ``root`` over ``split`` (all shards when ``None`` or when it has none)."""
    root = Path(root)
    moments: dict[str, _Moments] = {}
    classes: dict[str, np.ndarray] = {}
    seen = 0
    columns = ["s2_product"] + [c for n in LAYERS for c in (n, f"{n}_shape", f"{n}_dtype", f"{n}_bands")]
    for path in _shards(root, split):
        for batch in iter_shard_batches(path, columns):  # page checksums verified; errors name file and tiles
            products = batch.column("s2_product").to_pylist()
            names = {n: batch.column(f"{n}_bands").to_pylist() for n in LAYERS}
            for i, arrays in enumerate(decode_table(batch)):  # float32 with NaN, as the model sees them
                if seen >= max_samples:
                    break
                seen += 1
                for name, array in arrays.items():
                    if MODALITIES[name].is_categorical:
                        counts = np.bincount(array.ravel(), minlength=256)
                        classes[name] = classes.get(name, np.zeros(256, dtype=np.int64)) + counts
                    else:
                        moments.setdefault(_key(name, products[i]), _Moments()).add(array, names[name][i])
    out: dict[str, Any] = {
        "samples": seen,
        "bands": {k: m.result() for k, m in sorted(moments.items())},
        "classes": {},
    }
    for name, counts in sorted(classes.items()):
        mod = MODALITIES[name]
        valid = sum(int(counts[c.code]) for c in mod.classes)
        out["classes"][name] = {c.name: round(int(counts[c.code]) / max(valid, 1), 5) for c in mod.classes}
    return out


def write_stats(root: str | Path, max_samples: int = 10000, split: str | None = "train") -> dict[str, Any]:
    """Compute the statistics, write ``DIR/stats.json`` and refresh the card; returns the statistics."""
    from .card import write_card

    stats = compute_stats(root, max_samples, split)
    path = Path(root) / "stats.json"
    path.write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    write_card(root)
    return stats
