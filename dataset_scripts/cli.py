"""``geomeld build``, ``geomeld stats`` and ``geomeld card``: the dataset builder's command line.

Register with ``register(subparsers)`` (listed in ``modeling_geomeld.cli.SUBCOMMAND_MODULES``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .errors import UsageError


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, found {text!r}")
    return key.replace("-", "_"), value


def _add_build(subparsers: Any) -> None:
    from .settings import options_help

    p = subparsers.add_parser(
        "build",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=options_help(),
        help="build the aligned multimodal dataset (Parquet shards) from local files, STAC or the release",
        description="Align every anchor's layers onto one UTM grid (128 x 128 at 10 m by default), compute its "
        "signals, and write Parquet shards under OUT/data/ plus a dataset card OUT/README.md and a build report "
        "OUT/build_report.json. Bad inputs are quarantined with a reason and the build goes on. Exits non-zero "
        "when nothing was built or a shard failed (rerun with --resume).",
    )
    p.add_argument(
        "--source",
        required=True,
        help="KIND:LOCATION. manifest:PATH (CSV or JSON Lines, one row per raster file: anchor_id, modality, "
        "path, bands, datetime, lat, lon, class_map), stac:URL_OR_CATALOG (needs --option anchors=PATH), or "
        "geomeld-release:PATH (the authors' WebDataset .tar shards)",
    )
    p.add_argument("--out", required=True, type=Path, help="output dataset folder (created if missing)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_workers,
        default="auto",
        help="local Dask workers, one process each; 0 runs in this process without Dask; auto (the default) "
        "builds in-process when few anchors are left to build (or on 1-2 CPUs), else one worker per CPU. The "
        "build report says which ran and why",
    )
    where.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    p.add_argument(
        "--threads", action="store_true", help="local workers as threads in this process, not processes"
    )
    p.add_argument(
        "--resume", action="store_true", help="skip shards an earlier run finished (their markers exist)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="empty a non-empty --out first (without it, and without --resume, a non-empty --out is refused)",
    )
    p.add_argument(
        "--strict", action="store_true", help="stop at the first bad input instead of quarantining it"
    )
    p.add_argument(
        "--shard-size", type=int, default=64, help="anchors per shard, the unit of work (default 64)"
    )
    p.add_argument("--size-px", type=int, default=128, help="grid side in pixels (default 128)")
    p.add_argument("--gsd", type=float, default=10.0, help="grid resolution in metres (default 10)")
    p.add_argument(
        "--max-cloud-cover",
        type=float,
        default=10.0,
        help="Sentinel-2 cloud cover limit, percent (default 10)",
    )
    p.add_argument(
        "--max-offset-days",
        type=float,
        default=15.0,
        help="S1 / Dynamic World window around the S2 date (default 15)",
    )
    p.add_argument(
        "--block-deg",
        type=float,
        default=0.5,
        help="spatial block size deciding splits, degrees (default 0.5)",
    )
    p.add_argument(
        "--option",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="an option for the source, repeatable (e.g. --option anchors=anchors.csv for stac:); each source's "
        "options are listed below; an unknown key is refused",
    )
    p.add_argument(
        "--caption",
        action="store_true",
        help="caption each sample with the grounded template captioner while building",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_build)


def _workers(text: str) -> int | str:
    """``--workers``: ``auto`` or a count (argparse turns the error into a usage line, exit 2)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number of workers, found {text!r}") from None


def _build_options(args: argparse.Namespace) -> Any:
    """The build flags as :class:`BuildOptions`; out-of-range values are the user's mistake (one line)."""
    from .align import AlignConfig
    from .build import BuildOptions
    from .errors import UsageError

    try:
        return BuildOptions(
            shard_size=args.shard_size,
            workers=args.workers,
            scheduler=args.scheduler,
            processes=not args.threads,
            resume=args.resume,
            overwrite=args.overwrite,
            strict=args.strict,
            block_deg=args.block_deg,
            progress=not args.no_progress,
            caption=args.caption,
            align=AlignConfig(
                size_px=args.size_px,
                gsd=args.gsd,
                max_cloud_cover=args.max_cloud_cover,
                max_offset_days=args.max_offset_days,
            ),
        )
    except ValueError as err:
        raise UsageError(str(err)) from None


def _run_build(args: argparse.Namespace) -> int:
    from .build import BuildError, build
    from .settings import parse_option_pairs, split_source
    from .types import QuarantineError

    kind, _ = split_source(args.source)
    source_options = parse_option_pairs(kind, args.option)  # typed, known keys only (else UsageError)
    options = _build_options(args)
    try:
        report = build(args.source, args.out, options, **source_options)
    except QuarantineError as err:
        print(f"geomeld build --strict: bad input ({err.reason}): {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # a bad --source, a missing manifest: the user's to fix
        raise UsageError(str(err)) from None
    except BuildError as err:
        print(f"geomeld build: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def _add_stats(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "stats",
        help="compute per-band normalisation statistics of a built dataset",
        description="Per-band mean and std of continuous layers (Sentinel-2 L1C and L2A apart) and class "
        "frequencies of class maps, over the train split; writes DIR/stats.json and refreshes DIR/README.md.",
    )
    p.add_argument("dataset", type=Path, help="dataset folder written by `geomeld build`")
    p.add_argument("--max-samples", type=int, default=10000, help="samples to read at most (default 10000)")
    p.add_argument("--split", default="train", help="split to read (default train; 'all' reads every split)")
    p.set_defaults(func=_run_stats)


def _run_stats(args: argparse.Namespace) -> int:
    from .stats import write_stats

    try:
        stats = write_stats(args.dataset, args.max_samples, None if args.split == "all" else args.split)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(
        f"statistics of {stats['samples']} samples for {', '.join(stats['bands'])} -> {args.dataset / 'stats.json'}"
    )
    return 0


def _add_card(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "card",
        help="(re)write the dataset card README.md of a built dataset",
        description="Write DIR/README.md: YAML configs (default, naip, non_naip) with the splits present so "
        "load_dataset(DIR) works map-style and streaming, licences and attribution, and the statistics of "
        "`geomeld stats`.",
    )
    p.add_argument("dataset", type=Path, help="dataset folder written by `geomeld build`")
    p.set_defaults(func=_run_card)


def _run_card(args: argparse.Namespace) -> int:
    from .card import write_card

    try:
        path = write_card(args.dataset)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(f"wrote {path}")
    return 0


def _add_verify(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check a built dataset against the sha256 sums of its build manifest",
        description="Re-hash every data file of DIR against DIR/build_manifest.json (written when `geomeld build` "
        "finishes) and report missing, corrupted and extra files. Exits 0 when everything matches, 1 otherwise.",
    )
    p.add_argument("dataset", type=Path, help="dataset folder written by `geomeld build`")
    p.set_defaults(func=_run_verify)


def _run_verify(args: argparse.Namespace) -> int:
    from .integrity import verify

    report = verify(args.dataset)  # a folder that is no completed build raises UsageError (one line, exit 2)
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def register(subparsers: Any) -> None:
    """Add the ``build``, ``stats``, ``card`` and ``verify`` subcommands."""
    _add_build(subparsers)
    _add_stats(subparsers)
    _add_card(subparsers)
    _add_verify(subparsers)
