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

    python benchmarks/bench_captions.py --crops 200 --out benchmarks/results/captions.json

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

from _caption_samples import TILES, aligned_sample, fact_sheet, real_fact_sheets  # noqa: E402

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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/terramind-samples")
    parser.add_argument("--crops", type=int, default=200, help="random crops of the real tiles to caption")
    parser.add_argument("--candidates", type=int, default=4, help="K candidates per crop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
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
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


if __name__ == "__main__":
    main()
