#!/usr/bin/env bash
# Create .venv-lighteval: lighteval 0.13 in its own venv (it needs antlr4 4.13, hydra-core 1.3 pins 4.9).
#
#   bash bench/evals/lighteval_env.sh [VENV_DIR]      (default: .venv-lighteval at the repo root)
#
# Order matters: torch==2.13.0 first, from the CPU wheel on disk, so that lighteval's torch range is
# already satisfied and pip pulls no multi-GB CUDA build; a machine that already has torch (a GPU
# box) keeps it via --system-site-packages. Then lighteval and the rest at the exact versions of
# requirements/lighteval.lock.txt (`make lock` refreshes it; xxhash<4 because xxhash 4 breaks
# lighteval's details logger). The repo goes in with --no-deps so `models` and
# `bench` import without dragging in lm-eval or hydra. Idempotent: a finished venv is left alone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$ROOT/.venv-lighteval}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.installed"

if [ -f "$STAMP" ]; then echo "$VENV: ready"; exit 0; fi
if [ ! -x "$VENV/bin/python" ]; then
  if "$PYTHON" -c "import torch" 2>/dev/null; then "$PYTHON" -m venv --system-site-packages "$VENV"
  else "$PYTHON" -m venv "$VENV"; fi
fi
PY="$VENV/bin/python"
"$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q -c "$ROOT/requirements/lighteval.lock.txt" -r "$ROOT/requirements/lighteval.in"
"$PY" -m pip install -q --no-deps -e "$ROOT"
"$PY" -c "import lighteval, models.mamba" 
touch "$STAMP"
echo "$VENV: ready"
