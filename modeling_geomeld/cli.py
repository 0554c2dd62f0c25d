"""The ``geomeld`` command line: one entry point, one subcommand per job.

Each subcommand lives next to the library code it drives and contributes itself through a
``register(subparsers)`` function; this module only lists them. Imports are deferred so that
``geomeld --help`` stays fast and a subcommand's heavy dependencies load only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from dataset_scripts.errors import UsageError

#: modules that contribute subcommands, each exposing ``register(subparsers) -> None``
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "modeling_geomeld.demo.demo",
    "modeling_geomeld.training.pretrain_cli",
    "modeling_geomeld.training.finetune_cli",
    "modeling_geomeld.conversion.cli",
    "modeling_geomeld.export.cli",
    "modeling_geomeld.evaluation.benchmark_cli",
    "modeling_geomeld.inference.cli",
    "dataset_scripts.cli",
    "dataset_scripts.captions.cli",
    "space_app.cli",
)


def _set_offline_defaults() -> None:
    # The release runs offline unless a user opts in: a hub-id lookup without these can hang for minutes.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geomeld",
        description="GeoMeld: build the aligned multimodal dataset, caption it, pretrain and evaluate GeoMeld-FM, "
        "and serve image-text retrieval. Run `geomeld COMMAND --help` for each command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _set_offline_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        # a user mistake: one line that says what to do, no traceback
        print(f"geomeld {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
