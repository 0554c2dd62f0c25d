"""`geomeld export`: a GeoMeld-FM checkpoint -> ONNX or torch.export programs a deployment runs without us.

The encoder (pooled embedding and dense stage features) always, the task head of a classification or
segmentation checkpoint too; batch and spatial size stay dynamic (sides: multiples of the patch size). The
folder carries `export_config.json` (band names, per-band statistics, size rule, labels) and the processor.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a GeoMeld-FM checkpoint to ONNX or a torch.export program",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="a GeoMeld checkpoint folder (save_pretrained output)")
    p.add_argument("--format", choices=["onnx", "exported-program"], default="onnx", help="default onnx")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--valid-mask", action="store_true", help="add one bool (B, H, W) valid-mask input per modality"
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from dataset_scripts.errors import UsageError

    from .core import ExportError, export_checkpoint

    try:
        info = export_checkpoint(args.checkpoint, args.out, args.format, args.valid_mask, args.opset)
    except ExportError as err:
        raise UsageError(str(err)) from err
    for name, graph in info["graphs"].items():
        print(f"{name}: {args.out}/{graph['file']}  inputs {graph['inputs']} -> outputs {graph['outputs']}")
    print(f"wrote {args.out}/export_config.json (bands, statistics, size multiple {info['size_multiple']})")
    return 0
