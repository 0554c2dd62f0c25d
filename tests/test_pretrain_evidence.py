"""The objectives learn: pretrain `tiny` on real TerraMesh crops, evaluate on held-out spatial blocks."""

from __future__ import annotations

from pathlib import Path

import torch

from modeling_geomeld.evaluation.evidence import run_evidence


def test_objectives_beat_baselines_on_held_out_blocks(terramind_dir: Path) -> None:
    torch.set_num_threads(2)
    r = run_evidence(terramind_dir, steps=150, seed=0, split="blocks")
    assert r["train_samples"] == 35 and r["test_samples"] == 10
    after = r["after"]
    for name in ("sentinel1", "dem"):  # below the best constant predictor, hence below the training mean too
        assert after["reconstruction"][name]["ratio"] < 1.0, (name, after["reconstruction"][name])
    dw = after["reconstruction"]["dynamic_world"]
    assert dw["accuracy"] > dw["majority_accuracy"]
    first, last = r["train_jepa_first_last"]
    assert last < 0.5 * first  # the JEPA loss falls
    assert after["retrieval"]["image_to_text_R@1"] > after["retrieval_chance_R@1"]
    assert after["retrieval"]["image_to_text_R@5"] > 5 * after["retrieval_chance_R@1"]
