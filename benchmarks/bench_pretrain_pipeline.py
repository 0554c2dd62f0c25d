"""Does the data pipeline slow pretraining down? paper-atto training steps fed through the real pipeline
(load_dataset rows -> decode -> processor crop/normalise -> masks -> tokenized captions) against the same
steps fed from batches already collated in memory, interleaved in one run. Goal: pipeline <= 15 % of the step.

The dataset is built from the real TerraMesh samples (a manifest over ../shared/data/terramind-samples) with
the captioning stage; prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "terramind-samples"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="terramind-samples folder")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per feed (default 6)")
    parser.add_argument("--out", default="benchmarks/results/pretrain_pipeline.json", help="JSON output path")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    from dataset_scripts.build import BuildOptions, build
    from dataset_scripts.loading import load_geomeld
    from dataset_scripts.terramind import write_terramind_manifest
    from modeling_geomeld import GeoMeldConfig, GeoMeldForPreTraining, GeoMeldImageProcessor, GeoMeldProcessor
    from modeling_geomeld.text import load_text_tokenizer
    from modeling_geomeld.training.pretraining import RowCollator

    tmp = Path(tempfile.mkdtemp())
    manifest = write_terramind_manifest(args.root, tmp / "m.csv")
    build(f"manifest:{manifest}", tmp / "ds", BuildOptions(workers=0, progress=False, caption=True))
    data = load_geomeld(tmp / "ds", split="train")
    cfg = GeoMeldConfig.from_preset("paper-atto")
    collate = RowCollator(GeoMeldProcessor(GeoMeldImageProcessor.from_model_config(cfg, crop_size=cfg.encoder_cfg.image_size, crop_mode="random"), load_text_tokenizer()))
    model = GeoMeldForPreTraining(cfg).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(0)

    def rows_batch() -> list[dict]:
        idx = torch.randint(0, len(data), (args.batch,), generator=g).tolist()
        return [data[i] for i in idx]

    def step(batch: dict) -> None:
        out = model(**batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        model.update_ema(0.996)

    cached = [collate(rows_batch()) for _ in range(args.steps)]
    step(cached[0])  # warm-up
    pipeline_s, memory_s, collate_s = [], [], []
    for i in range(args.steps):
        t0 = time.perf_counter()
        batch = collate(rows_batch())
        t1 = time.perf_counter()
        step(batch)
        pipeline_s.append(time.perf_counter() - t0)
        collate_s.append(t1 - t0)
        t0 = time.perf_counter()
        step(cached[i])
        memory_s.append(time.perf_counter() - t0)
    p, m = statistics.median(pipeline_s), statistics.median(memory_s)
    result = {
        "batch": args.batch,
        "steps": args.steps,
        "pipeline_s_per_step": p,
        "in_memory_s_per_step": m,
        "collate_s_per_batch": statistics.median(collate_s),
        "pipeline_samples_per_s": args.batch / p,
        "in_memory_samples_per_s": args.batch / m,
        "pipeline_overhead": p / m - 1.0,
        "goal_overhead": 0.15,
    }
    print(f"\npaper-atto, batch {args.batch}, {args.steps} interleaved steps per feed, 2 threads")
    print(f"{'feed':28s} {'s/step':>8s} {'samples/s':>10s}")
    print(f"{'data pipeline (load_dataset)':28s} {p:8.3f} {args.batch / p:10.2f}")
    print(f"{'tensors in memory':28s} {m:8.3f} {args.batch / m:10.2f}")
    print(f"pipeline overhead {100 * (p / m - 1):.1f} % of the step (goal <= 15 %); collate alone {result['collate_s_per_batch']:.3f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
