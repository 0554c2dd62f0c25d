"""A finished build's checksums and completion marker, and ``geomeld verify DIR``.

The last thing ``geomeld build`` writes is ``DIR/build_manifest.json``: the sha256 and size of every data
file, the build's content fingerprint and the row counts. Its presence is what "this build completed" means:

* :func:`require_complete` (called by :func:`dataset_scripts.loading.load_geomeld`) refuses a folder
  without it, naming what is missing, so a folder holding only a build plan or the shards of an
  interrupted build never loads as if it were a dataset;
* :func:`verify` re-hashes every file against it (``geomeld verify DIR``) and reports missing, extra,
  resized and corrupted files; the Parquet page checksums (written by :func:`dataset_scripts.writer.write_shard`)
  catch bit rot inside a page on every read as well, without a full re-hash.

The fingerprint is a hash of the files' hashes: two builds with the same bytes share it (and datasets'
cache), any change of content gives another.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

MANIFEST_NAME = "build_manifest.json"
#: the manifest's format, bumped when its fields change
MANIFEST_VERSION = 1
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(hashes: dict[str, str]) -> str:
    """The content fingerprint of a set of files: a hash of ``name:sha256`` lines in name order (16 hex)."""
    lines = "".join(f"{name}:{sha}\n" for name, sha in sorted(hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def write_manifest(root: Path, files: dict[str, str], fp: str, rows: dict[str, int]) -> Path:
    """Write ``DIR/build_manifest.json`` for ``files`` (relative path -> sha256), atomically, last."""
    entries = {name: {"sha256": sha, "bytes": (root / name).stat().st_size} for name, sha in sorted(files.items())}
    value = {
        "complete": True,
        "version": MANIFEST_VERSION,
        "fingerprint": fp,
        "rows": dict(sorted(rows.items())),
        "files": entries,
    }
    path = root / MANIFEST_NAME
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest of a completed build; :class:`UsageError` naming what is missing otherwise."""
    root = Path(root)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise UsageError(f"expected a GeoMeld dataset folder, found no folder at {root}")
    if not path.is_file():
        staged = sorted(p.name for p in (root / ".geomeld_build").glob("shard-*.json"))
        plan = (root / ".geomeld_build" / "plan.json").is_file()
        found = (
            f"a build plan and {len(staged)} finished shard marker(s) of an unfinished build"
            if plan
            else "no build of `geomeld build` at all"
        )
        raise UsageError(
            f"{root}: expected a completed build (its marker {MANIFEST_NAME}, written when `geomeld build` finishes), "
            f"found {found}; finish it with `geomeld build ... --resume`, or load what is there with partial=True"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"{path}: expected the JSON build manifest, found an unreadable file ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("complete") is not True or "files" not in manifest:
        raise UsageError(f"{path}: expected a manifest with complete=true and files, found {str(manifest)[:200]}")
    return manifest


def require_complete(root: str | Path) -> dict[str, Any]:
    """:func:`read_manifest`, plus a check that every data file it lists is there (cheap: no hashing)."""
    manifest = read_manifest(root)
    missing = [name for name in manifest["files"] if not (Path(root) / name).is_file()]
    if missing:
        raise UsageError(
            f"{root}: expected the {len(manifest['files'])} data files of its {MANIFEST_NAME}, found "
            f"{len(missing)} missing (e.g. {missing[0]}); run `geomeld verify {root}`"
        )
    return manifest


@dataclass
class VerifyReport:
    """What :func:`verify` found; ``ok`` when every listed file is there with its size and sha256."""

    root: str
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupted or self.extra)

    def summary(self) -> str:
        if self.ok:
            return f"{self.root}: {self.checked} data files match {MANIFEST_NAME}"
        parts = [
            f"{label} {len(names)} ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
            for label, names in (("missing", self.missing), ("corrupted", self.corrupted), ("extra", self.extra))
            if names
        ]
        return f"{self.root}: {self.checked} data files checked against {MANIFEST_NAME}: " + "; ".join(parts)


def verify(root: str | Path) -> VerifyReport:
    """Re-hash every data file of a completed build against its manifest; extra data files count as errors."""
    root = Path(root)
    manifest = read_manifest(root)
    report = VerifyReport(str(root))
    for name, entry in sorted(manifest["files"].items()):
        path = root / name
        report.checked += 1
        if not path.is_file():
            report.missing.append(name)
        elif path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            report.corrupted.append(name)
    on_disk = {p.relative_to(root).as_posix() for p in (root / "data").rglob("*.parquet") if not p.name.startswith(".")}
    report.extra = sorted(on_disk - set(manifest["files"]))
    return report


def record_rewrite(path: Path) -> None:
    """Keep a completed build's manifest true for a data file rewritten in place (``geomeld caption``).

    Does nothing for a file no manifest lists (a build in progress, a shard outside any build). The
    fingerprint and file names stay: they name the build, and renaming would orphan the caption records.
    """
    path = Path(path).resolve()
    if len(path.parents) < 3:
        return
    root = path.parents[2]  # DIR/data/<subset>/<file>
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        return
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    name = path.relative_to(root).as_posix()
    if name not in manifest.get("files", {}):
        return
    manifest["files"][name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    tmp = manifest_path.with_name(f".{manifest_path.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path)
