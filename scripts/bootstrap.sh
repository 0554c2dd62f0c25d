#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv with everything the demo and tests need.
# torch is installed first, pinned to the CPU build 2.13.0; a bare `torch` requirement would pull a
# multi-GB CUDA build (see ../shared/docs/STACK_NOTES.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.geomeld-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  touch "$stamp"
fi
# The Space's browser test drives Debian's Chromium through Playwright (a browser download of its own cannot
# work offline). Installed when missing and we may use apt; otherwise that one test skips and says why.
# `make test` asks for it with --browser; the demo does not need it.
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian chromium for the browser test (apt-get install chromium)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
      || echo "warning: could not install chromium; tests/test_space_browser.py will skip" >&2
  fi
fi
