"""The builder on a real cluster of separate processes started with Dask's own command-line tools.

``dask scheduler`` and two ``dask worker`` processes on loopback (free ports), the build submitted through
``--scheduler``: the shards must equal an in-process build byte for byte, and a worker killed (SIGKILL)
while it processes a shard must cost nothing but time: the scheduler hands its shard to the other worker,
the redone shard writes the same bytes, and no anchor is built twice. Every process is stopped at the end,
also when the test fails.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from dataset_scripts.build import BUILD_DIR, BuildOptions, build
from dataset_scripts.terramind import write_terramind_manifest

DASK = Path(sys.executable).with_name("dask")
LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def dask_cli_cluster(logs: Path, workers: int = 2) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """``dask scheduler`` + ``workers`` x ``dask worker --no-nanny`` (one process each, one thread each)."""
    if not DASK.is_file():
        pytest.skip(f"Dask's command-line tool not found next to the interpreter ({DASK})")
    address = f"tcp://{LOOPBACK}:{_free_port()}"
    with ExitStack() as stack:

        def start(name: str, args: list[str]) -> subprocess.Popen[bytes]:
            log = stack.enter_context((logs / f"{name}.log").open("wb"))
            proc = subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT)
            stack.callback(_stop, proc)  # stopped last-started first, whatever happens in the test
            return proc

        start(
            "scheduler",
            ["scheduler", "--host", LOOPBACK, "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
        )
        procs = [
            start(f"worker{i}", ["worker", address, "--host", LOOPBACK, "--nthreads", "1", "--no-nanny",
                                 "--no-dashboard", "--name", f"w{i}", "--memory-limit", "0", "--death-timeout", "60"])
            for i in range(workers)
        ]  # fmt: skip
        yield address, procs


def _files(root: Path) -> dict[str, bytes]:
    """The build's reproducible bytes: shards, markers, plan and the manifest (not the report: it has timings)."""
    keep = ("data", BUILD_DIR, "build_manifest.json")
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] in keep and p.name != "build_report.json"
    }


def _kill_a_busy_worker(
    client: Any, root: Path, procs: list[subprocess.Popen[bytes]], deadline: float
) -> str:
    """Once a shard is finished, SIGKILL a worker while it processes another; returns the key it held.

    Workers are found by the ``--name w<i>`` they were started with (no nanny: the process is the worker).
    """
    while time.monotonic() < deadline:
        if any((root / BUILD_DIR).glob("shard-*.json")):
            info = client.scheduler_info()["workers"]
            for addr, keys in client.processing().items():
                if keys and addr in info:
                    procs[int(str(info[addr]["name"])[1:])].send_signal(signal.SIGKILL)
                    return str(keys[0])
        time.sleep(0.02)
    raise AssertionError("no worker was busy with a shard before the deadline")


def test_a_cli_started_cluster_builds_the_same_bytes_and_survives_a_killed_worker(
    terramind_dir: Path, tmp_path: Path
) -> None:
    from distributed import Client

    manifest = write_terramind_manifest(terramind_dir, tmp_path / "m.csv", copies=2)  # 10 anchors
    common: dict[str, Any] = {"shard_size": 1, "progress": False}
    local = build(f"manifest:{manifest}", tmp_path / "local", BuildOptions(workers=0, **common))
    assert local.built == 10
    logs = tmp_path / "logs"
    logs.mkdir()
    out = tmp_path / "cluster"
    with dask_cli_cluster(logs) as (address, procs), Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=60)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["report"] = build(
                    f"manifest:{manifest}", out, BuildOptions(scheduler=address, **common)
                )
            except BaseException as err:  # re-raised in the test's thread
                result["error"] = err

        builder = threading.Thread(target=run, daemon=True)
        builder.start()
        killed_key = _kill_a_busy_worker(client, out, procs, time.monotonic() + 60)
        builder.join(timeout=90)
        assert not builder.is_alive(), "the build did not finish after a worker was killed"
        if "error" in result:
            raise result["error"]
        assert sum(p.poll() is not None for p in procs) == 1, "exactly the killed worker is gone"
        # the scheduler's own record of the killed worker's shard: taken back when the worker died, redone once
        moves = [(e[2], e[3], e[5]) for e in client.story(killed_key) if e[0] == "scheduler"]
        lost = [
            i
            for i, (a, b, why) in enumerate(moves)
            if (a, b) == ("processing", "released") and why.startswith("handle-worker-cleanup")
        ]
        assert lost, moves
        assert [(a, b) for a, b, _ in moves[lost[0] :]].count(("processing", "memory")) == 1, moves
        survivor_modules = client.run(
            lambda: sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers"})
        )
        assert list(survivor_modules.values()) == [[]], f"a cluster worker imported {survivor_modules}"

    report = result["report"]
    assert killed_key.startswith("process_shard")
    assert report.execution["mode"] == "scheduler" and report.execution["workers"] == 2
    assert (report.built, report.failed_shards, report.quarantined) == (10, [], {})
    assert report.profile["anchors"] == 10
    ids = [
        t
        for f in sorted((out / "data").rglob("*.parquet"))
        for t in pq.read_table(f, columns=["tile_id"])["tile_id"].to_pylist()
    ]
    assert len(ids) == len(set(ids)) == 10, "an anchor was built twice"
    assert not list(out.rglob("*.tmp")), "a killed worker's temporary file survived"
    assert _files(out) == _files(tmp_path / "local")
