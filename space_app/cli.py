"""``geomeld index``, ``geomeld eval-retrieval`` and ``geomeld serve``: retrieval over a built dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dataset_scripts.errors import UsageError

DEMO_CHECKPOINT = "outputs/demo/checkpoint"
DEMO_DATASET = "outputs/demo/dataset"
DEMO_INDEX = "outputs/demo/index"


def register(subparsers: Any) -> None:
    """Add the ``index``, ``eval-retrieval`` and ``serve`` subcommands."""
    p = subparsers.add_parser(
        "index",
        help="embed a dataset's samples and captions into FAISS indexes for retrieval",
        description="Embed every sample (image side) and every caption (text side) of a built GeoMeld dataset with "
        "GeoMeldModel, in batches with a progress bar, and write INDEX/images and INDEX/texts (FAISS index + tile ids "
        "+ metadata) and INDEX/index.json. Exact search up to 20k vectors; above that IVF with a scalar quantiser "
        "chosen by the memory budget (see space_app/index.py). Rerunning on an existing INDEX with the same "
        "checkpoint only adds the samples it lacks.",
    )
    _model_and_data(p)
    p.add_argument("--out", default=DEMO_INDEX, help=f"index folder to create or extend (default: {DEMO_INDEX})")
    p.add_argument("--kind", default="auto", help="FAISS index kind: auto (default), flat, ivf_fp16, ivf_sq8, ivf_pq, hnsw_sq8")
    p.add_argument("--memory-budget-gb", type=float, default=None, help="memory budget that picks the index kind (default 2)")
    p.set_defaults(func=run_index)

    e = subparsers.add_parser(
        "eval-retrieval",
        help="R@1/5/10 image->text and text->image, and mR, on a dataset split",
        description="Embed the captioned samples of one split and report recall at K in both directions and their "
        "mean (mR); a query is a hit when any of its positives is among its K nearest by cosine similarity.",
    )
    _model_and_data(e)
    e.add_argument("--split", default="test", help="split to evaluate: train, validation, test (default) or all")
    e.add_argument("--out", default=None, help="also write the numbers as JSON to this file")
    e.set_defaults(func=run_eval)

    s = subparsers.add_parser(
        "serve",
        help="start the Gradio retrieval Space (text -> image, image -> text, GeoTIFF upload)",
        description="Serve the retrieval Space on loopback (or --host). Arguments default to the environment "
        "variables GEOMELD_CHECKPOINT, GEOMELD_INDEX and GEOMELD_DATASET, then to the demo's outputs.",
    )
    s.add_argument("--checkpoint", default=None, help="checkpoint folder ($GEOMELD_CHECKPOINT or the demo's)")
    s.add_argument("--index", default=None, help="index folder from `geomeld index` ($GEOMELD_INDEX or the demo's)")
    s.add_argument("--dataset", default=None, help="dataset folder ($GEOMELD_DATASET or the demo's)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    s.set_defaults(func=run_serve)

    b = subparsers.add_parser(
        "space-bundle",
        help="write a folder that deploys as a Hugging Face Space as it is (code, requirements, data)",
        description="Copy the app, the geomeld code it imports, requirements.txt (registry packages only), the Space card "
        "and the checkpoint/index/dataset (default: the demo's) into OUT; push OUT to a Space repository.",
    )
    b.add_argument("--out", required=True, help="new or empty folder to write")
    b.add_argument("--checkpoint", default=DEMO_CHECKPOINT, help=f"checkpoint folder (default: {DEMO_CHECKPOINT})")
    b.add_argument("--index", default=DEMO_INDEX, help=f"index folder (default: {DEMO_INDEX})")
    b.add_argument("--dataset", default=DEMO_DATASET, help=f"dataset folder (default: {DEMO_DATASET})")
    b.set_defaults(func=run_bundle)


def _model_and_data(parser: argparse.ArgumentParser) -> None:
    """The options `index` and `eval-retrieval` share: what to embed, with which model, how."""
    parser.add_argument("--checkpoint", default=DEMO_CHECKPOINT, help=f"a GeoMeld-FM checkpoint folder (default: {DEMO_CHECKPOINT})")
    parser.add_argument("--dataset", default=DEMO_DATASET, help=f"a dataset built by `geomeld build` (default: {DEMO_DATASET})")
    parser.add_argument("--modalities", default="all", help="image-side inputs: all (default), sentinel2 or sentinel1")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per forward pass (default: 32)")


def _subset(name: str) -> tuple[str, ...] | None:
    from .retrieval import SUBSETS

    if name not in SUBSETS:
        raise UsageError(f"--modalities must be one of {', '.join(SUBSETS)}, found {name!r}")
    return SUBSETS[name]


def _missing(path: str, what: str, hint: str) -> bool:
    if Path(path).exists():
        return False
    raise UsageError(f"{what} {path} does not exist; {hint}")


def run_index(args: argparse.Namespace) -> int:
    from .retrieval import build_index

    if _missing(args.checkpoint, "checkpoint", "run `geomeld demo` or `geomeld pretrain` first") or _missing(
        args.dataset, "dataset", "run `geomeld demo` or `geomeld build` first"
    ):
        return 2
    budget = int(args.memory_budget_gb * 1024**3) if args.memory_budget_gb else None
    try:
        report = build_index(
            args.checkpoint, args.dataset, args.out, batch_size=args.batch_size, modalities=_subset(args.modalities),
            kind=args.kind, memory_budget_bytes=budget,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    print(json.dumps(report.to_dict(), indent=2))
    print(f"index written to {Path(args.out).resolve()}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .retrieval import evaluate_retrieval, format_recall_table

    if _missing(args.checkpoint, "checkpoint", "run `geomeld demo` or `geomeld pretrain` first") or _missing(
        args.dataset, "dataset", "run `geomeld demo` or `geomeld build` first"
    ):
        return 2
    try:
        result = evaluate_retrieval(
            args.checkpoint, args.dataset, None if args.split == "all" else args.split,
            batch_size=args.batch_size, modalities=_subset(args.modalities),
        )  # fmt: skip
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(format_recall_table(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from .app import launch, resolve_paths

    try:
        checkpoint, index, dataset = resolve_paths(args.checkpoint, args.index, args.dataset)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    launch(checkpoint, index, dataset, host=args.host, port=args.port)
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    from dataset_scripts.errors import UsageError

    from .bundle import bundle_space

    for name in ("checkpoint", "index", "dataset"):
        if not Path(getattr(args, name)).is_dir():
            raise UsageError(f"expected a {name} folder at {getattr(args, name)}, found none; run `geomeld demo` or pass --{name}")
    try:
        out = bundle_space(args.out, args.checkpoint, args.index, args.dataset)
    except FileExistsError as err:
        raise UsageError(str(err)) from None
    print(f"Space bundle written to {out.resolve()}: push it to a Hugging Face Space repository")
    return 0
