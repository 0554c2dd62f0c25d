"""`geomeld convert`: published ConvNeXt V2 weights -> a GeoMeld-FM checkpoint folder.

Sources: `hf` (a transformers ConvNextV2Model / ConvNextV2ForImageClassification folder; exact at patch 32),
`fcmae` (the original ConvNeXt-V2 FCMAE pretraining checkpoint, Minkowski layout; or its dense fine-tuned
layout), `mmearth` (an MMEarth-train pretraining checkpoint: encoder, decoders, uncertainty weights).
The folder gets the weights (safetensors), config, image processor and `conversion.json`, which lists every
source key discarded and every target weight that is not in the source (freshly initialised).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert transformers / FCMAE / MMEarth ConvNeXt V2 weights into a GeoMeld-FM checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source_format", choices=["hf", "fcmae", "mmearth"], help="layout of the source checkpoint")
    p.add_argument("source", help="model folder (hf) or checkpoint file (.pth/.pt/.bin/.safetensors)")
    p.add_argument("--out", required=True, help="output folder for the GeoMeld checkpoint")
    p.add_argument("--patch-size", type=int, default=None, help="GeoMeld patch size (default: the exact one)")
    p.add_argument("--image-size", type=int, default=None, help="training crop size written to the config")
    p.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from dataset_scripts.errors import UsageError

    from . import ConversionError, convert, save_converted

    try:
        model, report = convert(
            args.source_format, args.source, patch_size=args.patch_size, image_size=args.image_size
        )
    except ConversionError as err:
        raise UsageError(str(err)) from err
    save_converted(model, report, args.out)
    print(report.summary())
    print(f"wrote {args.out} (weights, config, image processor, conversion.json)")
    return 0
