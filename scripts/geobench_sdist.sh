#!/usr/bin/env bash
# Fetch and unpack GEO-Bench's own code (the `geobench` 1.0.0 sdist from PyPI) into a cache folder, once.
# The tests run its writer and reader from that folder with PYTHONPATH (tests/test_geobench_official.py);
# it is never installed into .venv: it pins pandas < 2 (see ../shared/docs/STACK_NOTES.md).
#
#   bash scripts/geobench_sdist.sh        # prints the unpacked folder; exit 1 (and says why) when it cannot
#
# Folder: $GEOMELD_GEOBENCH_SDIST, else .cache/geobench-1.0.0 in the repository (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.0.0
SHA256=85628ceff361611e2afa7ac6b851eedcf5ee9bb9dfb117ef9c40c9830959b3ce
DEST=${GEOMELD_GEOBENCH_SDIST:-.cache/geobench-$VERSION}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ -f "$DEST/geobench/dataset.py" ]; then
  echo "$DEST"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! "$PY" -m pip download --quiet --no-deps --no-binary :all: "geobench==$VERSION" -d "$tmp" >"$tmp/pip.log" 2>&1; then
  echo "geobench_sdist: could not download geobench==$VERSION from the package registry:" >&2
  tail -3 "$tmp/pip.log" >&2
  exit 1
fi
archive="$tmp/geobench-$VERSION.tar.gz"
got=$(sha256sum "$archive" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
  echo "geobench_sdist: $archive has sha256 $got, expected $SHA256" >&2
  exit 1
fi
mkdir -p "$(dirname "$DEST")"
# tarfile's "data" filter refuses absolute paths, links out of the folder and devices
"$PY" - "$archive" "$tmp/unpacked" <<'PYEOF'
import sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    tar.extractall(sys.argv[2], filter="data")
PYEOF
rm -rf "$DEST"
mv "$tmp/unpacked/geobench-$VERSION" "$DEST"
echo "$DEST"
