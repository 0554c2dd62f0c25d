"""``geomeld build``: anchors from a source -> aligned samples -> signals -> Parquet shards, on Dask.

The unit of work is a *shard*: ``shard_size`` consecutive anchors of the source. A Dask task aligns each
anchor (:func:`dataset_scripts.align.align`), computes its signals, assigns its split by spatial block and
writes the shard's rows to ``DIR/.geomeld_build/data/<naip|non_naip>/<split>-<shard>.parquet`` (temporary
name, then rename), then a marker ``DIR/.geomeld_build/shard-<shard>.json`` with what it built and quarantined. A shard
counts as finished only once its marker exists, so ``--resume`` skips exactly the finished shards and
redoes a shard interrupted half-way; since a shard's rows are sorted and written without timestamps, the
redone shard is byte-identical to an uninterrupted build's.

Bad input raises :class:`~dataset_scripts.types.QuarantineError` inside a task: the anchor is recorded
with its reason and the shard goes on (``strict`` re-raises instead and the build stops). Any other
exception while processing one anchor (a bug, or input no check foresaw) quarantines that anchor alone as
``internal`` with ``internal: <type>: <message>`` and its files, never its shard-mates; only a failure
outside the anchors (writing the shard) fails the shard, which ``--resume`` retries. Anchor ids seen twice
are quarantined as ``duplicate_anchor`` here, whatever the source.

Where things live while building: the plan, the shard markers and the shards themselves are written under
the hidden ``DIR/.geomeld_build/`` (``datasets`` ignores hidden folders, so neither a plan-only folder nor an
interrupted build loads as data). Once every shard is finished, :func:`finalize` moves the shards to
``DIR/data/<subset>/<split>-<shard>-<fingerprint>.parquet`` (the fingerprint hashes every shard's bytes, and
the card's configs name it, so ``datasets``' cache, keyed by folder name and configs, can never hand back
another build's rows), writes the card and, last, ``DIR/build_manifest.json`` with every file's sha256:
the completed-build marker (:mod:`dataset_scripts.integrity`).

Where shards run (:func:`choose_execution`, recorded with its reason in the report's ``execution``):
in-process, on local Dask worker processes, or on an existing cluster (``--scheduler``). The default
``--workers auto`` stays in-process below :data:`AUTO_MIN_ANCHORS` anchors (or :data:`AUTO_MIN_CPUS` CPUs), where starting workers costs
more than they save. Builder processes never import torch or transformers (:mod:`dataset_scripts.registry`),
so a worker starts in about a second. The report's ``profile`` gives each stage's seconds per anchor and
share (:mod:`dataset_scripts.profile`), the input of ``benchmarks/bench_build.py``'s projection.

An existing non-empty ``--out`` is refused unless ``--resume`` (finish the GeoMeld build there) or
``--overwrite`` (remove everything in it first, so nothing of the old build survives).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .align import AlignConfig, align
from .errors import UsageError
from .integrity import MANIFEST_NAME, fingerprint, sha256_file, write_manifest
from .profile import add as add_seconds
from .profile import collect, stage
from .profile import lines as profile_lines
from .profile import table as profile_table
from .ranges import check_value_ranges
from .settings import resolve_source_options
from .signals import compute_signals, signal_columns
from .sources import open_source
from .types import AlignedSample, AnchorRequest, QuarantineError
from .writer import sample_row, shard_file, spatial_split, write_shard

#: the hidden folder holding the plan, the shard markers and the shards of a build not yet finalised
BUILD_DIR = ".geomeld_build"

Item = AnchorRequest | AlignedSample


@dataclass(frozen=True)
class BuildOptions:
    """How to run a build.

    Attributes:
        shard_size: anchors per shard (the unit of work and of resumption).
        workers: local Dask workers; 0 runs in this process without Dask; ``"auto"`` (the default) runs
            in-process below :data:`AUTO_MIN_ANCHORS` anchors to build (or :data:`AUTO_MIN_CPUS` CPUs), else one local worker
            per CPU (:func:`choose_execution`). Ignored with ``scheduler``.
        scheduler: address of an existing Dask scheduler (``tcp://host:8786``).
        processes: local workers as processes (GDAL and numpy release the GIL only in part) or threads.
        resume: skip shards whose marker says they are finished.
        overwrite: empty a non-empty output folder first (otherwise it is refused, unless ``resume``).
        check_ranges: quarantine samples whose values are implausible for their product
            (:data:`dataset_scripts.ranges.VALUE_RANGES`: wrong units, untagged fill values).
        strict: stop at the first bad input instead of quarantining it.
        block_deg: side of the spatial blocks that decide splits, degrees.
        split_fractions: train / validation / test shares of blocks.
        progress: show a tqdm progress bar.
        align: the alignment protocol's settings.
        caption: caption every sample with the grounded template captioner as it is built (verified
            against its own signals; `geomeld caption` re-captions a built dataset with other captioners).
    """

    shard_size: int = 64
    workers: int | Literal["auto"] = "auto"
    scheduler: str | None = None
    processes: bool = True
    resume: bool = False
    overwrite: bool = False
    check_ranges: bool = True
    strict: bool = False
    block_deg: float = 0.5
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    progress: bool = True
    align: AlignConfig = field(default_factory=AlignConfig)
    caption: bool = False

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, found {self.shard_size}")
        if self.workers != "auto" and (not isinstance(self.workers, int) or self.workers < 0):
            raise ValueError(f"workers must be 'auto', 0 (no Dask) or more, found {self.workers!r}")
        if self.block_deg <= 0:
            raise ValueError(f"block_deg must be positive, found {self.block_deg}")
        if self.resume and self.overwrite:
            raise UsageError(
                "expected either resume (keep finished shards) or overwrite (remove them), found both"
            )


class BuildError(RuntimeError):
    """The build could not finish: shards failed (resume retries them) or nothing was built."""


# -- one shard ------------------------------------------------------------------------------------------------
def marker_path(root: Path, shard: int) -> Path:
    return root / BUILD_DIR / f"shard-{shard:05d}.json"


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _record(anchor_id: str, err: QuarantineError) -> dict[str, str]:
    return {"anchor_id": anchor_id, "reason": err.reason, "message": str(err)}


def _check_location(sample: AlignedSample) -> None:
    """Splits and places need a location; a pre-aligned sample (the release) may lack one."""
    lat, lon = sample.metadata.get("lat"), sample.metadata.get("lon")
    try:
        ok = lat is not None and lon is not None and -90 <= float(lat) <= 90 and -180 <= float(lon) <= 180
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise QuarantineError(
            "missing_location",
            f"sample {sample.tile_id!r}: expected lat/lon in degrees, found lat={lat!r}, lon={lon!r}",
        )


def _files_of(item: Item) -> str:
    """The files an anchor reads, for a quarantine record (the release names its shard member)."""
    if isinstance(item, AnchorRequest):
        return ", ".join(dict.fromkeys(layer.path for layer in item.layers))
    meta = item.metadata
    return str(meta.get("source_file") or meta.get("path") or meta.get("member") or "")


def _internal(item: Item, anchor_id: str, err: Exception) -> dict[str, str]:
    return {
        "anchor_id": anchor_id,
        "reason": "internal",
        "message": f"internal: {type(err).__name__}: {err}",
        "file": _files_of(item),
    }


def _process_anchor(item: Item, options: BuildOptions) -> tuple[tuple[str, str], dict[str, Any]]:
    """One anchor -> (subset, split) and its row (each stage timed for the report's cost profile)."""
    sample = item if isinstance(item, AlignedSample) else align(item, options.align)
    _check_location(sample)
    if options.check_ranges:
        check_value_ranges(sample)
    with stage("signals"):
        signals = compute_signals(sample)
    split = spatial_split(
        sample.metadata["lat"], sample.metadata["lon"], options.block_deg, options.split_fractions
    )
    with stage("encode"):
        row = sample_row(sample, signals, split, signal_columns(signals))
    if options.caption:  # the grounded template captioner as a build stage (verified; deterministic)
        from .captions.pipeline import caption_aligned_sample

        with stage("captions"):
            row["caption"] = caption_aligned_sample(sample, signals).caption or ""
    return ("naip" if row["has_naip"] else "non_naip", split), row


def process_shard(shard: int, items: Sequence[Item], root: str, options: BuildOptions) -> dict[str, Any]:
    """Align, measure and write one shard; returns its summary (written as the shard's marker) plus ``profile``.

    ``profile`` (seconds per stage, :mod:`dataset_scripts.profile`) is not in the marker: markers are part
    of the build's reproducible bytes, timings never are.
    """
    with collect() as tally:
        summary = _process_shard(shard, items, root, options)
    return {**summary, "profile": tally}


def _process_shard(shard: int, items: Sequence[Item], root: str, options: BuildOptions) -> dict[str, Any]:
    out = Path(root)
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    quarantined: list[dict[str, str]] = []
    for item in items:
        anchor_id = item.tile_id if isinstance(item, AlignedSample) else item.anchor_id
        try:
            key, row = _process_anchor(item, options)
        except QuarantineError as err:
            if options.strict:
                raise
            quarantined.append(_record(anchor_id, err))
            continue
        except (
            Exception
        ) as err:  # one anchor's surprise must not cost its shard-mates (nor fail every resume)
            record = _internal(item, anchor_id, err)
            if options.strict:
                raise QuarantineError(
                    "internal", f"anchor {anchor_id!r} ({record['file']}): {record['message']}"
                ) from err
            quarantined.append(record)
            continue
        rows.setdefault(key, []).append(row)
    files: list[dict[str, Any]] = []
    for (subset, split), group in sorted(rows.items()):
        path = shard_file(out / BUILD_DIR, subset, split, shard)
        with stage("write"):
            write_shard(group, path)
        files.append(
            {"path": path.relative_to(out).as_posix(), "subset": subset, "split": split, "rows": len(group)}
        )
    summary = {
        "shard": shard,
        "anchors": len(items),
        "built": sum(f["rows"] for f in files),
        "files": files,
        "quarantined": quarantined,
    }
    _write_json(marker_path(out, shard), summary)
    return summary


def finished(root: Path, shard: int) -> dict[str, Any] | None:
    """The summary of a finished shard (marker present and all its files there), else ``None``."""
    path = marker_path(root, shard)
    if not path.is_file():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    if not all((root / f["path"]).is_file() for f in summary["files"]):
        return None
    return summary


# -- planning ---------------------------------------------------------------------------------------------------
def _plan(
    items: Iterator[Item], shard_size: int, duplicates: list[dict[str, str]], strict: bool
) -> Iterator[tuple[int, list[Item]]]:
    """Consecutive shards of ``shard_size`` anchors; repeated anchor ids are held back as duplicates."""
    seen: set[str] = set()
    batch: list[Item] = []
    shard = 0
    for item in items:
        anchor_id = item.tile_id if isinstance(item, AlignedSample) else item.anchor_id
        if anchor_id in seen:
            err = QuarantineError(
                "duplicate_anchor", f"anchor id {anchor_id!r}: expected unique ids, found it again"
            )
            if strict:
                raise err
            duplicates.append(_record(anchor_id, err))
            continue
        seen.add(anchor_id)
        batch.append(item)
        if len(batch) == shard_size:
            yield shard, batch
            shard, batch = shard + 1, []
    if batch:
        yield shard, batch


def _clean_temporaries(root: Path) -> None:
    """Remove half-written files of an interrupted run (they never carry a final name)."""
    for tmp in list(root.glob(f"{BUILD_DIR}/data/*/.*.tmp")) + list(root.glob(f"{BUILD_DIR}/.*.tmp")):
        tmp.unlink()


def _prepare_out(root: Path, options: BuildOptions) -> None:
    """Refuse a non-empty output that is not ours to resume; empty it with ``overwrite``."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"--out {root}: expected a folder, found a file")
    entries = sorted(root.iterdir()) if root.is_dir() else []
    if not entries:
        return
    ours = (root / BUILD_DIR / "plan.json").is_file() or (root / MANIFEST_NAME).is_file()
    if options.overwrite:
        import shutil

        for entry in entries:  # everything: an overwrite keeps nothing the new build does not write
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return
    if options.resume and ours:
        return
    names = ", ".join(e.name for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
    raise UsageError(
        f"--out {root}: expected an empty or new folder, found {len(entries)} entries ({names})"
        + ("" if options.resume else "; pass --resume to finish the GeoMeld build there,")
        + (" which is not a GeoMeld build" if options.resume and not ours else "")
        + " or --overwrite to replace its contents"
    )


# -- execution ---------------------------------------------------------------------------------------------------
#: below this many anchors to build, ``--workers auto`` builds in-process: starting local worker processes
#: (cluster ~0.7 s, then each worker's imports and first-call set-up, ~1.5 s) costs more than they save.
#: ``benchmarks/bench_build.py`` measured the break-even of in-process vs 2 local processes, start-up
#: included, at 67 anchors (2 shared CPUs under load); 64 is the shard-size multiple below it
AUTO_MIN_ANCHORS = 64
#: below this many CPUs ``--workers auto`` builds in-process: on 2 shared CPUs, 2 workers (with the driver and
#: the scheduler beside them) measured 0.5-1.06x in-process at 80 anchors across runs, 1 worker ~0.9x
AUTO_MIN_CPUS = 3


@dataclass(frozen=True)
class Execution:
    """Where a build's shards run, and why (the report's ``execution``).

    Attributes:
        mode: ``in-process``, ``local processes``, ``local threads`` or ``scheduler``.
        workers: Dask workers (0 in-process; a scheduler's workers when the build started).
        reason: why this mode, in words.
        startup_s: seconds to start the local cluster or connect to the scheduler (0 in-process).
    """

    mode: str
    workers: int
    reason: str
    startup_s: float = 0.0


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one: containers, ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def choose_execution(
    options: BuildOptions, pending: int, exhausted: bool, shards: int, cpus: int
) -> Execution:
    """The execution for ``options`` given what is left to build.

    ``pending`` anchors in ``shards`` shards were seen; ``exhausted`` says the source ended there (otherwise
    there are at least ``pending``). Only ``workers="auto"`` looks at them.
    """
    local = "local processes" if options.processes else "local threads"
    if options.scheduler:
        return Execution("scheduler", 0, f"--scheduler {options.scheduler}")
    if options.workers != "auto":
        if options.workers == 0:
            return Execution("in-process", 0, "--workers 0")
        return Execution(local, options.workers, f"--workers {options.workers}")
    if exhausted and pending < AUTO_MIN_ANCHORS:
        return Execution(
            "in-process", 0,
            f"auto: {pending} anchors to build, fewer than the {AUTO_MIN_ANCHORS} where starting workers pays off",
        )  # fmt: skip
    if cpus < AUTO_MIN_CPUS:
        return Execution(
            "in-process", 0,
            f"auto: {cpus} CPU(s), fewer than the {AUTO_MIN_CPUS} where worker processes beat this one",
        )  # fmt: skip
    workers = min(cpus, shards) if exhausted else cpus
    if workers < 2:
        return Execution("in-process", 0, f"auto: {shards} shard to build, which one process does best")
    more = "" if exhausted else "at least "
    return Execution(local, workers, f"auto: {more}{pending} anchors to build, one worker per CPU ({cpus})")


def _peek(
    shards: Iterator[tuple[int, list[Item]]], anchors: int
) -> tuple[Iterator[tuple[int, list[Item]]], int, int, bool]:
    """Read shards until ``anchors`` are seen or the plan ends: (the whole plan again, anchors, shards, ended)."""
    head: list[tuple[int, list[Item]]] = []
    seen = 0
    for shard in shards:
        head.append(shard)
        seen += len(shard[1])
        if seen >= anchors:
            return itertools.chain(head, shards), seen, len(head), False
    return iter(head), seen, len(head), True


#: console scripts whose module body only imports an entry point: a local worker need not run them again
ENTRY_SCRIPTS = ("geomeld",)


@contextlib.contextmanager
def _entry_script_not_rerun() -> Iterator[None]:
    """While local worker processes start, keep them from re-running the ``geomeld`` console script.

    Dask starts local workers with multiprocessing's ``spawn``, which re-imports the parent's main script
    in every child (``__mp_main__``). The ``geomeld`` script's only line is ``from modeling_geomeld.cli
    import main``, which imports the model package and with it transformers and torch: seconds per worker
    for nothing. Without a ``__file__`` on ``__main__``, spawn imports no main; any other script (a user's,
    which may define what its tasks need) is left as it is.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if (
        main is None
        or path is None
        or getattr(main, "__spec__", None) is not None
        or Path(path).name not in ENTRY_SCRIPTS
    ):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


#: glibc malloc settings of local worker processes, replacing Dask's ``MALLOC_TRIM_THRESHOLD_=65536``
#: (``distributed.nanny.pre-spawn-environ``): setting any threshold turns off glibc's adaptive mmap threshold,
#: so with Dask's value every array over 128 KiB (one 128 px Sentinel-2 stack is 786 KiB) is a fresh mmap and
#: page-faulted in; an in-process build of 80 anchors took 2.0x the CPU with it (6.45 vs 3.24 s). These keep
#: such temporaries on the heap (CPU as without any setting: 3.51 s) and still return memory above 64 MiB
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(64 << 20), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}


class _Runner:
    """Runs shards either in-process or on a Dask cluster, with a bounded number in flight."""

    def __init__(self, options: BuildOptions, execution: Execution):
        self.options = options
        self.execution = execution
        self.client: Any = None
        self.cluster: Any = None
        t0 = time.perf_counter()
        if execution.mode == "scheduler":
            from distributed import Client

            self.client = Client(options.scheduler)
            workers = len(self.client.scheduler_info()["workers"])
            self.execution = Execution("scheduler", workers, f"{execution.reason} ({workers} workers)")
        elif execution.workers > 0:
            import dask
            from distributed import Client, LocalCluster

            malloc = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC.items()}
            with _entry_script_not_rerun(), dask.config.set(malloc):
                self.cluster = LocalCluster(
                    n_workers=execution.workers,
                    threads_per_worker=1,
                    processes=execution.mode == "local processes",
                    dashboard_address=None,
                    silence_logs=40,
                )
            self.client = Client(self.cluster)
        self.limit = 2 * max(1, len(self.client.scheduler_info()["workers"]) if self.client else 1)
        if self.client is not None:
            self.execution = replace(self.execution, startup_s=round(time.perf_counter() - t0, 3))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def run(
        self, shards: Iterator[tuple[int, list[Item]]], root: Path
    ) -> Iterator[tuple[int, int, dict[str, Any] | BaseException]]:
        """Yield ``(shard, anchors, summary or exception)`` as shards complete."""
        if self.client is None:
            for shard, items in shards:
                try:
                    yield shard, len(items), process_shard(shard, items, str(root), self.options)
                except QuarantineError:
                    raise
                except Exception as err:  # a failed shard must not stop the others; resume retries it
                    yield shard, len(items), err
            return
        from distributed import wait

        pending: dict[Any, tuple[int, int]] = {}

        def drain(return_when: str) -> Iterator[tuple[int, int, dict[str, Any] | BaseException]]:
            done, _ = wait(list(pending), return_when=return_when)
            for future in sorted(done, key=lambda f: pending[f][0]):
                shard, count = pending.pop(future)
                err = future.exception()
                if isinstance(err, QuarantineError):
                    raise err
                yield shard, count, err if err is not None else future.result()

        for shard, items in shards:
            future = self.client.submit(process_shard, shard, items, str(root), self.options, pure=False)
            pending[future] = (shard, len(items))
            if len(pending) >= self.limit:
                yield from drain("FIRST_COMPLETED")
        while pending:
            yield from drain("FIRST_COMPLETED")


