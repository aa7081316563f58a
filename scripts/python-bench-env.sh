#!/usr/bin/env bash
# Creates (once) the Python environment the side-by-side benchmarks compare against:
# PyTorch (CPU) + sentence-transformers, in <repo>/.venv-bench.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${STRATA_BENCH_VENV:-$repo/.venv-bench}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch, sentence_transformers' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch sentence-transformers numpy
fi
echo "$venv/bin/python"
