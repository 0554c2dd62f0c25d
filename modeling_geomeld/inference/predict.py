"""Whole-scene inference: a GeoMeld checkpoint over a scene of any size, window by window, in bounded memory.

The scene is cut into overlapping tiles (:mod:`.tiling`), read window by window (:class:`.scene_io.SceneReader`),
normalised by the checkpoint's own processor, run through the model in batches, blended back with
feathering weights one row band of tiles at a time, and written one row block at a time into a resumable
partial GeoTIFF that becomes a COG at the end (:class:`.scene_io.ResumableWriter`). Nothing scales with the
scene's height: the blender holds ``tile`` rows of the output, a batch holds ``batch_size`` tiles.

Tasks and what they write (the input's CRS and transform; per-patch embeddings on the encoder's patch grid,
whose pixels are ``patch_size`` input pixels wide):

* ``segment``: the class map, uint8 class indices with the label names in the metadata and a colour table
  (255 = no data); probabilities are blended before the argmax;
* ``classify``: one band of probability per class (softmax, or sigmoid for multi-label heads), each tile's
  prediction spread over its footprint and blended: a sliding-window classification map;
* ``embed``: the encoder's last feature map, per patch (default) or bilinearly upsampled per pixel.

A window that cannot be predicted never stops the run: a read error, a window with no valid pixel, a model
error (the batch is retried window by window so one bad window costs only itself) or a non-finite output is
left out of the blend (its pixels become no-data unless a neighbouring tile covers them) and listed with its
reason in ``OUT.report.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from affine import Affine

from dataset_scripts.budget import DEFAULT_MAX_READ_VALUES, check_read_budget
from dataset_scripts.errors import UsageError
from dataset_scripts.types import QuarantineError

from ..modalities import MODALITIES, resolve
from .scene_io import OutputSpec, ResumableWriter, SceneReader, gdal_env
from .tiling import Blend, RowBandBlender, TileGrid, normalise, window_weights

Task = Literal["embed", "classify", "segment"]
TASKS: tuple[str, ...] = ("embed", "classify", "segment")
#: default limit on the values (bands x rows x columns) of the declared input, and of the output: 2^33, a
#: 13-band 10980 x 10980 Sentinel-2 tile is 1.6e9; a 262 kB file that declares 150000 x 150000 pixels is refused
DEFAULT_MAX_SCENE_VALUES = 1 << 33
#: class index written where no valid tile covered a pixel of the class map
CLASS_NODATA = 255
#: a qualitative palette (Tableau 10 then its light tints) for classes the registry has no colour for
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#a0cbe8", "#ffbe7d", "#ff9d9a", "#86bcb6", "#8cd17d", "#f1ce63", "#d4a6c8", "#fabfd2", "#d7b5a6", "#79706e",
)  # fmt: skip


@dataclass(frozen=True)
class PredictOptions:
    """How a scene is tiled, blended and written.

    Attributes:
        task: ``embed``, ``classify`` or ``segment``; ``None`` takes the checkpoint's head.
        tile: tile side in pixels, a multiple of the model's patch size.
        overlap: pixels shared by neighbouring tiles, a multiple of the patch size.
        batch_size: tiles per forward pass.
        blend: feathering window over the overlap, ``cosine``, ``linear`` or ``none`` (plain mean).
        embed_level: ``patch`` (one vector per encoder patch) or ``pixel`` (upsampled to the input grid).
        dtype: ``float32`` or ``float16`` for probabilities and embeddings.
        edge: how tiles running past the scene's edge are padded: ``reflect`` or ``nodata``.
        max_scene_values: budget on the declared input and output sizes (bands x rows x columns).
        max_blocks: stop (resumably) after this many row blocks in this call; ``None`` runs to the end.
        progress: show a tqdm progress bar.
        device: torch device of the model.
    """

    task: Task | None = None
    tile: int = 256
    overlap: int = 64
    batch_size: int = 8
    blend: Blend = "cosine"
    embed_level: Literal["patch", "pixel"] = "patch"
    dtype: Literal["float32", "float16"] = "float32"
    edge: Literal["reflect", "nodata"] = "reflect"
    max_scene_values: int = DEFAULT_MAX_SCENE_VALUES
    max_blocks: int | None = None
    progress: bool = True
    device: str = "cpu"


@dataclass
class BadWindow:
    """A window left out of the output, and why (``read_error``, ``all_nodata``, ``model_error``,
    ``nonfinite_output``)."""

    tile_row: int
    tile_col: int
    row_off: int
    col_off: int
    height: int
    width: int
    reason: str
    detail: str = ""


@dataclass
class PredictReport:
    """What a ``predict`` call did; written as ``OUT.report.json``."""

    out: str
    task: str
    complete: bool
    resumed: bool
    blocks_done: int
    blocks_total: int
    windows_total: int
    windows_ok: int
    bad_windows: list[dict[str, Any]] = field(default_factory=list)
    bad_by_reason: dict[str, int] = field(default_factory=dict)
    nodata_pixels: int = 0
    pixels: int = 0
    seconds: float = 0.0
    pixels_per_second: float = 0.0
    reprojected_inputs: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


# ---------------------------------------------------------------------------------------------------------
# The model side: load a checkpoint for a task and turn a processed batch into per-tile outputs


def _architectures(checkpoint: str) -> list[str]:
    from transformers import AutoConfig

    return list(AutoConfig.from_pretrained(checkpoint).architectures or [])


def model_inputs(checkpoint: str) -> dict[str, list[str]]:
    """The input modalities (and their bands) the checkpoint's encoder takes, from its config alone."""
    from ..configuration_geomeld import GeoMeldConfig
    from ..training.finetune_setup import require_checkpoint

    require_checkpoint(checkpoint)
    return dict(GeoMeldConfig.from_pretrained(checkpoint).encoder_cfg.input_modalities or {})


