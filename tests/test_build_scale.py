"""The builder at scale: a worker's imports (no torch, no transformers), the shard schema without datasets,
``--workers auto`` and the per-stage cost profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_scripts.build import AUTO_MIN_ANCHORS, AUTO_MIN_CPUS, BUILD_DIR, BuildOptions, choose_execution
from dataset_scripts.hf_features import features_metadata
from dataset_scripts.profile import STAGES
from dataset_scripts.writer import _PLAIN_SCHEMA, SCHEMA

#: the model stack a builder process must never pay for (4-8 s of torch per worker, measured in issue 18);
#: pandas is not listed: pyarrow imports it itself on the first ``pa.array`` from Python lists (writing a shard)
MODEL_STACK = ("torch", "transformers", "datasets")

_FRESH_BUILD = r"""
import json, sys, time
t0 = time.perf_counter()
import dataset_scripts.build as b
import dataset_scripts.captions.pipeline  # the template caption stage of --caption
import_s = time.perf_counter() - t0
from dataset_scripts.terramind import write_terramind_manifest
root, out = sys.argv[1], sys.argv[2]
manifest = write_terramind_manifest(root, out + "/m.csv")
report = b.build(f"manifest:{manifest}", out + "/built", b.BuildOptions(progress=False, caption=True))
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3].split(",")))
registry = sys.modules["modeling_geomeld.modalities"]
import modeling_geomeld  # model users still get the Auto classes, and the builder's registry object
from transformers import AutoConfig
print(json.dumps({
    "import_s": import_s, "built": report.built, "loaded": loaded,
    "execution": report.execution, "profile": report.profile,
    "same_registry": modeling_geomeld.modalities is registry and b.align.__globals__["MODALITIES"] is modeling_geomeld.MODALITIES,
    "auto": type(AutoConfig.for_model("geomeld")).__name__,
}))
"""


def test_a_fresh_builder_process_imports_no_model_stack_and_model_users_still_get_auto_classes(
    terramind_dir: Path, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH_BUILD, str(terramind_dir), str(tmp_path), ",".join(MODEL_STACK)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["built"] == 5
    assert result["loaded"] == [], f"a build (captions included) imported {result['loaded']}"
    # well under a second unloaded (0.7-0.8 s at load average 15 on 2 cores); torch alone takes 4-8 s there
    assert result["import_s"] < 2.0, result
    assert result["same_registry"] and result["auto"] == "GeoMeldConfig"
    # the default, --workers auto: five anchors are far below where worker start-up pays off
    assert result["execution"]["mode"] == "in-process", result["execution"]
    assert (
        result["execution"]["reason"]
        == f"auto: 5 anchors to build, fewer than the {AUTO_MIN_ANCHORS} where starting workers pays off"
    )
    _check_profile(result["profile"], anchors=5, captions=True)
    report = json.loads((tmp_path / "built" / "build_report.json").read_text())
    assert report["profile"] == result["profile"] and report["execution"] == result["execution"]
    markers = [json.loads(p.read_text()) for p in (tmp_path / "built" / BUILD_DIR).glob("shard-*.json")]
    assert markers and all("profile" not in m for m in markers), "timings would make markers irreproducible"


def _check_profile(profile: dict, anchors: int, captions: bool) -> None:
    assert profile["anchors"] == anchors and tuple(profile["stages"]) == STAGES
    stages = profile["stages"]
    timed = {"read", "reproject", "signals", "encode", "write", "other"} | (
        {"captions"} if captions else set()
    )
    assert {n for n, s in stages.items() if s["s_per_anchor"] > 0} == timed, stages
    assert sum(s["share"] for s in stages.values()) == pytest.approx(1.0, abs=0.002)
    assert sum(s["s_per_anchor"] for s in stages.values()) * anchors == pytest.approx(
        profile["seconds"], rel=0.01
    )
    # the five TerraMesh anchors each open S2 L2A, S1, DEM and LULC; each window is the 128 px footprint plus
    # the resampling margin: S2 12 x int16, S1 2 x float64, DEM int16, LULC uint8 per pixel
    assert profile["per_anchor"]["files_opened"] == 4
    footprint = 128 * 128 * (12 * 2 + 2 * 8 + 2 + 1)
    assert footprint <= profile["per_anchor"]["window_bytes"] <= 1.15 * footprint, profile["per_anchor"]


def _options(**kw: object) -> BuildOptions:
    return BuildOptions(progress=False, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "pending", "ended", "shards", "cpus", "expected"),
    [
        (_options(), AUTO_MIN_ANCHORS - 1, True, 9, 16, ("in-process", 0)),
        (_options(), AUTO_MIN_ANCHORS, True, 9, AUTO_MIN_CPUS, ("local processes", AUTO_MIN_CPUS)),
        (_options(), AUTO_MIN_ANCHORS, True, 1, 16, ("in-process", 0)),  # one shard: no one to share it with
        (_options(), AUTO_MIN_ANCHORS, True, 3, 16, ("local processes", 3)),  # no idle workers started
        (_options(), AUTO_MIN_ANCHORS, False, 1, 16, ("local processes", 16)),  # more to come: one per CPU
        (_options(processes=False), 10**6, False, 1, 4, ("local threads", 4)),
        (_options(), 10**6, False, 1, 1, ("in-process", 0)),  # one CPU
        (_options(), 10**6, False, 1, 2, ("in-process", 0)),  # two: measured slower than in-process
        (_options(workers=0), 10**6, False, 1, 16, ("in-process", 0)),
        (_options(workers=3), 1, True, 1, 16, ("local processes", 3)),  # what the user asked for
        (_options(scheduler="tcp://127.0.0.1:1"), 0, False, 0, 1, ("scheduler", 0)),
    ],
)
def test_workers_auto_builds_in_process_below_the_measured_size_and_says_why(
    options: BuildOptions, pending: int, ended: bool, shards: int, cpus: int, expected: tuple[str, int]
) -> None:
    execution = choose_execution(options, pending, ended, shards, cpus)
    assert (execution.mode, execution.workers) == expected
    assert execution.reason.startswith(
        "auto: " if options.workers == "auto" and not options.scheduler else "--"
    )


def test_the_cli_takes_workers_auto_or_a_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dataset_scripts.cli import _build_options
    from modeling_geomeld.cli import build_parser

    args = build_parser().parse_args(["build", "--source", "manifest:m.csv", "--out", str(tmp_path)])
    assert _build_options(args).workers == "auto"
    args = build_parser().parse_args(
        ["build", "--source", "manifest:m.csv", "--out", str(tmp_path), "--workers", "3"]
    )
    assert _build_options(args).workers == 3
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(
            ["build", "--source", "manifest:m.csv", "--out", str(tmp_path), "--workers", "many"]
        )
    assert (
        exit_info.value.code == 2
        and "--workers: expected auto or a number of workers, found 'many'" in capsys.readouterr().err
    )


def test_the_shard_schema_carries_the_features_datasets_itself_writes() -> None:
    from datasets import Features, Image

    features = Features.from_arrow_schema(_PLAIN_SCHEMA)
    features["thumbnail"] = Image(decode=False)
    assert SCHEMA.metadata[b"huggingface"] == features.arrow_schema.metadata[b"huggingface"]
    assert json.loads(SCHEMA.metadata[b"huggingface"]) == {"info": {"features": features.to_dict()}}


def test_an_unknown_column_type_is_named() -> None:
    import pyarrow as pa

    with pytest.raises(ValueError, match=r"column 'when': expected one of .* found timestamp\[s\]"):
        features_metadata(pa.schema([pa.field("when", pa.timestamp("s"))]), {})


_ENTRY_SCRIPT = """import os, sys
with open(os.environ["GEOMELD_TEST_MARK"], "a") as f:  # what the real script's model import would cost
    f.write(f"{os.getpid()}\\n")
if __name__ == "__main__":
    from dataset_scripts.build import BuildOptions, build
    from dataset_scripts.terramind import write_terramind_manifest
    manifest = write_terramind_manifest(sys.argv[1], sys.argv[2] + "/m.csv")
    report = build(f"manifest:{manifest}", sys.argv[2] + "/out", BuildOptions(workers=2, shard_size=2, progress=False))
    print(report.built)
"""


def test_local_workers_do_not_rerun_the_geomeld_console_script(terramind_dir: Path, tmp_path: Path) -> None:
    # spawn re-imports the parent's main script in every worker; `geomeld`'s imports the model (torch). A
    # script of the same name counts its imports: only the parent's (the same script under another name
    # is imported three times, parent and both workers: standard multiprocessing behaviour, left alone)
    script, mark = tmp_path / "geomeld", tmp_path / "imports.txt"
    script.write_text(_ENTRY_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(terramind_dir), str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "GEOMELD_TEST_MARK": str(mark)},
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.split()[-1] == "5", proc.stderr[-3000:]
    assert len(mark.read_text().split()) == 1, f"the script ran in {mark.read_text().split()}"
