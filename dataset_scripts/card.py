"""The dataset card ``DIR/README.md``: YAML configs so ``load_dataset(DIR)`` works, licences, statistics.

``datasets`` 5.x runs no loading scripts: the card's YAML ``configs:`` is the whole contract. Configs:
``default`` (every sample), ``naip`` and ``non_naip`` (the original release's subsets), each declaring
only the splits that have files, since a split pattern matching nothing makes ``load_dataset`` fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ProductLicence:
    """The licence of one product a layer comes from, in the Hub's terms, and how to cite the product."""

    license: str  # a Hub licence id ("cc-by-4.0") or "other", then named by license_name / license_link
    license_name: str
    license_link: str
    citation: str


_COPERNICUS = ProductLicence(
    "other",
    "copernicus-sentinel-data-terms",
    "https://sentinels.copernicus.eu/documents/247904/690755/Sentinel_Data_Legal_Notice",
    "Contains modified Copernicus Sentinel data [year of acquisition], processed by ESA.",
)
_CC_BY = "https://creativecommons.org/licenses/by/4.0/"
#: per layer: its product's licence and citation (the card lists only the layers a build holds)
PRODUCT_LICENCES: dict[str, ProductLicence] = {
    "sentinel2": _COPERNICUS,
    "sentinel1": _COPERNICUS,
    "dem": ProductLicence(
        "other", "copernicus-dem-glo-30-licence",
        "https://spacedata.copernicus.eu/documents/20123/121286/CSCDA_ESA_Mission-specific+Annex_31_Oct_22.pdf",
        "Copernicus DEM GLO-30, (c) DLR e.V. 2010-2014 and (c) Airbus Defence and Space GmbH 2014-2018, provided "
        "under COPERNICUS by the European Union and ESA; all rights reserved.",
    ),
    "canopy_height": ProductLicence(
        "cc-by-4.0", "cc-by-4.0", _CC_BY,
        "Lang, N., Jetz, W., Schindler, K., Wegner, J. D. (2023). A high-resolution canopy height model of the "
        "Earth. Nature Ecology & Evolution 7, 1778-1789.",
    ),
    "esa_worldcover": ProductLicence(
        "cc-by-4.0", "cc-by-4.0", _CC_BY,
        "Zanaga, D. et al. (2021, 2022). ESA WorldCover 10 m v100 / v200. doi:10.5281/zenodo.5571936, "
        "doi:10.5281/zenodo.7254221. (c) ESA WorldCover project / Contains modified Copernicus Sentinel data "
        "processed by the ESA WorldCover consortium.",
    ),
    "dynamic_world": ProductLicence(
        "cc-by-4.0", "cc-by-4.0", _CC_BY,
        "Brown, C. F. et al. (2022). Dynamic World, Near real-time global 10 m land use land cover mapping. "
        "Scientific Data 9, 251. Produced by Google and the World Resources Institute.",
    ),
    "jrc_water": ProductLicence(
        "cc-by-4.0", "cc-by-4.0", _CC_BY,
        "Pekel, J.-F., Cottam, A., Gorelick, N., Belward, A. S. (2016). High-resolution mapping of global "
        "surface water and its long-term changes. Nature 540, 418-422. Source: EC JRC/Google.",
    ),
    "naip": ProductLicence(
        "other", "usda-naip-public-domain",
        "https://naip-usdaonline.hub.arcgis.com/",
        "USDA Farm Service Agency, National Agriculture Imagery Program (NAIP), public domain.",
    ),
}  # fmt: skip
PAPER_CITATION = """@article{geomeld2026,
  title   = {GeoMeld: Toward Semantically Grounded Foundation Models for Remote Sensing},
  journal = {arXiv preprint arXiv:2604.10591},
  year    = {2026}
}"""
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"))  # fmt: skip


@dataclass(frozen=True)
class Contents:
    """What a build holds, read from the shards' small columns (no imagery): the card's metadata facts."""

    rows: int
    layers: tuple[str, ...]
    captioned: bool