@dataclass
class BuildReport:
    """What a build did: the JSON report's content (``DIR/build_report.json``)."""

    source: str
    tried: int = 0
    built: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    quarantined_anchors: list[dict[str, str]] = field(default_factory=list)
    shards_written: int = 0
    shards_resumed: int = 0
    failed_shards: list[dict[str, Any]] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    fingerprint: str = ""
    #: where the shards ran and why (:class:`Execution`)
    execution: dict[str, Any] = field(default_factory=dict)
    #: seconds per anchor and share per stage, over the shards built in this run (:mod:`dataset_scripts.profile`)
    profile: dict[str, Any] = field(default_factory=dict)
    #: summed stage seconds of this run's shards (the profile's input)
    stage_seconds: dict[str, float] = field(default_factory=dict, repr=False)
    #: summed counts of this run's shards (files opened, window bytes)
    stage_counts: dict[str, float] = field(default_factory=dict, repr=False)
    #: anchors of this run's shards (built or quarantined: both cost time)
    profiled_anchors: int = field(default=0, repr=False)
    #: relative path -> sha256 of every data file of the finished build
    checksums: dict[str, str] = field(default_factory=dict, repr=False)
    #: the finished shards' markers (not part of the JSON report: the markers themselves are on disk)
    summaries: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """A few human lines: tried, built, quarantined by reason, splits, shards."""
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.quarantined.items())) or "none"
        splits = ", ".join(f"{k} {v}" for k, v in sorted(self.rows.items())) or "none"
        lines = [
            f"source: {self.source}",
            f"anchors tried {self.tried}, built {self.built}, quarantined {sum(self.quarantined.values())} ({reasons})",
            f"rows by subset/split: {splits}",
            f"shards written {self.shards_written}, resumed {self.shards_resumed}, failed {len(self.failed_shards)}; "
            f"{self.elapsed_s:.1f} s",
        ]
        if self.execution:
            lines.append(f"ran {self.execution['mode']} ({self.execution['reason']})")
        lines += profile_lines(self.profile)
        if self.failed_shards:
            lines.append(
                "failed shards (rerun with --resume): "
                + ", ".join(str(f["shard"]) for f in self.failed_shards)
            )
        return "\n".join(lines)


