"""What `geomeld finetune` reads before it trains: the checkpoint's processor (with its statistics), the task,
and the statistics it normalises with, chosen explicitly and recorded in the results.

Statistics choices (``--stats``):

* ``checkpoint`` (default): the statistics the checkpoint was pretrained with (its processor's);
* ``task``: the task's own, a GEO-Bench task's ``band_stats.json``;
* ``dataset:DIR``: a built GeoMeld dataset's ``stats.json`` (computed when absent).

Every user mistake here (missing checkpoint or data root, unknown task, an offline hub id) is a
`UsageError`: one line, exit code 2.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataset_scripts.errors import UsageError

from .statistics import Statistics, band_shifts, dataset_statistics, geobench_statistics, warn_on_band_shifts

TASKS_HELP = "terramind-landcover or geobench:<task>"
TERRAMIND_ENV = "GEOMELD_TERRAMIND_DIR"


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def require_checkpoint(checkpoint: str) -> None:
    """A checkpoint argument must be a folder with a `config.json`, or a hub id while the hub is reachable."""
    local = Path(checkpoint).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise UsageError(f"checkpoint folder {local} has no config.json; pass a folder written by `geomeld pretrain`")
        return
    if checkpoint.startswith(("/", ".", "~")) or checkpoint.count("/") != 1:
        raise UsageError(f"checkpoint {checkpoint} does not exist; pass a folder written by `geomeld pretrain` or a hub id")
    if _hub_offline():
        raise UsageError(
            f"checkpoint {checkpoint!r} is not a local folder and the hub is offline (HF_HUB_OFFLINE is set); "
            "download it first or unset HF_HUB_OFFLINE"
        )


def checkpoint_image_processor(checkpoint: str | None, config: Any) -> Any:
    """The image processor a checkpoint was saved with (its statistics included), full-size crops; the
    model config's default processor when there is no checkpoint or it holds no processor."""
    from ..image_processing_geomeld import GeoMeldImageProcessor

    processor = None
    if checkpoint and (Path(checkpoint) / "processor_config.json").is_file():
        from ..processing_geomeld import GeoMeldProcessor

        processor = GeoMeldProcessor.from_pretrained(checkpoint).image_processor
    elif checkpoint and (Path(checkpoint) / "preprocessor_config.json").is_file():
        processor = GeoMeldImageProcessor.from_pretrained(checkpoint)
    if processor is None:
        return GeoMeldImageProcessor.from_model_config(config, crop_size=None)
    processor.crop_size = None
    processor.crop_mode = "center"
    return processor


def terramind_root(data_root: str | None) -> Path:
    value = data_root or os.environ.get(TERRAMIND_ENV)
    if not value:
        raise UsageError(
            f"terramind-landcover needs the samples folder: pass --data-root DIR or set {TERRAMIND_ENV}=DIR "
            "(the folder holding S2L2A/, S1RTC/, DEM/, LULC/)"
        )
    root = Path(value).expanduser()
    if not (root / "S2L2A").is_dir():
        raise UsageError(f"terramind samples not found at {root} (no S2L2A/ folder); pass --data-root or set {TERRAMIND_ENV}")
    return root


def open_geobench(name: str, data_root: str | None) -> Any:
    from dataset_scripts.geobench import GeoBenchTask

    try:
        return GeoBenchTask.open(name, data_root)
    except (FileNotFoundError, ValueError) as err:  # no root, missing task folder, unknown task name
        raise UsageError(str(err)) from None


@dataclass(frozen=True)
class StatisticsChoice:
    """The statistics fine-tuning normalises with, how they were chosen and the processor that applies them."""

    choice: str
    source: str
    processor: Any

    def record(self) -> dict[str, Any]:
        return {"choice": self.choice, "source": self.source, "stats": self.processor.stats}


def choose_statistics(choice: str, task: str, data_root: str | None, checkpoint_processor: Any) -> StatisticsChoice:
    """Apply `--stats` (see the module docstring) to the checkpoint's processor."""
    if choice == "checkpoint":
        source = checkpoint_processor.stats_source or "registry defaults (the checkpoint carries no statistics)"
        return StatisticsChoice("checkpoint", source, checkpoint_processor)
    stats: Statistics
    if choice == "task":
        if not task.startswith("geobench:"):
            raise UsageError(f"--stats task: {task} has no statistics file of its own; use --stats checkpoint or dataset:DIR")
        gb = open_geobench(task.split(":", 1)[1], data_root)
        served = [m for m in gb.bands if m in checkpoint_processor.input_modalities]
        stats = geobench_statistics(gb, served, checkpoint_processor.s2_product)
    elif choice.startswith("dataset:"):
        folder = Path(choice.split(":", 1)[1]).expanduser()
        if not folder.is_dir():
            raise UsageError(f"--stats {choice}: {folder} is not a folder; pass a dataset built by `geomeld build`")
        stats = dataset_statistics(folder)
    else:
        raise UsageError(f"--stats {choice!r}: expected checkpoint, task or dataset:DIR")
    processor = copy.deepcopy(checkpoint_processor)
    processor.stats = stats.stats
    processor.stats_source = stats.source
    return StatisticsChoice(choice.split(":", 1)[0], stats.source, processor)


def check_against_checkpoint(task: Any, chosen: StatisticsChoice, checkpoint_processor: Any) -> list[dict[str, Any]]:
    """Warn (and return, for the results) the training bands whose mean lies far from the checkpoint's."""
    shifts = band_shifts(task.train.pixel_values, task.train.valid_mask, chosen.processor, checkpoint_processor)
    reference = checkpoint_processor.stats_source or "registry defaults"
    warn_on_band_shifts(shifts, f"{task.name} training data", reference)
    return [
        {"modality": s.modality, "band": s.band, "mean": s.data_mean, "checkpoint_mean": s.reference_mean,
         "ratio": s.ratio, "stds": s.stds}
        for s in shifts
    ]  # fmt: skip
