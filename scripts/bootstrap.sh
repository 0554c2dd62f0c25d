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
