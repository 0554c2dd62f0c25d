"""Benchmark GeoMeld-FM training steps on CPU and our encoder against transformers' ConvNeXt V2.

Two measurements, each as ratios against a baseline timed in the same run, interleaved round-robin so
machine noise hits every variant alike:

1. time per pretraining step (forward + backward + AdamW step) at ConvNeXt V2-atto, 112 px, batch 32 for
   MP-MAE only, +JEPA, +ITC and all three objectives (goal: all three <= 1.6x MP-MAE only). ITC uses the
   captions' text-tower features computed once per caption (captions are fixed per sample, so GeoMeld caches
   them; `freeze_text_tower=True`); the step with the frozen tower run on token ids is reported too.
2. our encoder's forward + backward on dense S2 input against `transformers.ConvNextV2Model` with the same
   depths, dims and stem stride (goal: <= 1.1x).

Both measured for both stems (`stem_type="convnext"` and MMEarth's `"mmearth"`, which `paper-atto` uses; the
transformers baseline always has ConvNeXt's stem, so the MMEarth row shows what its full-resolution 3x3 conv
costs). Then, for the all-three step of `paper-atto`:

3. eager against `torch.compile` (inductor; compile time excluded, reported separately);
4. float32 against bf16 autocast on this CPU (AVX-512 BF16).

Prints a table and writes JSON (default benchmarks/results/model.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from transformers import ConvNextV2Config, ConvNextV2Model

from modeling_geomeld import GeoMeldConfig, GeoMeldForPreTraining
from modeling_geomeld.masking import random_patch_mask
from modeling_geomeld.modeling_geomeld import GeoMeldEncoder

VARIANTS = {
    "mpmae": {"use_jepa": False, "use_itc": False},
    "mpmae+jepa": {"use_itc": False},
    "mpmae+itc": {"use_jepa": False},
    "all three": {},
}


def _step_fn(
    name: str, overrides: dict, batch: int, size: int, text: str, compile: bool = False, bf16: bool = False
) -> Callable[[], None]:
    torch.manual_seed(0)
    cfg = GeoMeldConfig.from_preset("paper-atto", **overrides)
    model = GeoMeldForPreTraining(cfg).train()
    forward: Callable[..., Any] = torch.compile(model) if compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    pixel = {"sentinel2": torch.randn(batch, 12, size, size, generator=g)}
    targets = {
        "sentinel1": torch.randn(batch, 2, size, size, generator=g),
        "dem": torch.randn(batch, 2, size, size, generator=g),
        "canopy_height": torch.randn(batch, 2, size, size, generator=g),
        "dynamic_world": torch.randint(0, 9, (batch, size, size), generator=g),
        "esa_worldcover": torch.randint(0, 11, (batch, size, size), generator=g),
    }
    caption: dict[str, torch.Tensor] = {}
    if cfg.use_itc:
        if text == "features":
            caption = {"text_features": torch.randn(batch, cast(Any, cfg.text_config).hidden_size, generator=g)}
        else:
            ids = torch.randint(1000, 30000, (batch, 32), generator=g)
            caption = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    grid = size // cfg.encoder_cfg.patch_size

    def step() -> None:
        mask = random_patch_mask(batch, (grid, grid), cfg.encoder_cfg.mask_ratio, generator=g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(pixel, targets=targets, mask=mask, **caption)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        model.update_ema(0.996)

    return step


def _encoder_fns(batch: int, size: int, stem_type: str) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    cfg = GeoMeldConfig.from_preset("paper-atto", encoder_config={"stem_type": stem_type}).encoder_cfg
    ours = GeoMeldEncoder(cfg).train()
    hf = ConvNextV2Model(
        ConvNextV2Config(num_channels=12, patch_size=cfg.stem_stride, depths=cfg.depths, hidden_sizes=cfg.dims, drop_path_rate=0.0)
    ).train()
    x = torch.randn(batch, 12, size, size)

    def run_ours() -> None:
        ours.zero_grad(set_to_none=True)
        out = ours({"sentinel2": x})
        (out.last_hidden_state.mean() + out.pooler_output.mean()).backward()

    def run_hf() -> None:
        hf.zero_grad(set_to_none=True)
        out = hf(pixel_values=x)
        (out.last_hidden_state.mean() + out.pooler_output.mean()).backward()

    return {f"geomeld encoder ({stem_type} stem)": run_ours, "transformers ConvNextV2Model": run_hf}


def _time_round_robin(fns: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--size", type=int, default=112, help="crop size in pixels (default 112)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per variant (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--out", default="benchmarks/results/model.json", help="JSON output path")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    result: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
        "settings": vars(args),
        "note": "shared 2-core machine loaded by other jobs: compare ratios (same run, interleaved), not seconds",
        "stems": {},
    }
    goals: dict[str, float] = {"all_three_goal": 1.6, "encoder_goal": 1.1}
    for stem in ("convnext", "mmearth"):
        over = {"encoder_config": {"stem_type": stem}}
        step_fns = {name: _step_fn(name, {**o, **over}, args.batch, args.size, "features") for name, o in VARIANTS.items()}
        step_fns["all three (frozen tower on token ids)"] = _step_fn("ids", over, args.batch, args.size, "ids")
        steps = _time_round_robin(step_fns, args.repeats, args.warmup)
        enc = _time_round_robin(_encoder_fns(args.batch, args.size, stem), args.repeats, args.warmup)
        ours = f"geomeld encoder ({stem} stem)"
        # median and minimum over the interleaved repeats: on a shared machine the minimum is the least disturbed run
        med = {k: statistics.median(v) for k, v in {**steps, **enc}.items()}
        low = {k: min(v) for k, v in {**steps, **enc}.items()}
        rows = [(k, med[k], med[k] / med["mpmae"], low[k] / low["mpmae"]) for k in steps]
        enc_ratio = med[ours] / med["transformers ConvNextV2Model"]
        enc_ratio_min = low[ours] / low["transformers ConvNextV2Model"]
        print(f"\nPretraining step, ConvNeXt V2-atto, {stem} stem, {args.size} px, batch {args.batch}, {args.threads} threads ({args.repeats} interleaved repeats)")
        print(f"{'variant':42s} {'median s':>9s} {'x MP-MAE':>9s} {'x (min)':>8s}")
        for name, t, r, r_min in rows:
            print(f"{name:42s} {t:9.3f} {r:9.2f} {r_min:8.2f}")
        print(f"Encoder forward+backward, dense S2, batch {args.batch}")
        for name in enc:
            print(f"{name:42s} {med[name]:9.3f}")
        print(f"{'ratio ours / transformers (median, min)':42s} {enc_ratio:9.2f} {enc_ratio_min:9.2f}")
        goals[f"{stem}_all_three_over_mpmae"] = med["all three"] / med["mpmae"]
        goals[f"{stem}_all_three_over_mpmae_min"] = low["all three"] / low["mpmae"]
        goals[f"{stem}_encoder_over_transformers"] = enc_ratio
        goals[f"{stem}_encoder_over_transformers_min"] = enc_ratio_min
        result["stems"][stem] = {
            "seconds_median": med,
            "seconds_min": low,
            "seconds_all": {**steps, **enc},
            "ratios_median": {k: r for k, _, r, _ in rows},
            "ratios_min": {k: r for k, _, _, r in rows},
        }

    # eager vs torch.compile, fp32 vs bf16 autocast: the all-three paper-atto step (MMEarth stem)
    modes = {
        "eager fp32": _step_fn("eager", {}, args.batch, args.size, "features"),
        "eager bf16 autocast": _step_fn("bf16", {}, args.batch, args.size, "features", bf16=True),
    }
    compile_s = float("nan")
    if not args.no_compile:
        modes["torch.compile fp32"] = _step_fn("compiled", {}, args.batch, args.size, "features", compile=True)
        t0 = time.perf_counter()
        modes["torch.compile fp32"]()  # compiles forward and backward
        compile_s = time.perf_counter() - t0
    timed = _time_round_robin(modes, args.repeats, args.warmup)
    mmed = {k: statistics.median(v) for k, v in timed.items()}
    mlow = {k: min(v) for k, v in timed.items()}
    print(f"\nAll three objectives, paper-atto (mmearth stem), batch {args.batch}: execution modes")
    print(f"{'mode':42s} {'median s':>9s} {'x eager':>9s} {'x (min)':>8s}")
    for k in timed:
        print(f"{k:42s} {mmed[k]:9.3f} {mmed[k] / mmed['eager fp32']:9.2f} {mlow[k] / mlow['eager fp32']:8.2f}")
    if not args.no_compile:
        print(f"first compiled step (compile + run): {compile_s:.1f} s")
    result["modes"] = {
        "seconds_median": mmed,
        "seconds_min": mlow,
        "seconds_all": timed,
        "ratios_median": {k: v / mmed["eager fp32"] for k, v in mmed.items()},
        "ratios_min": {k: v / mlow["eager fp32"] for k, v in mlow.items()},
        "first_compiled_step_s": compile_s,
    }
    result["goals"] = goals
    print(
        "\ngoals: "
        + "; ".join(
            f"{stem}: all three {goals[f'{stem}_all_three_over_mpmae']:.2f}x (<= 1.6), encoder {goals[f'{stem}_encoder_over_transformers']:.2f}x (<= 1.1)"
            for stem in ("convnext", "mmearth")
        )
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
