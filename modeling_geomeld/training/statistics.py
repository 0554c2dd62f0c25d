"""Normalisation statistics that travel with the data.

`geomeld stats DIR` writes per-band statistics of a built dataset (Sentinel-2 L1C and L2A apart) into
``DIR/stats.json``, which the dataset card shows. Pretraining reads them here (computing them first, with a
progress bar, when the dataset has none) and hands them to the processor, so that every checkpoint and
release folder normalises with its own data's statistics and says where they came from. Fine-tuning picks,
by an explicit choice, the checkpoint's statistics or the task's own (GEO-Bench ``band_stats.json``), and
:func:`mean_shift_warnings` says when the task's data lies far from what the checkpoint was trained on.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataset_scripts.errors import UsageError

#: processor form of statistics: ``{"sentinel2_l2a": {"B01": [mean, std], ...}, "dem": {...}}``
StatsTable = dict[str, dict[str, list[float]]]

#: a fine-tuning band is "far" from the checkpoint's statistics when its mean differs from the checkpoint's
#: by more than this many checkpoint standard deviations ...
MAX_SHIFT_STDS = 1.0
#: ... or by more than this factor either way. On the real TerraMesh samples L1C against L2A differs by
#: 1.62x in B01 and 0.55x in B09 (the +1000 offset and no atmospheric correction) and 0.3-0.8 stds only;
#: reflectance 0..1 against x 10000 differs by about 1e-4x.
MAX_SHIFT_RATIO = 1.5


@dataclass(frozen=True)
class Statistics:
    """Statistics in the processor's form and where they came from (recorded in processor and model card)."""

    stats: StatsTable
    source: str
    samples: int | None = None
    skipped: list[str] = field(default_factory=list)

    def processor_kwargs(self) -> dict[str, Any]:
        return {"stats": self.stats, "stats_source": self.source}


def from_stats_json(table: Mapping[str, Any]) -> tuple[StatsTable, list[str]]:
    """``stats.json`` (``{"bands": {key: {band: {"mean", "std", "pixels"}}}}``) -> processor form.

    A band with no spread (std 0: a constant band in a small dataset) cannot z-score; it keeps the
    registry's statistics and is returned among the skipped ``key/band`` names.
    """
    if not isinstance(table, Mapping) or not isinstance(table.get("bands"), Mapping):
        found = sorted(table) if isinstance(table, Mapping) else type(table).__name__
        raise ValueError(f"expected stats.json with a 'bands' table {{key: {{band: {{mean, std}}}}}}, found {found}")
    out: StatsTable = {}
    skipped: list[str] = []
    for key, bands in table["bands"].items():
        for band, values in bands.items():
            mean, std = float(values["mean"]), float(values["std"])
            if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
                skipped.append(f"{key}/{band}")
                continue
            out.setdefault(key, {})[band] = [mean, std]
    return out, skipped


def dataset_statistics(
    dataset: str | Path, *, compute: bool = True, progress: bool = True, max_samples: int = 10000
) -> Statistics:
    """The statistics of a built dataset: its ``stats.json`` (the table its card shows), computed and written
    with `dataset_scripts.stats.write_stats` (which refreshes the card) when absent and ``compute`` is set.

    A hub id reads the hub's ``stats.json`` when the hub is reachable; otherwise the registry defaults
    stay, and the source says so.
    """
    from dataset_scripts.stats import compute_stats, write_stats

    root = Path(dataset).expanduser()
    if not root.is_dir():
        return _hub_statistics(str(dataset))
    path = root / "stats.json"
    if path.is_file():
        table = json.loads(path.read_text(encoding="utf-8"))
        how = "read from"
    elif compute:
        kwargs: dict[str, Any] = {"max_samples": max_samples, "split": "train", "progress": progress}
        try:
            if int(os.environ.get("RANK", "0")) != 0:
                # other ranks of a distributed launch compute the same numbers; only rank 0 writes the
                # files (no process group exists yet to wait on)
                table, how = compute_stats(root, **kwargs), "computed for"
            else:
                table, how = write_stats(root, **kwargs), "computed into"
        except PermissionError:  # a read-only dataset: use the numbers, say they were not stored
            table = compute_stats(root, **kwargs)
            how = "computed (read-only folder, not written) for"
    else:
        return Statistics({}, f"registry defaults ({path} absent)")
    stats, skipped = from_stats_json(table)
    if skipped:
        warnings.warn(
            f"{path}: bands {skipped} have no spread (std 0); they keep the registry's statistics", stacklevel=2
        )
    samples = int(table.get("samples", 0))
    return Statistics(stats, f"{how} {path.resolve()} ({samples} train samples)", samples, skipped)


def _hub_statistics(repo_id: str) -> Statistics:
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(repo_id, "stats.json", repo_type="dataset")
    except Exception as err:  # offline, missing file, private repo: all leave the defaults, said in the source
        return Statistics({}, f"registry defaults (stats.json of hub dataset {repo_id} unavailable: {type(err).__name__})")
    table = json.loads(Path(path).read_text(encoding="utf-8"))
    stats, skipped = from_stats_json(table)
    return Statistics(stats, f"read from stats.json of hub dataset {repo_id}", int(table.get("samples", 0)), skipped)


