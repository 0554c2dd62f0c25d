"""`geomeld predict`: a GeoMeld-FM checkpoint over a whole scene, written as a Cloud-Optimised GeoTIFF.

Reads the scene window by window (one file per modality; other files are read onto the first file's grid),
blends overlapping tiles, and writes a class map (segment), class probabilities (classify) or embeddings
(embed) with the input's CRS and transform. Peak memory does not grow with the scene; a killed run resumes
where it stopped when started again with the same arguments; a window that cannot be predicted becomes
no-data and is listed in OUT.report.json.

Examples:
  geomeld predict --checkpoint seg/ --input sentinel2_l2a=s2.tif --out landcover.tif
  geomeld predict --checkpoint release/ --input sentinel2_l2a=s2.tif --input sentinel1=s1.tif \\
      --out embeddings.tif --task embed --embed-level patch --dtype float16
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "predict",
        help="run a checkpoint over a whole scene (tiled, blended, resumable) into a COG",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="a GeoMeld checkpoint folder (save_pretrained output)")
    p.add_argument(
        "--input", action="append", required=True, metavar="[KEY=]PATH",
        help="a raster per modality, KEY a registry name (sentinel2_l2a, sentinel2_l1c, sentinel1, dem); a bare "
        "PATH is the model's only input modality. Repeat for more modalities",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="output GeoTIFF (COG); OUT.report.json is written beside it")
    p.add_argument("--task", choices=["embed", "classify", "segment"], default=None, help="default: the checkpoint's head")
    p.add_argument(
        "--bands", action="append", default=[], metavar="[KEY=]B1,B2,...",
        help="the file's band names in file order, when its band descriptions lack them",
    )  # fmt: skip
    p.add_argument("--tile", type=int, default=256, help="tile side in pixels, a multiple of the patch size (256)")
    p.add_argument("--overlap", type=int, default=64, help="pixels shared by neighbouring tiles (64)")
    p.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass (8)")
    p.add_argument("--blend", choices=["cosine", "linear", "none"], default="cosine", help="feathering window (cosine)")
    p.add_argument("--embed-level", choices=["patch", "pixel"], default="patch", help="embed: per patch or per pixel")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="probabilities / embeddings")
    p.add_argument("--edge", choices=["reflect", "nodata"], default="reflect", help="padding of tiles past the edge")
    p.add_argument("--max-scene-values", type=int, default=None, help="budget on bands x rows x columns (2^33)")
    p.add_argument("--max-blocks", type=int, default=None, help="stop after N row blocks (resume later)")
    p.add_argument("--device", default="cpu", help="torch device (cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_predict)


def _bands(values: list[str], keys: list[str]) -> dict[str, list[str]]:
    from dataset_scripts.errors import UsageError

    out: dict[str, list[str]] = {}
    for item in values:
        key, sep, names = item.rpartition("=")
        if not sep:
            if len(keys) != 1:
                raise UsageError(f"--bands {item}: name the input it belongs to, e.g. --bands {keys[0]}=B01,B02,...")
            key = keys[0]
        out[key] = [b.strip() for b in names.split(",") if b.strip()]
    return out


def run_predict(args: argparse.Namespace) -> int:
    from .predict import DEFAULT_MAX_SCENE_VALUES, PredictOptions, model_inputs, predict_scene, resolve_inputs

    inputs = resolve_inputs(args.input, model_inputs(args.checkpoint))
    options = PredictOptions(
        task=args.task, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, blend=args.blend,
        embed_level=args.embed_level, dtype=args.dtype, edge=args.edge,
        max_scene_values=args.max_scene_values or DEFAULT_MAX_SCENE_VALUES, max_blocks=args.max_blocks,
        progress=not args.no_progress, device=args.device,
    )  # fmt: skip
    report = predict_scene(args.checkpoint, inputs, args.out, options, _bands(args.bands, list(inputs)))
    state = "wrote" if report.complete else f"stopped after {report.blocks_done}/{report.blocks_total} blocks (rerun to resume):"
    print(
        f"{state} {report.out} ({report.task}); {report.windows_ok}/{report.windows_total} windows predicted, "
        f"{len(report.bad_windows)} bad {report.bad_by_reason or ''}; {report.pixels_per_second:,.0f} px/s"
    )
    return 0
