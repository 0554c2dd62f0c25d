"""Do the pretraining objectives learn? Real TerraMesh crops, two held-out protocols, one table and JSON.

`blocks` holds out a spatial block of every location; `locations` holds out two whole locations (Tanzania,
Denmark). For each: MP-MAE error ratio per target against the best constant predictor, land-cover accuracy
against the majority class, JEPA loss first vs last steps, image -> caption retrieval against chance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from modeling_geomeld.evaluation.evidence import run_evidence

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "terramind-samples"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="terramind-samples folder")
    parser.add_argument("--steps", type=int, default=150, help="pretraining steps (default 150)")
    parser.add_argument("--out", default="benchmarks/results/pretrain_evidence.json", help="JSON output path")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    results = {split: run_evidence(args.root, steps=args.steps, split=split) for split in ("blocks", "locations")}
    print(f"\n{'held out':10s} {'S1 ratio':>9s} {'DEM ratio':>10s} {'DW acc':>7s} {'majority':>9s} {'JEPA first->last':>17s} {'R@1':>5s} {'R@5':>5s} {'chance R@1':>10s}")
    for split, r in results.items():
        a = r["after"]
        rec, ret = a["reconstruction"], a.get("retrieval", {})
        f, last = r["train_jepa_first_last"]
        print(
            f"{split:10s} {rec['sentinel1']['ratio']:9.2f} {rec['dem']['ratio']:10.2f} {rec['dynamic_world']['accuracy']:7.2f} "
            f"{rec['dynamic_world']['majority_accuracy']:9.2f} {f:8.3f}->{last:.3f} {ret.get('image_to_text_R@1', float('nan')):5.2f} "
            f"{ret.get('image_to_text_R@5', float('nan')):5.2f} {a['retrieval_chance_R@1']:10.2f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