def _contents(root: Path, configs: list[dict[str, Any]]) -> Contents:
    import pyarrow.parquet as pq

    default = next(c for c in configs if c["config_name"] == "default")
    files = sorted({p for f in default["data_files"] for p in root.glob(f["path"])})
    rows, captioned = 0, False
    present: set[str] = set()
    for path in files:
        table = pq.read_table(path, columns=["modalities", "caption"])
        rows += table.num_rows
        present.update(m for ms in table.column("modalities").to_pylist() for m in ms or [])
        captioned = captioned or any(table.column("caption").to_pylist())
    return Contents(rows, tuple(m for m in LAYERS if m in present), captioned)


def size_category(rows: int) -> str:
    return next((label for limit, label in _SIZES if rows < limit), "n>1T")


def _yaml(configs: list[dict[str, Any]], contents: Contents) -> str:
    licences = {m: PRODUCT_LICENCES[m] for m in contents.layers if m in PRODUCT_LICENCES}
    ids = sorted({lic.license for lic in licences.values()})
    others = sorted({(lic.license_name, lic.license_link) for lic in licences.values() if lic.license == "other"})
    tasks = ["image-feature-extraction", "image-segmentation", "image-classification"]
    if contents.captioned:
        tasks += ["image-to-text", "zero-shot-image-classification"]
    lines = ["---", f"license: {json.dumps(ids if len(ids) > 1 else (ids or ['other'])[0])}"]
    if len(others) == 1:  # the Hub's single license_name / license_link; several are listed per product below
        lines += [f"license_name: {others[0][0]}", f"license_link: {others[0][1]}"]
    elif others:
        lines += ["license_name: geomeld-per-product-licences", "license_link: LICENSE.md"]
    lines.append("product_licenses:")
    for name, lic in licences.items():
        lines += [
            f"- layer: {name}",
            f"  product: {json.dumps(MODALITIES[name].source)}",
            f"  license: {lic.license}",
            f"  license_name: {lic.license_name}",
            f"  license_link: {lic.license_link}",
        ]
    lines += [
        "pretty_name: GeoMeld",
        f"task_categories: {json.dumps(tasks)}",
        f"size_categories: [{json.dumps(size_category(contents.rows))}]",
        *(["language: [en]"] if contents.captioned else []),
        f"source_datasets: {json.dumps([MODALITIES[m].source for m in contents.layers])}",
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


def _citations(contents: Contents) -> str:
    products = dict.fromkeys(PRODUCT_LICENCES[m].citation for m in contents.layers if m in PRODUCT_LICENCES)
    return "\n".join(["```bibtex", PAPER_CITATION, "```", "", *(f"- {c}" for c in products)])


def _licence_table(contents: Contents) -> str:
    rows = ["| layer | source product | licence |", "|---|---|---|"]
    for name in contents.layers:
        lic = PRODUCT_LICENCES.get(name)
        link = f"[{lic.license_name}]({lic.license_link})" if lic else MODALITIES[name].license
        rows.append(f"| {name} | {MODALITIES[name].source} | {link} ({MODALITIES[name].license}) |")
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
    # the source's location is a local path or URL of the machine that built it: not for a published card
    kind = str(report["source"]).split(" ", 1)[0]
    return f"Built by `geomeld build` from a {kind} source: {report['built']} of {report['tried']} anchors (quarantined: {quarantined})."


BODY = """
# GeoMeld (locally built)

Aligned multimodal remote-sensing samples: every layer of a sample lies on one 10 m grid in the sample's
local UTM zone (128 x 128 pixels, 1.28 km by default; NAIP at 1 m over the same footprint). {report}

## Loading

A folder named `geomeld` (this build, written with `geomeld build --out geomeld`) or the Hub id loads with
plain `datasets`; the configs name this build's content fingerprint, so a cached earlier build is never
returned instead.

```python
from datasets import load_dataset
from torch.utils.data import DataLoader
from dataset_scripts.loading import decode_row, decode_table, geomeld_transform, load_geomeld

ds = load_dataset("geomeld", split="train")      # the folder ./geomeld, or a Hub id; configs: default, naip, non_naip
arrays = decode_row(ds[0])                       # {{"sentinel2": (12, 128, 128) float32, ...}}, NaN = no-data
ds = ds.with_transform(geomeld_transform(as_torch=True))   # fixed shapes, absent layers zeros + `<m>_mask`
batch = next(iter(DataLoader(ds, batch_size=8)))           # torch's default_collate: (8, bands, H, W) per layer
stream = load_dataset("geomeld", split="train", streaming=True)
for table in stream.with_format("arrow").iter(batch_size=32):   # fastest: Arrow batches
    for arrays in decode_table(table): ...
ds = load_geomeld("geomeld", split="train")      # also refuses an unfinished build and verifies page checksums
```

Filter without decoding imagery: `ds.filter(lambda lat, when: lat > 50 and when >= "2020", input_columns=["lat", "datetime"])`
or read the columns with pyarrow. `datasets.distributed.split_dataset_by_node` works on both.
`geomeld verify DIR` checks every file against `build_manifest.json` (sha256).

## Columns

- per layer `m` in {layers}: `m` (little-endian bytes), `m_shape` (bands, H, W), `m_dtype`, `m_bands`
  (band names in stored order); null where the layer is absent. Stored natively: Sentinel-2 as int16
  reflectance x 10000 (-32768 = no-data), Sentinel-1 (dB), DEM and canopy height as float16 (NaN =
  no-data; {errors}); other continuous layers float32 with NaN; class maps uint8 product codes with 0 for
  no-data. The decoders return float32 with NaN (`native=True`: the stored arrays);
  `decode_row(row, class_indices=True)` maps codes to contiguous indices, -1 for no-data.
- `tile_id`, `split` (train/validation/test by 0.5-degree spatial blocks), `lat`, `lon`, `datetime`
  (UTC ISO 8601), `year`, `month`, `crs`, `s2_product` (l1c/l2a), `has_naip`, `modalities`, headline
  signals (`country_code`, `ndvi_mean`, `water_percentage`, `elevation_mean`, `terrain_class`,
  `snow_fraction`, `cloud_fraction`), `signals` and `metadata` (JSON), `caption`.

## Licences and attribution

The samples are derived from the products below; their licences and attribution duties apply to the
layers they contribute. When a build read local files from a redistributed corpus, that corpus's licence
applies as well (e.g. TerraMesh, CC-BY-SA-4.0).

{licences}

## Citation

{citations}

## Normalisation statistics

{stats}
"""


def write_card(root: str | Path, fingerprint: str | None = None) -> Path:
    """Write ``DIR/README.md`` from the shards present (configs), the build report and ``stats.json``."""
    root = Path(root)
    configs = _configs(root, build_fingerprint(root) if fingerprint is None else fingerprint)
    if not configs:
        raise ValueError(f"expected Parquet shards under {root / 'data'} to describe, found none")
    from .writer import STORAGE

    contents = _contents(root, configs)
    body = BODY.format(
        report=_report_line(root),
        layers=", ".join(LAYERS),
        errors="; ".join(f"{name} error {stored.error}" for name, stored in STORAGE.items()),
        licences=_licence_table(contents),
        citations=_citations(contents),
        stats=_stats_section(root),
    )
    others = {lic.license_name for m in contents.layers if (lic := PRODUCT_LICENCES.get(m)) and lic.license == "other"}
    if len(others) > 1:  # the Hub takes one license_link: it points at this per-product table
        licence_file = root / "LICENSE.md"
        licence_file.write_text("# Licences of the products in this dataset\n\n" + _licence_table(contents) + "\n", encoding="utf-8")
    path = root / "README.md"
    path.write_text(_yaml(configs, contents) + "\n" + body, encoding="utf-8")
    return path
