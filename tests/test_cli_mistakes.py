"""Every `geomeld` command answers a user's common mistakes with one line saying what to do, exit code 2 and
no traceback (through `modeling_geomeld.cli.main`, as the `geomeld` script runs it; one run through the
installed script in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modeling_geomeld.cli import main

NOWHERE = "/nonexistent/geomeld"


def _cases(tmp: Path) -> list[tuple[list[str], str]]:
    empty = tmp / "empty"
    empty.mkdir(exist_ok=True)
    (tmp / "ds" / "data" / "default").mkdir(parents=True, exist_ok=True)  # looks built: the --resume check is reached
    (tmp / "ds" / "data" / "default" / "train-00000.parquet").write_bytes(b"")
    return [
        (["pretrain", "--dataset", NOWHERE, "--output-dir", str(tmp / "o")], "dataset folder /nonexistent/geomeld does not exist"),
        (["pretrain", "--dataset", str(empty), "--output-dir", str(tmp / "o")], "holds no Parquet shards"),
        (["pretrain", "--dataset", "someone/geomeld-data", "--output-dir", str(tmp / "o")], "the hub is offline"),
        (["finetune", "--task", "no-such-task"], "unknown task 'no-such-task'"),
        (["finetune", "--task", "geobench:m-bigearthnet"], "no GEO-Bench data root"),
        (["finetune", "--task", "geobench:m-nothing", "--data-root", str(empty)], "unknown GEO-Bench task"),
        (["finetune", "--task", "terramind-landcover"], "needs the samples folder"),
        (["finetune", "--task", "terramind-landcover", "--data-root", NOWHERE], "terramind samples not found"),
        (["finetune", "--checkpoint", NOWHERE], "checkpoint /nonexistent/geomeld does not exist"),
        (["finetune", "--checkpoint", "someone/geomeld-fm"], "the hub is offline"),
        (["finetune", "--stats", "dataset:" + NOWHERE, "--task", "terramind-landcover"], "is not a folder"),
        (["finetune", "--stats", "task", "--task", "terramind-landcover"], "has no statistics file of its own"),
        (["finetune", "--stats", "mine"], "expected checkpoint, task or dataset:DIR"),
        (["pretrain", "--dataset", str(tmp / "ds"), "--output-dir", str(tmp / "fresh"), "--resume"], "no checkpoint-N folder"),
        (["stats", NOWHERE], "expected Parquet shards"),
        (["card", NOWHERE], NOWHERE),
        (["build", "--source", f"manifest:{NOWHERE}.csv", "--out", str(tmp / "b")], NOWHERE),
        (["caption", NOWHERE], NOWHERE),
        (["verify-caption", "--dataset", NOWHERE, "--tile-id", "x", "--caption", "a field"], NOWHERE),
        (["index", "--checkpoint", NOWHERE, "--dataset", NOWHERE, "--out", str(tmp / "i")], "does not exist"),
        (["eval-retrieval", "--checkpoint", NOWHERE, "--dataset", NOWHERE], "does not exist"),
        (["serve", "--checkpoint", NOWHERE, "--index", NOWHERE, "--dataset", NOWHERE], "found nothing"),
        (["demo", "--manifest", NOWHERE, "--out", str(tmp / "d"), "--no-serve"], NOWHERE),
    ]


def test_every_commands_common_mistakes_get_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEO_BENCH_DIR", raising=False)
    monkeypatch.delenv("GEOMELD_TERRAMIND_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    failures = []
    for argv, expected in _cases(tmp_path):
        capsys.readouterr()
        try:
            code = main(argv)
        except BaseException as err:
            failures.append(f"{argv[0]} {argv[1:]}: raised {type(err).__name__}: {err}")
            continue
        err = capsys.readouterr().err.strip()
        lines = err.splitlines()
        if code != 2 or len(lines) != 1 or expected not in err or not lines[0].startswith(f"geomeld {argv[0]}: error: "):
            failures.append(f"{argv}: exit {code}, stderr {err!r}")
    assert not failures, "\n".join(failures)


def test_the_installed_script_prints_one_line_without_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("geomeld")
    if not script.is_file():
        pytest.skip(f"the geomeld script is not installed next to {sys.executable}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(script), "pretrain", "--dataset", NOWHERE, "--output-dir", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"geomeld pretrain: error: dataset folder {NOWHERE} does not exist; pass a folder made by `geomeld build` or a hub id"
    ]
