"""`geomeld benchmark geobench`: GEO-Bench under one protocol (mmearth, frozen, knn) for several checkpoints
over seeds, with bootstrap 95 % intervals, resumable per (task, seed); writes DIR/results.json, DIR/table.md
(the paper's layout) and DIR/plot.png, and prints the table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dataset_scripts.errors import UsageError

EPILOG = """\
checkpoints: a folder written by `geomeld pretrain` / `geomeld convert` (LABEL=PATH names its row), `random`
(a random-init paper-atto encoder configured with each task's bands; `random:PRESET` for another preset).
The ImageNet baseline needs facebook/convnextv2-atto-1k-224 downloaded once (network), then a conversion:
  hf download facebook/convnextv2-atto-1k-224 --local-dir DIR
  geomeld convert hf DIR --out ckpt/imagenet-atto        (then --checkpoint ImageNet=ckpt/imagenet-atto)

presets: `full` (default) is the protocol's recipe (see modeling_geomeld/evaluation/geobench_protocols.py);
`smoke` runs 12 steps on the first 64 train / 64 test samples (minutes on a CPU), for checking the set-up.
A checkpoint that does not take a task's modality gets "not applicable: checkpoint takes X, task provides Y"
in the table. Finished runs (DIR/runs/...) are skipped on a rerun, so a killed benchmark resumes.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("benchmark", help="benchmark checkpoints on GEO-Bench under a stated protocol",
                              description=__doc__)  # fmt: skip
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    g = sub.add_parser("geobench", help="GEO-Bench v1.0: protocols mmearth, frozen, knn", description=__doc__,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    g.add_argument("--protocol", required=True, choices=["mmearth", "frozen", "knn"], help="evaluation protocol")
    g.add_argument("--tasks", nargs="+", default=["all"], help="GEO-Bench task names, or `all` (the 12 tasks; default)")
    g.add_argument("--checkpoint", action="append", required=True, dest="checkpoints",
                   help="checkpoint folder, LABEL=PATH, `random` or `random:PRESET`; give it several times")  # fmt: skip
    g.add_argument("--data-root", default=None, help="GEO-Bench root (default: $GEO_BENCH_DIR)")
    g.add_argument("--partition", default="default", help="training partition, e.g. 1.00x_train, 0.01x_train (default: default)")
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    g.add_argument("--preset", choices=["smoke", "full"], default="full", help="recipe size (default: full)")
    g.add_argument("--steps", type=int, default=None, help="override the optimiser steps of every run")
    g.add_argument("--stats", default="task", help="normalisation: task (default, as MMEarth), checkpoint, dataset:DIR")
    g.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resampling (default: 0)")
    g.add_argument("--controls", action="store_true",
                   help="add a shuffled-train-label control row under every checkpoint, with a verdict per cell")  # fmt: skip
    g.add_argument("--max-new-runs", type=int, default=None, help="stop after this many new runs (resume later)")
    g.add_argument("--out", required=True, help="output folder (runs/, results.json, table.md, plot.png)")
    g.set_defaults(func=run_geobench)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _checkpoints(values: list[str]) -> list[Any]:
    from modeling_geomeld.evaluation.geobench_protocols import parse_checkpoint
    from modeling_geomeld.training.finetune_setup import require_checkpoint

    sources = []
    for value in values:
        if value.lower() == "imagenet":
            raise UsageError(
                "the ImageNet baseline needs facebook/convnextv2-atto-1k-224 downloaded once (`hf download "
                "facebook/convnextv2-atto-1k-224 --local-dir SRC` with network access), then `geomeld convert hf SRC "
                "--out DIR`; pass --checkpoint ImageNet=DIR"
            )
        source = parse_checkpoint(value)
        if source.path is not None:
            require_checkpoint(source.path)
        sources.append(source)
    labels = [s.name for s in sources]
    if len(set(labels)) != len(labels):
        raise UsageError(f"two checkpoints share a row label ({labels}); name them with LABEL=PATH")
    return sources


def run_geobench(args: argparse.Namespace) -> int:
    from dataset_scripts.geobench import PRESETS, get_preset, resolve_root
    from modeling_geomeld.evaluation.geobench_protocols import run_benchmark

    tasks = list(PRESETS) if args.tasks == ["all"] else args.tasks
    try:
        tasks = [get_preset(t).name for t in tasks]
        root = str(resolve_root(args.data_root))
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    sources = _checkpoints(args.checkpoints)
    missing = [t for t in tasks if not (Path(root) / get_preset(t).benchmark / t).is_dir()]
    if missing:
        raise UsageError(f"{root} holds no folder for {missing}; download them with GEO-Bench's tool (see scripts/geobench_table.sh)")
    report = run_benchmark(args.protocol, tasks, sources, args.out, seeds=args.seeds, preset=args.preset,
                           partition=args.partition, root=root, stats=args.stats, steps=args.steps,
                           bootstrap_seed=args.bootstrap_seed, max_new_runs=args.max_new_runs,
                           controls=args.controls)  # fmt: skip
    print(f"\n{report.table}\n")
    for v in report.controls:
        if not v["passes"]:
            print(f"control FAILED: {v['checkpoint']} / {v['task']} / {v['column']}: {100 * v['shuffled_mean']:.1f} above "
                  f"the upper bounds of the majority class ({100 * v['majority_interval'][1]:.1f}) and of the sampled "
                  f"label prior ({100 * v['prior_sampled_interval'][1]:.1f})")  # fmt: skip
    if report.controls:
        n, beat = len(report.controls), sum(v["beats_majority"] for v in report.controls)
        print(f"shuffled-label controls: {sum(v['passes'] for v in report.controls)}/{n} cells at or below the knows-nothing "
              f"baselines' upper bounds; {beat}/{n} above the majority class's alone")  # fmt: skip
    print(f"{len(report.computed)} runs computed, {len(report.reused)} reused from {report.out / 'runs'}")
    if report.stopped_early:
        print(f"stopped after --max-new-runs {args.max_new_runs}; rerun the same command to continue")
        return 0
    print(f"wrote {report.out / 'results.json'}, {report.out / 'table.md'} and {report.out / 'plot.png'}")
    return 0
