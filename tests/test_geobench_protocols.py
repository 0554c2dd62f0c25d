"""The GEO-Bench protocol harness (`geomeld benchmark geobench`) on generated tasks in the real layout.

The tasks are written with the fixture's band names, partitions and statistics (tests/fixtures/make_geobench.py),
but with labels derived from the pixels, so that they are learnable: a brightness offset of a band group decides
a class (m-so2sat), a label (m-bigearthnet) or, in stripes of random orientation, the pixels' class
(m-cashew-plant: each of the 7 classes brightens its own combination of band groups).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import TINY_TEXT
from fixtures.make_geobench_learnable import TASK_NAMES, write_learnable_task

from modeling_geomeld import GeoMeldConfig, GeoMeldModel
from modeling_geomeld.cli import main
from modeling_geomeld.evaluation import accuracy, mean_iou, micro_f1
from modeling_geomeld.evaluation.geobench_protocols import (
    COLUMNS,
    Cell,
    applicability,
    bootstrap_interval,
    markdown_table,
    metric_from_sums,
    parse_checkpoint,
    recipe,
    run_benchmark,
    sample_statistics,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("geobench-learnable")
    for task in TASK_NAMES:
        write_learnable_task(base, task)
    return base


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved Sentinel-2-only tiny GeoMeld-FM (12 bands: m-so2sat lacks B01 and B09, filled as MMEarth does)."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-s2"
    torch.manual_seed(0)
    config = GeoMeldConfig.from_preset(
        "tiny", text_config=dict(TINY_TEXT), freeze_text_tower=False, segmentation_channels=[16, 12, 8, 8],
        encoder_config={"depths": [1, 1, 1, 1], "dims": [8, 16, 24, 32]},
    )
    GeoMeldModel(config).save_pretrained(folder)
    return folder


def _cells(report: object) -> dict[tuple[str, str, str], Cell]:
    return {(c.checkpoint, c.task, c.column): c for c in report.cells}  # type: ignore[attr-defined]


@pytest.mark.parametrize("protocol", ["mmearth", "frozen", "knn"])
def test_every_protocol_beats_the_majority_class_on_learnable_tasks(
    protocol: str, root: Path, checkpoint: Path, tmp_path: Path
) -> None:
    steps = {"mmearth": 15, "frozen": 20, "knn": None}[protocol]
    # 15-20 CPU steps do not lift 43-label BCE above its prior reliably: the trained protocols are checked on the
    # single-label and segmentation tasks, k-NN (no training) on all three
    tasks = list(TASK_NAMES) if protocol == "knn" else ["m-so2sat", "m-cashew-plant"]
    report = run_benchmark(protocol, tasks, [parse_checkpoint(f"tiny={checkpoint}")], tmp_path,
                           seeds=[0], preset="smoke", root=str(root), steps=steps, log=lambda _: None)  # fmt: skip
    cells = _cells(report)
    for task in tasks:
        for column in COLUMNS[protocol]:
            cell, majority = cells[("tiny", task, column)], cells[("majority class", task, column)]
            assert cell.mean > majority.mean + 0.05, (task, column, cell, majority)
            assert cell.lo <= cell.mean <= cell.hi
    so2sat = json.loads(next((tmp_path / "runs" / protocol / "tiny" / "m-so2sat").glob("*.json")).read_text())
    assert "band_fills: {'sentinel2': {'B01': 'B02', 'B09': 'B8A'}}" in so2sat["notes"]
    assert (tmp_path / "plot.png").stat().st_size > 1000
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["table"] == (tmp_path / "table.md").read_text().strip()


def test_results_are_deterministic_per_seed_and_a_killed_benchmark_resumes(
    root: Path, checkpoint: Path, tmp_path: Path
) -> None:
    # m-cashew-plant: FT (decoder first, then everything) and LP, two seeds: 4 runs
    args = dict(protocol="mmearth", tasks=["m-cashew-plant"], checkpoints=[parse_checkpoint(f"tiny={checkpoint}")],
                seeds=[0, 1], preset="smoke", root=str(root), steps=2, log=lambda _: None)  # fmt: skip
    whole = run_benchmark(out=tmp_path / "whole", **args)  # type: ignore[arg-type]
    assert len(whole.computed) == 4 and not whole.reused

    killed = run_benchmark(out=tmp_path / "killed", max_new_runs=1, **args)  # type: ignore[arg-type]
    assert killed.stopped_early and len(killed.computed) == 1
    assert not (tmp_path / "killed" / "results.json").exists()
    first = killed.computed[0]
    stamp = first.stat().st_mtime_ns
    resumed = run_benchmark(out=tmp_path / "killed", **args)  # type: ignore[arg-type]
    assert resumed.reused == [first] and len(resumed.computed) == 3
    assert first.stat().st_mtime_ns == stamp
    assert resumed.table == whole.table
    # every run computed twice (uninterrupted, and killed + resumed) agrees within 1e-6 on CPU
    for path in whole.computed:
        ra, rb = json.loads(path.read_text()), json.loads((tmp_path / "killed" / path.relative_to(tmp_path / "whole")).read_text())
        assert math.isclose(ra["value"], rb["value"], abs_tol=1e-6)
        assert math.isclose(ra["final_loss"], rb["final_loss"], abs_tol=1e-6)
        np.testing.assert_allclose(ra["stats"], rb["stats"], atol=1e-6)
    # a run recorded with another recipe is never taken from disk
    rerun = run_benchmark(out=tmp_path / "killed", max_new_runs=1, **{**args, "steps": 3})  # type: ignore[arg-type]
    assert len(rerun.computed) == 1 and not rerun.reused

def test_sufficient_statistics_reproduce_the_shared_metrics() -> None:
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(30, 5, generator=g), torch.randint(0, 5, (30,), generator=g)
    stats = sample_statistics("single_label", logits, labels, 5)
    assert math.isclose(metric_from_sums("single_label", stats.sum(0), 30, 5), accuracy(logits.argmax(1).numpy(), labels.numpy()))
    ml_logits, ml_labels = torch.randn(30, 7, generator=g), torch.randint(0, 2, (30, 7), generator=g)
    stats = sample_statistics("multi_label", ml_logits, ml_labels, 7)
    assert math.isclose(metric_from_sums("multi_label", stats.sum(0), 30, 7),
                        micro_f1((ml_logits > 0).int().numpy(), ml_labels.numpy()))  # fmt: skip
    seg_logits, seg_labels = torch.randn(6, 4, 8, 8, generator=g), torch.randint(-1, 3, (6, 8, 8), generator=g)
    stats = sample_statistics("segmentation", seg_logits, seg_labels, 4)  # class 3 never in the references
    expected = mean_iou(seg_logits.argmax(1).numpy(), seg_labels.numpy(), num_labels=4, ignore_index=-1)["mean_iou"]
    assert math.isclose(metric_from_sums("segmentation", stats.sum(0), 6, 4), expected, rel_tol=1e-12)


def test_bootstrap_interval_is_seeded_and_contains_the_mean() -> None:
    rng = np.random.default_rng(3)
    seeds = [rng.integers(0, 2, (200, 1)).astype(float) for _ in range(3)]
    mean = float(np.mean([s.mean() for s in seeds]))
    lo, hi = bootstrap_interval(seeds, "single_label", 2, seed=7)
    assert lo < mean < hi and 0.05 < hi - lo < 0.2  # ~ 4 standard errors of a rate over 200 samples
    assert bootstrap_interval(seeds, "single_label", 2, seed=7) == (lo, hi)
    assert bootstrap_interval(seeds, "single_label", 2, seed=8) != (lo, hi)
    with pytest.raises(ValueError, match="same test samples"):
        bootstrap_interval([seeds[0], seeds[1][:10]], "single_label", 2)


def test_not_applicable_says_what_the_checkpoint_takes_and_the_task_provides(checkpoint: Path, tmp_path: Path) -> None:
    from dataset_scripts.geobench import get_preset

    reason, _ = applicability({"sentinel2": ["B02", "B03"]}, get_preset("m-forestnet"))
    assert reason == "not applicable: checkpoint takes sentinel2, task provides landsat8 (B4, B3, B2, B5, B6, B7)"
    assert applicability({"sentinel2": ["B01", "B02", "B09"]}, get_preset("m-so2sat"))[1] == {
        "sentinel2": {"B01": "B02", "B09": "B8A"}
    }
    # no data is read for a task a checkpoint cannot take: the table says so instead of crashing
    report = run_benchmark("knn", ["m-forestnet", "m-pv4ger"], [parse_checkpoint(f"tiny={checkpoint}")], tmp_path,
                           seeds=[0], preset="smoke", root=str(tmp_path), log=lambda _: None)  # fmt: skip
    assert "| tiny | not applicable: checkpoint takes sentinel2, task provides landsat8" in report.table
    assert "task provides aerial (R, G, B) |" in report.table


def test_markdown_table_has_the_papers_layout() -> None:
    cells = [Cell("ours", "m-so2sat", "FT", "accuracy", [0.5, 0.6], 0.55, 0.0707, 0.5, 0.61),
             Cell("ours", "m-so2sat", "LP", "accuracy", [0.4], 0.4, 0.0, 0.35, 0.45)]  # fmt: skip
    table = markdown_table(cells, ["m-so2sat"], ["FT", "LP"], ["ours", "random"], {"m-so2sat": "accuracy"})
    assert table.splitlines() == [
        "| checkpoint | m-so2sat FT (accuracy) | m-so2sat LP (accuracy) |",
        "|---|---|---|",
        "| ours | 55.0 ± 7.1 [50.0, 61.0] | 40.0 ± 0.0 [35.0, 45.0] |",
        "| random | not run | not run |",
    ]


def test_recipes_follow_mmearth_train() -> None:
    ft = recipe("mmearth", "FT", "multi_label")
    assert (ft.batch_size, ft.epochs, ft.learning_rate(), ft.layer_decay, ft.weight_decay) == (1024, 100, 8e-4, 0.9, 0.3)
    assert (ft.label_smoothing, ft.drop_path, ft.warmup_steps, ft.head_init_std) == (0.2, 0.1, 0, 2e-5)
    assert ft.steps_for(20000) == 100 * 20
    seg = recipe("mmearth", "FT", "segmentation")
    assert (seg.mode, seg.batch_size, seg.epochs, seg.learning_rate(), seg.probe_fraction) == ("probe_then_full", 32, 200, 1.25e-3, 0.25)
    assert recipe("knn", "k=20", "single_label").k == 20
    with pytest.raises(ValueError, match="columns"):
        recipe("frozen", "FT", "single_label")


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "geobench", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--protocol {mmearth,frozen,knn}" in text and "not applicable" in text and "convnextv2-atto" in text
    base = ["benchmark", "geobench", "--protocol", "knn", "--out", str(tmp_path / "o"), "--data-root", str(tmp_path)]
    assert main([*base, "--checkpoint", "imagenet"]) == 2
    assert "needs facebook/convnextv2-atto-1k-224 downloaded" in capsys.readouterr().err
    assert main([*base, "--checkpoint", "random", "--tasks", "m-so2sat"]) == 2
    assert "holds no folder for ['m-so2sat']" in capsys.readouterr().err
    assert main([*base, "--checkpoint", "random", "--tasks", "m-nonesuch"]) == 2


# ---------------------------------------------------------------------------------------------------------
# the official format: tasks written by GEO-Bench's own writer (tests/fixtures/make_geobench_official.py)
OFFICIAL_TASKS = ["m-bigearthnet", "m-so2sat", "m-cashew-plant", "m-forestnet", "m-pv4ger"]


@pytest.fixture(scope="module")
def official_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures.make_geobench_official import generate, missing_sdist_reason

    reason = missing_sdist_reason()
    if reason:
        pytest.skip(reason)
    return generate(tmp_path_factory.mktemp("geobench-official") / "geobench")


@pytest.mark.parametrize("protocol", ["knn", "frozen"])
def test_random_init_runs_every_official_task_end_to_end(protocol: str, official_root: Path, tmp_path: Path) -> None:
    """Random init configured with each task's bands takes all five official tasks, Landsat-8 (m-forestnet) and
    aerial RGB (m-pv4ger) included: a number in every cell, none "not applicable"."""
    report = run_benchmark(protocol, OFFICIAL_TASKS, [parse_checkpoint("random:tiny")], tmp_path, seeds=[0],
                           preset="smoke", root=str(official_root), steps=2, log=lambda _: None)  # fmt: skip
    cells = _cells(report)
    for task in OFFICIAL_TASKS:
        for column in COLUMNS[protocol]:
            cell = cells[("random init (tiny)", task, column)]
            assert not cell.not_applicable and math.isfinite(cell.mean) and cell.lo <= cell.mean <= cell.hi, cell
    assert "not applicable" not in report.table and "not run" not in report.table
    facts = json.loads((tmp_path / "results.json").read_text())["task_facts"]
    assert facts["m-forestnet"]["input_modalities"] == {"landsat8": ["B4", "B3", "B2", "B5", "B6", "B7"]}
    assert facts["m-pv4ger"]["input_modalities"] == {"aerial": ["R", "G", "B"]}
    assert facts["m-bigearthnet"]["input_size"] == 48  # 60 px quadrants cropped to tiny's 16 px patch multiple


def test_random_init_configures_every_one_of_the_12_tasks_without_data(tmp_path: Path) -> None:
    """For each GEO-Bench preset, the harness's random-init model takes the task's modalities and bands (the
    registry resolves each one; B10 dropped by name; m-so2sat's 8 SAR channels, complex parts and Lee-filtered
    intensities that no registry modality is, are not served, as MMEarth serves m-so2sat by S2 alone) and its
    processor maps an array of the task's band count at the task's patch size to the patch multiple."""
    from dataset_scripts.geobench import PRESETS
    from modeling_geomeld.evaluation.geobench_protocols import BandFilling, base_config, task_processor

    source = parse_checkpoint("random:tiny")
    assert len(PRESETS) == 12
    for name, preset in PRESETS.items():
        config = base_config(source, preset)
        assert config is not None, name
        taken = dict(config.encoder_cfg.input_modalities)
        served = {m: [b for b in bands if b != "B10"] for m, bands in preset.modalities.items() if m != "sentinel1"}
        assert {m: list(b) for m, b in taken.items()} == served, name
        reason, fills = applicability(taken, preset)
        assert reason == "" and fills == {}, (name, reason)
        processor, side = task_processor(source, config, preset.patch_size)
        assert side == preset.patch_size - preset.patch_size % int(config.encoder_cfg.patch_size) and side > 0
        rng = np.random.default_rng(0)
        images = {m: rng.uniform(0, 255, (2, len(b), preset.patch_size, preset.patch_size)).astype(np.float32)
                  for m, b in preset.modalities.items() if m in served}  # fmt: skip
        out = BandFilling(processor, fills)(images, band_names={m: list(preset.modalities[m]) for m in images})
        for modality, bands in served.items():
            assert tuple(out["pixel_values"][modality].shape) == (2, len(bands), side, side), (name, modality)
            assert torch.isfinite(out["pixel_values"][modality]).all()
    # the loop up to reading data (max_new_runs=0 stops right before it), task by task: each one configured
    # (no "not applicable" cell), and exactly the two tasks whose published band names are wrong warned about
    warned: dict[str, list[str]] = {}
    for name in PRESETS:
        logged: list[str] = []
        report = run_benchmark("knn", [name], [source], tmp_path, seeds=[0], preset="smoke", root=str(tmp_path),
                               max_new_runs=0, log=logged.append)  # fmt: skip
        assert report.stopped_early and not report.computed and not report.cells, name
        warned[name] = [line for line in logged if line.startswith("warning:")]
    assert {n for n, w in warned.items() if w} == {"m-eurosat", "m-brick-kiln"}
    assert "issue #28" in warned["m-eurosat"][0] and "issue #29" in warned["m-brick-kiln"][0]


def test_shuffled_labels_is_a_seeded_derangement_keeping_the_marginal() -> None:
    from modeling_geomeld.evaluation.geobench_protocols import TaskData, shuffled_labels

    labels = torch.arange(40) % 3
    data = TaskData({"sentinel2": torch.arange(40.0)[:, None]}, labels)
    a, b = shuffled_labels(data, 0), shuffled_labels(data, 0)
    assert torch.equal(a.labels, b.labels) and not torch.equal(a.labels, shuffled_labels(data, 1).labels)
    assert torch.equal(torch.bincount(a.labels), torch.bincount(labels))
    ids = TaskData(data.pixel_values, torch.arange(40))
    moved = shuffled_labels(ids, 3).labels
    assert sorted(moved.tolist()) == list(range(40)) and bool((moved != torch.arange(40)).all())  # no fixed point
    assert a.pixel_values is data.pixel_values


@pytest.mark.parametrize("protocol", ["knn", "frozen"])
def test_shuffled_label_control_does_not_beat_knowing_nothing(protocol: str, official_root: Path, tmp_path: Path) -> None:
    """m-cashew-plant (official writer, real pixels): trained on shuffled labels, each protocol stays within the
    knows-nothing baselines' upper bounds, while the same encoder on the true labels is above them (so the
    check can tell the two apart on this task)."""
    report = run_benchmark(protocol, ["m-cashew-plant"], [parse_checkpoint("random:tiny")], tmp_path, seeds=[0, 1],
                           preset="smoke", root=str(official_root), controls=True, log=lambda _: None)  # fmt: skip
    cells = _cells(report)
    assert len(report.controls) == len(COLUMNS[protocol])
    for verdict in report.controls:
        assert verdict["passes"] and not verdict["beats_majority"], verdict
        bound = max(verdict["majority_interval"][1], verdict["prior_sampled_interval"][1])
        assert cells[("random init (tiny)", "m-cashew-plant", verdict["column"])].mean > bound + 0.05
    assert "| random init (tiny), shuffled train labels |" in report.table and "| label prior, sampled |" in report.table
    assert json.loads((tmp_path / "results.json").read_text())["controls"] == report.controls
