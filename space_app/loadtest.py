"""Concurrent clients against a running Space: latency percentiles and errors (used by tests and benchmarks)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_QUERIES = (
    "snow-covered lowlands with frozen lakes",
    "a river winding through forest",
    "cropland and scattered trees",
    "a coastal town by the sea",
    "dry grass and scrub on a plateau",
    "flat farmland",
    "mountains with steep slopes",
    "wetland near the coast",
    "bare ground and sparse vegetation",
    "a lake surrounded by trees",
)


@dataclass
class LoadReport:
    clients: int
    queries_per_client: int
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "queries_per_client": self.queries_per_client,
            "requests": len(self.latencies_s) + len(self.errors),
            "errors": len(self.errors),
            "first_errors": self.errors[:5],
            "p50_s": self.percentile(50),
            "p95_s": self.percentile(95),
            "max_s": max(self.latencies_s, default=float("nan")),
            "wall_s": self.wall_s,
            "requests_per_s": (len(self.latencies_s) / self.wall_s) if self.wall_s else float("nan"),
        }


def run_load(url: str, clients: int = 20, queries_per_client: int = 10, k: int = 8, queries: Sequence[str] = DEFAULT_QUERIES) -> LoadReport:
    """``clients`` threads, each with its own ``gradio_client.Client``, each running ``queries_per_client``
    text searches back to back once all clients have connected; every latency and error is recorded.

    A request is timed as a browser sees it: the search call, then every thumbnail of the gallery fetched
    over the client's kept-alive connection (``gradio_client``'s own downloader opens a connection and a
    temporary folder per file, which would measure the test client rather than the Space).
    """
    import httpx
    from gradio_client import Client

    report = LoadReport(clients, queries_per_client)
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        try:
            client = Client(url, verbose=False, download_files=False)
        except Exception as err:  # a failed connection is a recorded error, not a crash
            with lock:
                report.errors.append(f"client {i} could not connect: {err}")
            ready.wait()
            return
        ready.wait()
        with httpx.Client(timeout=60) as http:
            for j in range(queries_per_client):
                query = queries[(i + j) % len(queries)]
                start = time.perf_counter()
                try:
                    gallery, _ = client.predict(query, k, [], "", "", "", api_name="/search")
                    if len(gallery) != k:
                        raise RuntimeError(f"expected {k} results, found {len(gallery)}")
                    for item in gallery:
                        response = http.get(item["image"]["url"])
                        response.raise_for_status()
                        if not response.content.startswith(b"\x89PNG"):
                            raise RuntimeError(f"expected a PNG thumbnail, found {response.content[:8]!r}")
                except Exception as err:  # any failure is a recorded error
                    with lock:
                        report.errors.append(f"client {i} query {j}: {type(err).__name__}: {err}")
                    continue
                with lock:
                    report.latencies_s.append(time.perf_counter() - start)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    report.wall_s = time.perf_counter() - started
    return report


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(checkpoint: str | Path, index: str | Path, dataset: str | Path, log: str | Path, timeout_s: float = 180) -> tuple[subprocess.Popen, str]:
    """`geomeld serve` in its own process on a free loopback port, paths passed through the ``GEOMELD_*``
    environment variables the Space reads; returns the process and its URL once it answers.

    Its own process, as in production: load-generating clients must not share the server's interpreter lock.
    """
    import os
    import sys
    import urllib.request

    port = free_port()
    env = dict(os.environ, GEOMELD_CHECKPOINT=str(checkpoint), GEOMELD_INDEX=str(index), GEOMELD_DATASET=str(dataset))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "modeling_geomeld.cli", "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return server, url
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                stop_server(server)
                tail = Path(log).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"`geomeld serve` did not come up on {url}; its log ends with:\n{tail}") from None
            time.sleep(0.5)


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
