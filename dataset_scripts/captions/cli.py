"""``geomeld caption`` and ``geomeld verify-caption``: grounded captions for a built dataset.

Register with ``register(subparsers)`` (listed in ``modeling_geomeld.cli.SUBCOMMAND_MODULES``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dataset_scripts.errors import UsageError

from .orchestrator import build_fact_sheet, water_layout


def register(subparsers: Any) -> None:
    """Add the ``caption`` and ``verify-caption`` subcommands."""
    p = subparsers.add_parser(
        "caption",
        help="add grounded captions to a built dataset",
        description="Caption every sample of a built dataset: build a fact sheet from its signals, propose K "
        "candidates, verify each claim against the facts (repairing or rejecting), rank, and store the kept "
        "caption in each shard's `caption` column and the full audit record (candidates, per-claim verdicts, "
        "scores, fact sheet) in DIR/captions/<shard>.jsonl. Resumable: shards already captioned are skipped.",
    )
    p.add_argument(
        "dataset",
        type=Path,
        help="dataset folder written by `geomeld build` (Parquet shards under DIR/data/)",
    )
    p.add_argument(
        "--captioner",
        default="template",
        help="template (default), hf:PATH (a local causal LM folder) or openai:URL (an OpenAI-compatible "
        "server); language-model candidates compete with template ones",
    )
    p.add_argument(
        "--candidates", type=int, default=4, help="candidates per captioner and sample (default 4)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the template grammar and of LM sampling (default 0)"
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a GeoMeld checkpoint folder (model + processor): rank candidates by image-text similarity "
        "instead of fact coverage (reads the imagery)",
    )
    p.add_argument(
        "--no-repair",
        action="store_true",
        help="reject candidates with a contradicted claim instead of removing the clause",
    )
    p.add_argument("--redo", action="store_true", help="caption shards that are already marked done again")
    p.set_defaults(func=run_caption)

    v = subparsers.add_parser(
        "verify-caption",
        help="check one caption against a sample's facts and print JSON",
        description="Print JSON with `accepted` and `claims` (text, verdict supported|contradicted|unverifiable, and "
        "the fact each was checked against) for CAPTION against the sample TILE_ID of a built dataset.",
    )
    v.add_argument("--dataset", type=Path, required=True, help="dataset folder written by `geomeld build`")
    v.add_argument("--tile-id", required=True, help="the sample's tile id (a manifest build's anchor_id)")
    v.add_argument("--caption", required=True, help="the caption to check")
    v.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from .dataset_io import find_row
    from .verifier import Verifier

    try:
        row = find_row(args.dataset, args.tile_id)
    except (KeyError, ValueError) as err:
        raise UsageError(str(err).strip("'\"")) from None
    sheet = build_fact_sheet(row.tile_id, row.signals, row.metadata, water_layout(row.arrays))
    result = Verifier(sheet).verify(args.caption).to_dict()
    print(json.dumps({"tile_id": row.tile_id, **result}, indent=2, ensure_ascii=False))
    return 0


def run_caption(args: argparse.Namespace) -> int:
    from .captioners import Captioner, TemplateCaptioner, make_captioner
    from .dataset_io import iter_shard, record_path, shard_paths, write_shard_captions
    from .pipeline import caption_sample

    try:
        shards = shard_paths(args.dataset)
        captioners: list[Captioner] = [TemplateCaptioner()]
        if args.captioner != "template":
            captioners.insert(0, make_captioner(args.captioner))
    except ValueError as err:
        raise UsageError(str(err)) from None
    evaluator = _similarity_evaluator(args.checkpoint) if args.checkpoint is not None else None
    done = skipped = 0
    without = 0
    for shard in shards:
        if record_path(args.dataset, shard).exists() and not args.redo:
            skipped += 1
            continue
        records = {}
        for row in iter_shard(shard, with_images=evaluator is not None):
            sheet = build_fact_sheet(row.tile_id, row.signals, row.metadata, water_layout(row.arrays))
            embedding = evaluator.similarity.embed_image(row.images, row.image_bands) if evaluator else None
            result = caption_sample(
                sheet,
                captioners,
                k=args.candidates,
                seed=args.seed,
                evaluator=evaluator,
                image_embedding=embedding,
                repair=not args.no_repair,
            )
            records[row.tile_id] = result.to_dict()
            without += result.caption is None
        write_shard_captions(args.dataset, shard, records)
        done += 1
        print(f"captioned {shard.name}: {len(records)} samples", file=sys.stderr)
    print(
        json.dumps({"shards_captioned": done, "shards_skipped": skipped, "samples_without_caption": without})
    )
    return 0


def _similarity_evaluator(checkpoint: Path) -> Any:
    """An evaluator ranking by image-text similarity with the GeoMeld checkpoint in ``checkpoint``."""
    from transformers import AutoModel, AutoProcessor

    import modeling_geomeld  # noqa: F401  (registers GeoMeld with the Auto classes)

    from .evaluator import Evaluator, GeoMeldSimilarity

    model = AutoModel.from_pretrained(str(checkpoint), local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(str(checkpoint), local_files_only=True)
    return Evaluator(GeoMeldSimilarity(model, processor))
