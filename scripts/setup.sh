#!/usr/bin/env bash
# Create .venv and install falcon-h1r into it (editable, with the test tools).
# On a machine without an NVIDIA GPU, torch is pinned to the CPU build first, so pip does not pull a
# multi-GB CUDA build; on a GPU machine torch comes from the ordinary dependency range.
# Usage: bash scripts/setup.sh [extras]   (default extras: test; e.g. "test,cuda" or "vllm")
# Environment: VENV (default .venv) picks the venv folder; CONSTRAINTS names a pip constraints file, e.g.
# .ci/constraints-lowest.txt for the lowest versions we declare (CI's second venv).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
python="${PYTHON:-python3}"
venv="${VENV:-.venv}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
constraints=()
[ -z "${CONSTRAINTS:-}" ] || constraints=(-c "$CONSTRAINTS")
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found; torch comes from the dependency range" >&2
  else
    echo "setup: no NVIDIA GPU; installing the CPU build torch==2.13.0" >&2
    "${pip[@]}" install "torch==2.13.0"
  fi
fi
"${pip[@]}" install -e ".[${extras}]" "${constraints[@]}"