def _merge(report: BuildReport, summary: dict[str, Any], resumed: bool) -> None:
    summary = dict(summary)
    if "profile" in summary:  # built in this run (a resumed shard's marker carries no timings)
        tally = summary.pop("profile")
        add_seconds(report.stage_seconds, tally["seconds"])
        add_seconds(report.stage_counts, tally["counts"])
        report.profiled_anchors += summary["anchors"]
    report.summaries.append(summary)
    report.tried += summary["anchors"]
    report.built += summary["built"]
    report.quarantined_anchors.extend(summary["quarantined"])
    for f in summary["files"]:
        key = f"{f['subset']}/{f['split']}"
        report.rows[key] = report.rows.get(key, 0) + f["rows"]
    if resumed:
        report.shards_resumed += 1
    else:
        report.shards_written += 1


def _resumable(
    shards: Iterator[tuple[int, list[Item]]], root: Path, report: BuildReport, resume: bool, on_skip: Any
) -> Iterator[tuple[int, list[Item]]]:
    for shard, items in shards:
        summary = finished(root, shard) if resume else None
        if summary is not None:
            _merge(report, summary, resumed=True)
            on_skip(len(items))
            continue
        yield shard, items


def _check_plan(root: Path, source: str, options: BuildOptions, source_options: dict[str, Any]) -> None:
    """Record what decides shard contents; a resume with other settings would mix two different builds."""
    plan = {
        "source": source,
        "source_options": {k: str(v) for k, v in sorted(source_options.items())},
        "shard_size": options.shard_size,
        "block_deg": options.block_deg,
        "split_fractions": list(options.split_fractions),
        "align": asdict(options.align),
        "caption": options.caption,
        "check_ranges": options.check_ranges,
    }
    path = root / BUILD_DIR / "plan.json"
    if options.resume and path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in plan if before.get(k) != plan[k])
        if changed:
            raise ValueError(
                f"cannot resume {root}: expected the settings of the interrupted build, found {changed} changed "
                f"(before: {[before.get(k) for k in changed]}, now: {[plan[k] for k in changed]})"
            )
    _write_json(path, plan)


