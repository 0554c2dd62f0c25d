"""Concurrent clients against a running Space, mixing every endpoint: latency percentiles and unexpected errors
(used by tests and benchmarks)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
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
    kinds: dict[str, int] = field(default_factory=dict)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "queries_per_client": self.queries_per_client,
            "requests": len(self.latencies_s) + len(self.errors),
            "errors": len(self.errors),
            "answered_by_kind": dict(self.kinds),
            "first_errors": self.errors[:5],
            "p50_s": self.percentile(50),
            "p95_s": self.percentile(95),
            "max_s": max(self.latencies_s, default=float("nan")),
            "wall_s": self.wall_s,
            "requests_per_s": (len(self.latencies_s) / self.wall_s) if self.wall_s else float("nan"),
        }


#: the mix of one client's requests, in turn: two searches, then a sample panel, image -> text, a mistake
MIX = ("search", "sample", "search", "image_to_text", "bad_query")
ERROR_MARK = "⚠️"


def run_load(
    url: str, clients: int = 30, queries_per_client: int = 10, k: int = 8, queries: Sequence[str] = DEFAULT_QUERIES,
    mix: Sequence[str] = MIX,
) -> LoadReport:  # fmt: skip
    """``clients`` threads, each with its own ``gradio_client.Client``, each making ``queries_per_client``
    requests back to back once all clients have connected, cycling through ``mix``; every latency and every
    unexpected error is recorded.

    * ``search``: text -> image, timed as a browser sees it: the call, then every thumbnail of the gallery
      fetched over the client's kept-alive connection (``gradio_client``'s own downloader opens a connection
      and a temporary folder per file, which would measure the test client rather than the Space);
    * ``sample``: the detail panel of the client's last hit (every modality picture, map and facts);
    * ``image_to_text``: captions and similar images for that sample;
    * ``bad_query``: an empty query, whose *expected* answer is the Space's message in the status area.

    Unexpected: an exception, a status that reports an internal error, a missing or wrong-sized result.
    """
    import httpx
    from gradio_client import Client

    unknown = sorted(set(mix) - {"search", "sample", "image_to_text", "bad_query"})
    if unknown or not mix:
        raise ValueError(f"expected a mix of search, sample, image_to_text, bad_query; found {list(mix)}")
    report = LoadReport(clients, queries_per_client)
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)

    def fetch_png(http: Any, url: str) -> None:
        response = http.get(url)
        response.raise_for_status()
        if not response.content.startswith(b"\x89PNG"):
            raise RuntimeError(f"expected a PNG, found {response.content[:8]!r}")

    def check_status(status: str, expect_error: bool) -> None:
        failed = str(status or "").startswith(ERROR_MARK)
        if failed != expect_error or "internal error" in str(status):
            raise RuntimeError(f"unexpected status {status!r}")

    def worker(i: int) -> None:
        try:
            client = Client(url, verbose=False, download_files=False)
        except Exception as err:  # a failed connection is a recorded error, not a crash
            with lock:
                report.errors.append(f"client {i} could not connect: {err}")
            ready.wait()
            return
        ready.wait()
        last_tile: str | None = None
        with httpx.Client(timeout=60) as http:
            for j in range(queries_per_client):
                kind = mix[(i + j) % len(mix)]
                if kind in ("sample", "image_to_text") and last_tile is None:
                    kind = "search"
                query = queries[(i + j) % len(queries)]
                start = time.perf_counter()
                try:
                    if kind == "search":
                        gallery, status = _search(client, query, k)
                        check_status(status, False)
                        if len(gallery) != k:
                            raise RuntimeError(f"expected {k} results, found {len(gallery)}")
                        for item in gallery:
                            fetch_png(http, item["image"]["url"])
                        last_tile = _tile_of(gallery[j % len(gallery)])
                    elif kind == "sample":
                        tile, _, panels, _, _, where, status = client.predict(last_tile, api_name="/sample")
                        check_status(status, False)
                        if tile != last_tile or not panels:
                            raise RuntimeError(f"expected the panels of {last_tile}, found {tile!r} with {len(panels or [])}")
                        fetch_png(http, panels[0]["image"]["url"])
                        if where:
                            fetch_png(http, where["url"])
                    elif kind == "image_to_text":
                        table, similar, _, _, status = client.predict(
                            "selected sample", None, "Sentinel-2 L2A", "all inputs", last_tile, 4, api_name="/image_to_text"
                        )
                        check_status(status, False)
                        if len(table["data"]) != 4 or len(similar) != 4:
                            raise RuntimeError(f"expected 4 captions and 4 images, found {len(table['data'])} and {len(similar)}")
                    else:
                        _, status = _search(client, "   ", k)
                        check_status(status, True)
                except Exception as err:  # any failure is a recorded error
                    with lock:
                        report.errors.append(f"client {i} request {j} ({kind}): {type(err).__name__}: {err}")
                    continue
                with lock:
                    report.latencies_s.append(time.perf_counter() - start)
                    report.kinds[kind] = report.kinds.get(kind, 0) + 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    report.wall_s = time.perf_counter() - started
    return report


def _search(client: Any, query: str, k: int) -> tuple[Any, str]:
    """The /search endpoint: gallery and status (the hits' tile ids are a State, which the API does not return)."""
    gallery, status = client.predict(query, k, [], "", "", "", api_name="/search")
    return gallery, status


def _tile_of(item: Mapping[str, Any]) -> str | None:
    """The tile id in a thumbnail's file name (``<hash>_<tile>_thumbnail.png``, see ``SampleStore.picture``)."""
    name = Path(str(item["image"].get("path") or item["image"]["url"])).name
    parts = name.split("_", 1)
    return parts[1].removesuffix("_thumbnail.png") if len(parts) == 2 else None


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
    # uploads land next to the log, not in the machine-wide /tmp/gradio, so a test can see that they are deleted
    env.setdefault("GRADIO_TEMP_DIR", str(Path(log).resolve().parent / "gradio-uploads"))
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