def geobench_statistics(task: Any, modalities: Sequence[str], s2_product: str = "l2a") -> Statistics:
    """A GEO-Bench task's ``band_stats.json`` in the processor's form, for the `modalities` it serves, by
    band name (GEO-Bench names mapped to ours). Sentinel-2 is keyed both plainly and by `s2_product`, so it
    replaces whatever product statistics a checkpoint carries."""
    from dataset_scripts.geobench import BAND_PARSERS

    table = task.band_stats()
    out: StatsTable = {}
    for modality in modalities:
        parse = BAND_PARSERS[modality]
        wanted = set(task.bands[modality])
        for name, mean in table.mean.items():
            ours = parse(name)
            std = float(table.std[name])
            if ours is not None and ours in wanted and std > 0:
                out.setdefault(modality, {})[ours] = [float(mean), std]
        missing = sorted(wanted - set(out.get(modality, {})))
        if missing:
            raise ValueError(
                f"{task.directory / 'band_stats.json'} has no usable statistics for {modality} bands {missing}; "
                f"it has {sorted(table.mean)}"
            )
    if "sentinel2" in out:
        out[f"sentinel2_{s2_product}"] = out["sentinel2"]
    return Statistics(out, f"read from {task.directory / 'band_stats.json'} (the GEO-Bench task's own)")


@dataclass(frozen=True)
class BandShift:
    """One band whose fine-tuning mean lies far from the checkpoint's statistics."""

    modality: str
    band: str
    data_mean: float
    reference_mean: float
    reference_std: float

    @property
    def stds(self) -> float:
        return abs(self.data_mean - self.reference_mean) / self.reference_std

    @property
    def ratio(self) -> float:
        return self.data_mean / self.reference_mean if self.reference_mean else float("inf")

    def describe(self) -> str:
        return (
            f"{self.modality}/{self.band} mean {self.data_mean:.4g} vs {self.reference_mean:.4g} "
            f"({self.ratio:.3g}x, {self.stds:.2f} std)"
        )


def band_shifts(
    pixel_values: Mapping[str, Any], valid_mask: Mapping[str, Any], used: Any, reference: Any
) -> list[BandShift]:
    """Bands of processed data (`pixel_values` normalised by the image processor `used`) whose raw mean lies
    more than `MAX_SHIFT_STDS` standard deviations or `MAX_SHIFT_RATIO` times away from the mean of the
    image processor `reference` (the checkpoint's)."""
    out = []
    for modality, values in pixel_values.items():
        x = np.asarray(values, dtype=np.float64)  # (N, C, H, W)
        keep = np.asarray(valid_mask[modality], dtype=bool) if modality in valid_mask else np.ones(x[:, 0].shape, bool)
        if not keep.any():
            continue
        bands, mean_used, std_used = used.mean_std(modality)
        _, mean_ref, std_ref = reference.mean_std(modality)
        normed_mean = x.transpose(1, 0, 2, 3)[:, keep].mean(axis=1)
        raw_mean = normed_mean * std_used + mean_used
        for i, band in enumerate(bands):
            shift = BandShift(modality, band, float(raw_mean[i]), float(mean_ref[i]), float(std_ref[i]))
            if shift.stds > MAX_SHIFT_STDS or not (1 / MAX_SHIFT_RATIO <= shift.ratio <= MAX_SHIFT_RATIO):
                out.append(shift)
    return out


def warn_on_band_shifts(shifts: Sequence[BandShift], what: str, reference_source: str) -> None:
    if not shifts:
        return
    warnings.warn(
        f"{what}: {len(shifts)} bands lie far from the checkpoint's statistics ({reference_source}): "
        + "; ".join(s.describe() for s in shifts)
        + ". A different product (L1C into an L2A model) or scale (reflectance 0..1 into a x 10000 model)? "
        "Check the data, or normalise with the task's statistics (--stats task)",
        UserWarning,
        stacklevel=2,
    )


def statistics_markdown(image_processor: Any) -> str:
    """A model-card section listing the processor's statistics per product variant, with their source."""
    source = getattr(image_processor, "stats_source", None) or "registry defaults"
    lines = ["## Normalisation statistics", "", f"Source: {source}. Values in each band's stored unit.", ""]
    if not image_processor.stats:
        lines.append("The processor uses the registry's default statistics (`modeling_geomeld.modalities`).")
    for key, bands in sorted(image_processor.stats.items()):
        lines += [f"**{key}**", "", "| band | mean | std |", "|---|---|---|"]
        lines += [f"| {b} | {m:.6g} | {s:.6g} |" for b, (m, s) in bands.items()]
        lines.append("")
    return "\n".join(lines) + "\n"


def require_dataset(dataset: str) -> None:
    """Refuse, as a usage error, a dataset argument that is neither a folder nor a hub id we may look up."""
    local = Path(dataset).expanduser()
    if local.is_dir():
        if not any(local.glob("data/*/*.parquet")):
            raise UsageError(f"{local} holds no Parquet shards under data/; build a dataset there with `geomeld build`")
        return
    looks_like_path = dataset.startswith(("/", ".", "~")) or dataset.count("/") != 1 or local.exists()
    if looks_like_path:
        raise UsageError(f"dataset folder {dataset} does not exist; pass a folder made by `geomeld build` or a hub id")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise UsageError(
            f"{dataset!r} is not a local folder and the hub is offline (HF_HUB_OFFLINE is set); "
            "pass a folder made by `geomeld build`, or unset HF_HUB_OFFLINE to download it"
        )