def final_name(subset: str, split: str, shard: int, fp: str) -> str:
    """``data/<subset>/<split>-<shard>-<fingerprint>.parquet``: the card's configs glob ``<split>-*-<fingerprint>``."""
    return f"data/{subset}/{split}-{shard:05d}-{fp}.parquet"


def finalize(root: Path, summaries: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """Move every finished shard to its fingerprinted name under ``DIR/data``; returns (fingerprint, sha256s).

    Also removes any other Parquet file under ``DIR/data`` (an earlier build's), so the folder holds exactly
    this build's rows, and rewrites the shard markers to the final names (``--resume`` of a finished build
    then finds every shard finished).
    """
    entries = [
        (summary, f) for summary in sorted(summaries, key=lambda s: s["shard"]) for f in summary["files"]
    ]
    hashes = {
        f"{f['subset']}/{f['split']}/{summary['shard']}": sha256_file(root / f["path"])
        for summary, f in entries
    }
    fp = fingerprint(hashes)
    checksums: dict[str, str] = {}
    for summary, f in entries:
        target = final_name(f["subset"], f["split"], summary["shard"], fp)
        if f["path"] != target:
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            os.replace(root / f["path"], root / target)
            f["path"] = target
        checksums[target] = hashes[f"{f['subset']}/{f['split']}/{summary['shard']}"]
    for summary in summaries:
        _write_json(marker_path(root, summary["shard"]), summary)
    for stale in (root / "data").rglob("*.parquet"):
        if stale.relative_to(root).as_posix() not in checksums:
            stale.unlink()
    for staged in sorted((root / BUILD_DIR / "data").glob("**/"), reverse=True):  # emptied staging folders
        if staged.is_dir() and not any(staged.iterdir()):
            staged.rmdir()
    return fp, checksums


def build(
    source: str, out: str | Path, options: BuildOptions | None = None, **source_options: Any
) -> BuildReport:
    """Build a GeoMeld dataset from ``source`` (``KIND:LOCATION``) into ``out``; writes the report and card.

    Raises :class:`BuildError` when shards failed or nothing was built (the report is written first), and
    :class:`QuarantineError` on the first bad input when ``options.strict``.
    """
    from tqdm.auto import tqdm

    from .card import write_card

    options = options or BuildOptions()
    # the one place flags and source options meet: every component gets the values in force
    source_options = resolve_source_options(source, options, source_options)
    root = Path(out).expanduser().resolve()
    _prepare_out(root, options)
    (root / BUILD_DIR).mkdir(parents=True, exist_ok=True)
    for finished_marker in (
        MANIFEST_NAME,
        "build_report.json",
        f"{BUILD_DIR}/build_report.json",
    ):  # in progress
        (root / finished_marker).unlink(missing_ok=True)
    _check_plan(root, source, options, source_options)
    _clean_temporaries(root)
    src = open_source(source, strict=options.strict, **source_options)
    report = BuildReport(source=src.describe())
    duplicates: list[dict[str, str]] = []
    started = time.perf_counter()
    bar = tqdm(unit="anchor", desc="geomeld build", disable=not options.progress)
    runner: _Runner | None = None
    try:
        plan = _resumable(
            _plan(iter(src.anchors()), options.shard_size, duplicates, options.strict),
            root,
            report,
            options.resume,
            bar.update,
        )
        pending, shards, ended = 0, 0, False
        if options.workers == "auto" and not options.scheduler:  # how much is left decides where it runs
            plan, pending, shards, ended = _peek(plan, AUTO_MIN_ANCHORS)
        runner = _Runner(options, choose_execution(options, pending, ended, shards, cpu_count()))
        report.execution = asdict(runner.execution)
        for shard, count, result in runner.run(plan, root):
            bar.update(count)
            if isinstance(result, BaseException):
                report.tried += count
                report.failed_shards.append({"shard": shard, "error": f"{type(result).__name__}: {result}"})
            else:
                _merge(report, result, resumed=False)
    finally:
        bar.close()
        if runner is not None:
            runner.close()
    _clean_temporaries(root)  # a worker killed mid-write leaves a temporary file its redone shard replaced
    report.profile = profile_table(report.stage_seconds, report.stage_counts, report.profiled_anchors)
    source_records = [asdict(r) if not isinstance(r, dict) else r for r in getattr(src, "quarantined", [])]
    extra = source_records + duplicates
    report.tried += len(extra)
    report.quarantined_anchors = sorted(
        report.quarantined_anchors + extra, key=lambda r: (r["anchor_id"], r["reason"])
    )
    report.quarantined = dict(sorted(Counter(r["reason"] for r in report.quarantined_anchors).items()))
    if report.built and not report.failed_shards:
        report.fingerprint, report.checksums = finalize(root, report.summaries)
    report.elapsed_s = round(time.perf_counter() - started, 3)
    # an unfinished build keeps its report hidden too: a top-level JSON file would load as a 1-row "dataset"
    report_path = root / ("build_report.json" if report.fingerprint else f"{BUILD_DIR}/build_report.json")
    hidden = ("summaries", "checksums", "stage_seconds", "stage_counts", "profiled_anchors")
    _write_json(report_path, {k: v for k, v in asdict(report).items() if k not in hidden})
    if report.fingerprint:
        write_card(root, report.fingerprint)
        write_manifest(root, report.checksums, report.fingerprint, report.rows)  # last: the completion marker
    if report.failed_shards:
        raise BuildError(
            f"{len(report.failed_shards)} shard(s) failed; rerun with --resume (report: {report_path})\n{report.summary()}"
        )
    if not report.built:
        raise BuildError(f"nothing was built\n{report.summary()}")
    return report
