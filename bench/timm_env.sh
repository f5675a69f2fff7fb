#!/usr/bin/env bash
# Create .venv-timm: timm's DeiT (model.impl=timm) in its own venv, with the torch/torchvision pair
# that timm needs (timm imports torchvision; PyPI's torchvision fails to load beside .venv's CPU
# torch 2.13: "operator torchvision::nms does not exist").
#
#   bash bench/timm_env.sh [VENV_DIR]      (default: .venv-timm at the repo root)
#
# torch, torchvision and timm at the exact versions of requirements/timm.txt (torch 2.14.1 +
# torchvision 0.29.1: pip on Python 3.11 takes both from this machine's disk; a CUDA build,
# ~5.5 GB, that runs on the CPU too), then the project with its bench and test extras at the
# versions of requirements/lock.txt, so that `python -m bench` (hydra) and pytest run there.
# Idempotent: a finished venv is left alone (delete it to rebuild).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-timm}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.installed"

if [ -f "$STAMP" ]; then echo "$VENV: ready"; exit 0; fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
PINS=(-c "$ROOT/requirements/timm.txt" -c "$ROOT/requirements/lock.txt")
"$PY" -m pip install -q "${PINS[@]}" torch torchvision
"$PY" -m pip install -q "${PINS[@]}" -e "$ROOT[bench,test,timm]"
"$PY" -c "import timm, torchvision, hydra, models.deit, bench.scenarios.vision; print('timm', timm.__version__, 'torch', __import__('torch').__version__)"
touch "$STAMP"
echo "$VENV: ready"