def default_task(architectures: Sequence[str]) -> Task:
    if "GeoMeldForSemanticSegmentation" in architectures:
        return "segment"
    if "GeoMeldForImageClassification" in architectures:
        return "classify"
    return "embed"


def load_model(checkpoint: str, task: Task | None) -> tuple[Any, Task]:
    """The checkpoint's model for ``task`` (its encoder for ``embed``), in eval mode, refusing random heads."""
    from transformers import AutoModelForImageClassification, AutoModelForSemanticSegmentation

    from ..modeling_geomeld import GeoMeldVisionModel
    from ..training.finetune_setup import require_checkpoint

    require_checkpoint(checkpoint)
    archs = _architectures(checkpoint)
    task = task or default_task(archs)
    if task not in TASKS:
        raise UsageError(f"--task must be one of {list(TASKS)}, got {task!r}")
    heads = {"segment": "GeoMeldForSemanticSegmentation", "classify": "GeoMeldForImageClassification"}
    if task in heads and heads[task] not in archs:
        raise UsageError(
            f"--task {task} needs a checkpoint with a {heads[task]} head; {checkpoint} holds {archs or ['no architectures']} "
            "(fine-tune one with `geomeld finetune`, or use --task embed)"
        )
    loader: Any = {
        "segment": AutoModelForSemanticSegmentation, "classify": AutoModelForImageClassification,
        "embed": GeoMeldVisionModel,
    }[task]  # fmt: skip
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    if task == "embed":  # a task checkpoint's head is unexpected by the encoder alone, and that is fine
        hf_logging.set_verbosity_error()
    try:
        model, info = loader.from_pretrained(checkpoint, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = [k for k in info.get("missing_keys", ()) if "encoder." in k or "decode_head" in k or "classifier" in k]
    if missing:
        raise UsageError(f"{checkpoint} lacks weights {missing[:5]} for --task {task}; refusing to predict with random ones")
    return model.eval(), task


@dataclass
class TaskHead:
    """Runs the model on a processed batch: per-tile values (B, C, t, t) and validity (B, t, t) on the output
    grid, ``scale`` input pixels per output pixel."""

    model: Any
    task: Task
    embed_level: str
    channels: int
    scale: int
    descriptions: list[str]
    multi_label: bool = False

    @torch.inference_mode()
    def __call__(self, pixel_values: dict[str, torch.Tensor], valid_mask: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        size = next(iter(pixel_values.values())).shape[-1]
        valid_px = torch.stack(list(valid_mask.values())).any(dim=0)  # (B, T, T): any modality holds data
        if self.task == "segment":
            logits = self.model(pixel_values=pixel_values, valid_mask=valid_mask).logits  # (B, K, T, T)
            return logits.float().softmax(dim=1).numpy(), valid_px.numpy()
        if self.task == "classify":
            logits = self.model(pixel_values=pixel_values, valid_mask=valid_mask).logits.float()  # (B, K)
            probs = logits.sigmoid() if self.multi_label else logits.softmax(dim=1)
            return probs[:, :, None, None].expand(-1, -1, size, size).numpy(), valid_px.numpy()
        out = self.model(pixel_values=pixel_values, valid_mask=valid_mask)
        feats = out.last_hidden_state.float()  # (B, C, h, w), h = T / patch
        if self.embed_level == "patch":
            return feats.numpy(), (out.visible[:, 0] > 0).numpy()
        up = torch.nn.functional.interpolate(feats, size=(size, size), mode="bilinear", align_corners=False)
        return up.numpy(), valid_px.numpy()


def _label_names(config: Any) -> list[str]:
    id2label = dict(getattr(config, "id2label", None) or {})
    return [str(id2label.get(i, id2label.get(str(i), f"class_{i}"))) for i in range(int(config.num_labels))]


def make_head(model: Any, task: Task, embed_level: str) -> TaskHead:
    config = model.config
    patch = int(config.encoder_cfg.patch_size)
    if task in ("segment", "classify"):
        names = _label_names(config)
        multi = task == "classify" and config.problem_type == "multi_label_classification"
        desc = names if task == "segment" else [f"p({n})" for n in names]
        return TaskHead(model, task, embed_level, len(names), 1, desc, multi)
    if embed_level not in ("patch", "pixel"):
        raise UsageError(f"--embed-level must be 'patch' or 'pixel', got {embed_level!r}")
    width = int(config.encoder_cfg.hidden_size)
    return TaskHead(model, task, embed_level, width, patch if embed_level == "patch" else 1, [f"embedding_{i:03d}" for i in range(width)])


def class_colours(names: Sequence[str], colours: Sequence[str | None] | None = None) -> dict[int, tuple[int, int, int, int]]:
    """Index -> RGBA: the model's own colour for the class (`config.label_colors`, from the class list it was
    fine-tuned on), else the registry's legend colour where a class map of the registry has a class of that
    name (Dynamic World, WorldCover), else the qualitative palette."""
    legend: dict[str, str] = {}
    for mod in MODALITIES.values():
        for c in mod.classes:
            legend.setdefault(c.name.strip().lower(), c.color)
    own = list(colours or [])
    out = {}
    for i, name in enumerate(names):
        given = own[i] if i < len(own) else None
        colour = given or legend.get(name.strip().lower(), PALETTE[i % len(PALETTE)])
        out[i] = (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16), 255)
    out[CLASS_NODATA] = (0, 0, 0, 0)
    return out


# ---------------------------------------------------------------------------------------------------------
# The tile loop, shared by the streaming writer and the in-memory baseline of benchmarks/bench_predict.py

ReadWindow = Callable[[str, int, int, int], np.ndarray]


@dataclass
class TileRun:
    """Everything one row of tiles needs: head, processor, grids, feathering, inputs and their band names."""

    head: TaskHead
    processor: Any
    grid: TileGrid  # input pixels
    out_grid: TileGrid  # output pixels (the patch grid for per-patch embeddings)
    weights: np.ndarray  # (t, t) on the output grid
    read: ReadWindow
    band_names: dict[str, list[str]]
    batch_size: int
    device: str = "cpu"

    def window(self, r: int, c: int) -> BadWindow:
        g = self.grid
        y, x = g.rows[r], g.cols[c]
        return BadWindow(r, c, y, x, min(g.tile, g.height - y), min(g.tile, g.width - x), "")

    def _forward(self, images: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        batch = self.processor(images, band_names=self.band_names)
        pv = {k: v.to(self.device) for k, v in batch["pixel_values"].items()}
        vm = {k: v.to(self.device) for k, v in batch["valid_mask"].items()}
        return self.head(pv, vm)

    def run_row(self, r: int, blender: RowBandBlender, bad: list[BadWindow], tick: Callable[[int], None]) -> None:
        """Read, predict and blend every tile of tile row ``r``; bad windows are appended to ``bad``."""
        cols = list(range(len(self.grid.cols)))
        for start in range(0, len(cols), self.batch_size):  # batches never cross rows: a resumed row is the same
            chunk = cols[start : start + self.batch_size]
            tiles: list[int] = []
            stacks: dict[str, list[np.ndarray]] = {k: [] for k in self.band_names}
            for c in chunk:
                try:
                    arrays = {k: self.read(k, self.grid.rows[r], self.grid.cols[c], self.grid.tile) for k in self.band_names}
                except Exception as err:  # a corrupt block, a vanished file: this window only
                    bad.append(_bad(self.window(r, c), "read_error", err))
                    continue
                if all(np.isnan(a).all() for a in arrays.values()):
                    bad.append(_bad(self.window(r, c), "all_nodata", "every pixel of every input is no-data"))
                    continue
                tiles.append(c)
                for k, a in arrays.items():
                    stacks[k].append(a)
            if tiles:
                self._predict(r, tiles, {k: np.stack(v) for k, v in stacks.items()}, blender, bad)
            tick(len(chunk))

    def _predict(self, r: int, tiles: list[int], images: dict[str, np.ndarray], blender: RowBandBlender, bad: list[BadWindow]) -> None:
        try:
            results = [self._forward(images)]
            groups = [tiles]
        except Exception:
            # one window's failure must not take the batch with it: retry one by one
            results, groups = [], []
            for i, c in enumerate(tiles):
                try:
                    results.append(self._forward({k: v[i : i + 1] for k, v in images.items()}))
                    groups.append([c])
                except Exception as err:
                    bad.append(_bad(self.window(r, c), "model_error", err))
        scale = self.head.scale
        for (values, valid), group in zip(results, groups, strict=True):
            for i, c in enumerate(group):
                v, ok = values[i], valid[i]
                if not ok.any():
                    bad.append(_bad(self.window(r, c), "all_nodata", "no valid pixel after the processor's checks"))
                    continue
                if not np.isfinite(v[:, ok]).all():
                    bad.append(_bad(self.window(r, c), "nonfinite_output", "the model returned NaN or inf"))
                    continue
                blender.add(v, self.weights * ok, self.grid.rows[r] // scale, self.grid.cols[c] // scale)


def _bad(w: BadWindow, reason: str, detail: object) -> BadWindow:
    text = detail if isinstance(detail, str) else f"{type(detail).__name__}: {detail}"
    w.reason, w.detail = reason, text[:300]
    return w


def finalise(head: TaskHead, values: np.ndarray, weight: np.ndarray, dtype: str) -> np.ndarray:
    """Blended sums -> the output block: class indices (uint8, 255 no-data) or values (NaN no-data)."""
    if head.task == "segment":
        classes = values.argmax(axis=0).astype(np.uint8)
        classes[weight <= 0] = CLASS_NODATA
        return classes[None]
    return normalise(values, weight, np.nan).astype(dtype, copy=False)


# ---------------------------------------------------------------------------------------------------------
# The command's library entry point


def _writes_float16() -> bool:
    from rasterio.dtypes import check_dtype

    return bool(check_dtype("float16"))


def _scene_budget(what: str, bands: int, height: int, width: int, dtype: str, limit: int, hint: str) -> None:
    try:
        check_read_budget(bands, height, width, dtype, limit, what)
    except QuarantineError as err:
        raise UsageError(f"{err}; {hint}") from None


def load_processor(checkpoint: str, model: Any) -> Any:
    """The checkpoint's processor with crops off (``crop_size=None``: tiles are multiples of the patch)."""
    from ..training.finetune_setup import checkpoint_image_processor

    return checkpoint_image_processor(checkpoint, model.config)


def resolve_inputs(inputs: Sequence[str], model_inputs: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """``--input`` values (``PATH`` or ``KEY=PATH``) -> image key -> path; a bare path is the model's only input."""
    out: dict[str, str] = {}
    for item in inputs:
        key, sep, path = item.partition("=")
        if not sep:
            if len(model_inputs) != 1:
                raise UsageError(
                    f"--input {item}: this model takes {list(model_inputs)}; name each file's modality, "
                    "e.g. --input sentinel2_l2a=s2.tif --input sentinel1=s1.tif"
                )
            key, path = next(iter(model_inputs)), item
        try:
            mod, _ = resolve(key)
        except KeyError as err:
            raise UsageError(f"--input {item}: {err.args[0]}") from None
        if mod.name not in model_inputs:
            raise UsageError(f"--input {item}: the model takes {list(model_inputs)}, not {mod.name}")
        if any(resolve(k)[0].name == mod.name for k in out):
            raise UsageError(f"--input {item}: a second file of {mod.name}; expected one file per modality")
        out[key] = path
    return out


def predict_scene(
    checkpoint: str,
    inputs: Mapping[str, str | Path],
    out: str | Path,
    options: PredictOptions | None = None,
    band_names: Mapping[str, Sequence[str]] | None = None,
) -> PredictReport:
    """Predict a whole scene from ``inputs`` (image key -> raster) into the COG ``out``; see the module doc.

    Resumes a run killed (or stopped by ``max_blocks``) with the same checkpoint, inputs and options.
    Raises :class:`UsageError` for what the user must fix (paths, band names, budget, tile sizes).
    """
    opts = options or PredictOptions()
    out = Path(out)
    model, task = load_model(checkpoint, opts.task)
    model.to(opts.device)
    processor = load_processor(checkpoint, model)
    patch = int(model.config.encoder_cfg.patch_size)
    if opts.tile % patch or opts.overlap % patch or not 0 <= opts.overlap < opts.tile:
        raise UsageError(
            f"--tile {opts.tile} and --overlap {opts.overlap} must be multiples of the patch size {patch} with overlap < tile"
        )
    if opts.dtype not in ("float32", "float16"):
        raise UsageError(f"--dtype must be float32 or float16, got {opts.dtype!r}")
    if opts.dtype == "float16" and not _writes_float16():
        import rasterio

        raise UsageError(
            f"--dtype float16 needs GDAL >= 3.11 (Float16 GeoTIFFs); this rasterio has GDAL {rasterio.__gdal_version__}: "
            "use --dtype float32"
        )
    if opts.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {opts.batch_size}")
    wanted = {k: list(processor.input_modalities[resolve(k)[0].name]) for k in inputs}
    head = make_head(model, task, opts.embed_level)
    t0 = time.perf_counter()
    with gdal_env(), SceneReader(inputs, wanted, band_names) as reader:
        first = next(iter(reader.layers.values()))
        _scene_budget(
            f"{first.path} (declared {reader.height} x {reader.width} pixels)", reader.total_bands, reader.height,
            reader.width, "float32", opts.max_scene_values, "raise it with --max-scene-values if the scene is genuine",
        )  # fmt: skip
        _scene_budget(
            f"the {task} output of {reader.height} x {reader.width} pixels", head.channels, -(-reader.height // head.scale),
            -(-reader.width // head.scale), opts.dtype, opts.max_scene_values,
            "use --embed-level patch, or raise --max-scene-values",
        )  # fmt: skip
        _scene_budget(f"one {opts.tile} px tile", reader.total_bands, opts.tile, opts.tile, "float32", DEFAULT_MAX_READ_VALUES, "use a smaller --tile")
        grid = TileGrid(reader.height, reader.width, opts.tile, opts.overlap)
        out_grid = grid.scaled(head.scale) if head.scale > 1 else grid
        transform = reader.transform @ Affine.scale(head.scale) if head.scale > 1 else reader.transform
        is_class = task == "segment"
        spec = OutputSpec(
            count=1 if is_class else head.channels, dtype="uint8" if is_class else opts.dtype,
            nodata=CLASS_NODATA if is_class else float("nan"), crs=reader.crs, transform=transform,
            height=out_grid.height, width=out_grid.width, descriptions=["class"] if is_class else head.descriptions,
            colormap=class_colours(head.descriptions, getattr(model.config, "label_colors", None)) if is_class else None,
            resampling="nearest" if is_class else "average",
            tags={"geomeld_task": task, **({"class_names": json.dumps(head.descriptions)} if is_class else {})},
        )  # fmt: skip
        fingerprint = {
            "checkpoint": str(Path(checkpoint).resolve()),
            "inputs": {k: [str(Path(p).resolve()), Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for k, p in inputs.items()},
            "bands": {k: layer.file_bands for k, layer in reader.layers.items()},
            **{k: v for k, v in asdict(opts).items() if k not in ("max_blocks", "progress", "device", "batch_size")},
        }
        writer = ResumableWriter(out, spec, fingerprint, out_grid.stride)
        writer.open()
        run = TileRun(
            head, processor, grid, out_grid, window_weights(out_grid.tile, out_grid.overlap, opts.blend),
            lambda k, y, x, s: reader.read(k, y, x, s, opts.edge), {k: layer.names for k, layer in reader.layers.items()},
            opts.batch_size, opts.device,
        )  # fmt: skip
        report = _stream(run, writer, opts, task)
        report.reprojected_inputs = [k for k, layer in reader.layers.items() if layer.reprojected]
    report.seconds = round(time.perf_counter() - t0, 3)
    report.pixels_per_second = round(report.pixels / report.seconds, 1) if report.seconds else 0.0
    report.options = {k: v for k, v in asdict(opts).items() if k != "progress"}
    out.with_name(out.stem + ".report.json").write_text(report.to_json())
    return report


def _stream(run: TileRun, writer: ResumableWriter, opts: PredictOptions, task: str) -> PredictReport:
    from tqdm.auto import tqdm

    grid, out_grid = run.grid, run.out_grid
    n_rows, n_cols = len(grid.rows), len(grid.cols)
    done = writer.done
    start = next((r for r in range(n_rows) if r not in done), n_rows)
    blender = RowBandBlender(run.head.channels, out_grid)
    bar = tqdm(total=n_rows * n_cols, initial=start * n_cols, unit="tile", desc=f"predict {task}", disable=not opts.progress)
    pixels = 0
    if 0 < start < n_rows and grid.overlap:
        # a resumed run: the previous row of tiles is predicted again (not written) to restore the overlap it
        # blends into this row; the same batches as the first time, so the same values
        blender.reset(out_grid.rows[start - 1])
        run.run_row(start - 1, blender, [], lambda n: None)
        blender.flush(out_grid.rows[start])
    else:
        blender.reset(out_grid.rows[start] if start < n_rows else 0)
    for r in range(start, n_rows):
        if opts.max_blocks is not None and r - start >= opts.max_blocks:
            break
        bad: list[BadWindow] = []
        run.run_row(r, blender, bad, bar.update)
        row0, stop = out_grid.band_rows(r)
        values, weight = blender.flush(stop)
        block = finalise(run.head, values, weight, writer.spec.dtype)
        counts = {"windows_ok": n_cols - len(bad), "nodata_pixels": int((weight <= 0).sum())}
        writer.write_block(r, row0, block, [asdict(b) for b in bad], counts)
        band_start, band_stop = grid.band_rows(r)
        pixels += (band_stop - band_start) * grid.width
    bar.close()
    complete = len(writer.done) == n_rows
    state = writer.state
    if complete:
        writer.finish()
    by_reason: dict[str, int] = {}
    for b in state["bad"]:
        by_reason[b["reason"]] = by_reason.get(b["reason"], 0) + 1
    return PredictReport(
        out=str(writer.out), task=task, complete=complete, resumed=writer.resumed, blocks_done=len(state["done"]),
        blocks_total=n_rows, windows_total=n_rows * n_cols, windows_ok=int(state["counts"].get("windows_ok", 0)),
        bad_windows=list(state["bad"]), bad_by_reason=by_reason, nodata_pixels=int(state["counts"].get("nodata_pixels", 0)),
        pixels=pixels,
    )  # fmt: skip


__all__ = [
    "DEFAULT_MAX_SCENE_VALUES",
    "TASKS",
    "BadWindow",
    "PredictOptions",
    "PredictReport",
    "TaskHead",
    "TileRun",
    "class_colours",
    "finalise",
    "load_model",
    "load_processor",
    "make_head",
    "model_inputs",
    "predict_scene",
    "resolve_inputs",
]
