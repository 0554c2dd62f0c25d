"""The dataset card ``DIR/README.md``: YAML configs so ``load_dataset(DIR)`` works, licences, statistics.

``datasets`` 5.x runs no loading scripts: the card's YAML ``configs:`` is the whole contract. Configs:
``default`` (every sample), ``naip`` and ``non_naip`` (the original release's subsets), each declaring
only the splits that have files, since a split pattern matching nothing makes ``load_dataset`` fail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modeling_geomeld.modalities import MODALITIES

from .writer import LAYERS, SPLITS

SUBSETS = {"default": "*", "naip": "naip", "non_naip": "non_naip"}


def build_fingerprint(root: Path) -> str:
    """The fingerprint of the build at ``root``: its manifest's, else the one all shard names end with."""
    from .integrity import MANIFEST_NAME

    manifest = root / MANIFEST_NAME
    if manifest.is_file():
        return str(json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint", ""))
    tails = {p.stem.rsplit("-", 1)[-1] for p in root.glob("data/*/*.parquet") if p.stem.count("-") >= 2}
    return tails.pop() if len(tails) == 1 else ""


def _configs(root: Path, fingerprint: str = "") -> list[dict[str, Any]]:
    """The card's configs; the patterns name the build's fingerprint, so another build's configs differ.

    datasets keys its cache of a local folder by the folder's name and these configs alone (not the files'
    names, sizes or times): with the fingerprint in every pattern, two builds in same-named folders never
    share a cache, and the card's own ``load_dataset(DIR)`` line is always right.
    """
    tail = f"-*-{fingerprint}" if fingerprint else "-*"
    configs = []
    for name, folder in SUBSETS.items():
        files = [
            {"split": split, "path": f"data/{folder}/{split}{tail}.parquet"}
            for split in SPLITS
            if any(root.glob(f"data/{folder}/{split}{tail}.parquet"))
        ]
        if files:
            configs.append(
                {"config_name": name, "data_files": files, **({"default": True} if name == "default" else {})}
            )
    return configs


def _yaml(configs: list[dict[str, Any]]) -> str:
    lines = [
        "---",
        "license: other",
        "pretty_name: GeoMeld (built locally)",
        "tags: [remote-sensing, earth-observation, sentinel-2, sentinel-1, multimodal, geospatial]",
        "configs:",
    ]
    for config in configs:
        lines.append(f"- config_name: {config['config_name']}")
        if config.get("default"):
            lines.append("  default: true")
        lines.append("  data_files:")
        for f in config["data_files"]:
            lines += [f"  - split: {f['split']}", f"    path: {f['path']}"]
    lines.append("---")
    return "\n".join(lines)


def _licence_table() -> str:
    rows = ["| layer | source product | licence |", "|---|---|---|"]
    rows += [f"| {m.name} | {m.source} | {m.license} |" for m in MODALITIES.values()]
    return "\n".join(rows)


def _stats_section(root: Path) -> str:
    path = root / "stats.json"
    if not path.is_file():
        return "Not computed yet: run `geomeld stats DIR` (writes `stats.json` and refreshes this card)."
    stats = json.loads(path.read_text(encoding="utf-8"))
    lines = [
        f"Over {stats['samples']} training samples (`stats.json`; values in each band's stored unit).",
        "",
    ]
    for key, bands in stats["bands"].items():
        lines += [f"**{key}**", "", "| band | mean | std |", "|---|---|---|"]
        lines += [f"| {b} | {v['mean']:.4g} | {v['std']:.4g} |" for b, v in bands.items()]
        lines.append("")
    for key, fractions in stats["classes"].items():
        shown = ", ".join(f"{c} {f:.3f}" for c, f in fractions.items() if f > 0)
        lines.append(f"**{key}** class frequencies: {shown or 'none'}")
    return "\n".join(lines)


def _report_line(root: Path) -> str:
    path = root / "build_report.json"
    if not path.is_file():
        return ""
    report = json.loads(path.read_text(encoding="utf-8"))
    quarantined = ", ".join(f"{r} {n}" for r, n in report["quarantined"].items()) or "none"
    return f"Built from {report['source']}: {report['built']} of {report['tried']} anchors (quarantined: {quarantined})."


BODY = """
# GeoMeld (locally built)

Aligned multimodal remote-sensing samples: every layer of a sample lies on one 10 m grid in the sample's
local UTM zone (128 x 128 pixels, 1.28 km by default; NAIP at 1 m over the same footprint). {report}

## Loading

```python
from datasets import load_dataset
from dataset_scripts.loading import decode_batch, decode_row, decode_table

ds = load_dataset("/absolute/path/to/this/folder", split="train")           # map-style
arrays = decode_row(ds[0])                       # {{"sentinel2": (12, 128, 128) float32, ...}}
ds = ds.with_transform(decode_batch)             # decoded on access, batch-wise
stream = load_dataset("/absolute/path/to/this/folder", split="train", streaming=True)
for row in stream: arrays = decode_row(row)
for table in stream.with_format("arrow").iter(batch_size=32):   # fastest: Arrow batches, zero-copy views
    for arrays in decode_table(table): ...
```

Filter without decoding imagery: `ds.filter(lambda lat, when: lat > 50 and when >= "2020", input_columns=["lat", "datetime"])`
or read the columns with pyarrow. `datasets.distributed.split_dataset_by_node` works on both.

## Columns

- per layer `m` in {layers}: `m` (little-endian bytes), `m_shape` (bands, H, W), `m_dtype`, `m_bands`
  (band names in stored order); null where the layer is absent (never zero-filled). Continuous layers are
  float32 with NaN for no-data; class maps are uint8 product codes with 0 for no-data
  (`decode_row(row, class_indices=True)` maps codes to contiguous indices, -1 for no-data).
- `tile_id`, `split` (train/validation/test by 0.5-degree spatial blocks), `lat`, `lon`, `datetime`
  (UTC ISO 8601), `year`, `month`, `crs`, `s2_product` (l1c/l2a), `has_naip`, `modalities`, headline
  signals (`country_code`, `ndvi_mean`, `water_percentage`, `elevation_mean`, `terrain_class`,
  `snow_fraction`, `cloud_fraction`), `signals` and `metadata` (JSON), `caption`.

## Licences and attribution

The samples are derived from the products below; their licences and attribution duties apply to the
layers they contribute. Contains modified Copernicus Sentinel data and Copernicus DEM data; ESA WorldCover
(c) ESA WorldCover project, CC-BY-4.0; Dynamic World (c) Google and World Resources Institute, CC-BY-4.0.
When a build read local files from a redistributed corpus, that corpus's licence applies as well
(e.g. TerraMesh, CC-BY-SA-4.0).

{licences}

## Normalisation statistics

{stats}
"""


def write_card(root: str | Path, fingerprint: str | None = None) -> Path:
    """Write ``DIR/README.md`` from the shards present (configs), the build report and ``stats.json``."""
    root = Path(root)
    configs = _configs(root, build_fingerprint(root) if fingerprint is None else fingerprint)
    if not configs:
        raise ValueError(f"expected Parquet shards under {root / 'data'} to describe, found none")
    body = BODY.format(
        report=_report_line(root),
        layers=", ".join(LAYERS),
        licences=_licence_table(),
        stats=_stats_section(root),
    )
    path = root / "README.md"
    path.write_text(_yaml(configs) + "\n" + body, encoding="utf-8")
    return path
