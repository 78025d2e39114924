#!/usr/bin/env bash
# Re-verify the open_clip parts of vlnav (the open_clip:<model> CoCa captioner and the
# open_clip feature encoder) against the real open_clip_torch library, in a venv of their own.
#
# Why a separate venv: open_clip imports torchvision, and PyPI's torchvision does not import
# beside the project's CPU torch 2.13.0 ("operator torchvision::nms does not exist"), so in the
# project's .venv these tests skip with that reason. Here torch 2.14.1 + torchvision 0.29.1 are
# installed together instead. COST: on x86_64 that pair is a CUDA build, about 5.5 GB in the
# venv (on machines with a local wheel mirror pip takes it from disk; elsewhere it is a
# download of about 3 GB). It runs on the CPU; no GPU is needed. The project's own pin
# (torch==2.13.0 in pyproject's extras) is left alone: the project is installed with --no-deps
# and its dependencies are listed here, with torch held by a constraint file.
#
# triton (a CUDA-only dependency of that torch) is removed from the venv: its libtriton.so
# bundles an LLVM that segfaults when loaded after Mesa's llvmpipe (which the builtin
# simulator's EGL context loads first in the test process); the CPU never uses triton.
#
# Usage: scripts/check_open_clip.sh [extra pytest args]   (VENV=/path to choose the venv;
# default /work/oc-venv, or .oc-venv next to the checkout when /work does not exist)
# Idempotent: an existing venv with the packages is reused, only the tests run again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${VENV:-}" ]]; then
    if [[ -d /work ]]; then VENV=/work/oc-venv; else VENV="$ROOT/.oc-venv"; fi
fi
PY="${PYTHON:-python3.11}"
PIP="$VENV/bin/python -m pip"
CONSTRAINTS="$VENV/vlnav-constraints.txt"

# keep CPU use modest: the tests are tiny, one thread is enough
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi
printf 'torch==2.14.1\ntorchvision==0.29.1\n' >"$CONSTRAINTS"

if ! "$VENV/bin/python" -c "import torch, torchvision, open_clip" >/dev/null 2>&1; then
    echo "installing torch 2.14.1 + torchvision 0.29.1 (about 5.5 GB) and open_clip_torch"
    $PIP install -q torch==2.14.1 torchvision==0.29.1
    $PIP install -q -c "$CONSTRAINTS" open_clip_torch
fi
if ! "$VENV/bin/python" -c "import vlnav, transformers, pytest, trimesh, moderngl" >/dev/null 2>&1; then
    echo "installing the project (--no-deps) and its dependencies, torch held at 2.14.1"
    $PIP install -q -c "$CONSTRAINTS" numpy scipy pyyaml trimesh moderngl gymnasium \
        opencv-python-headless imageio imageio-ffmpeg tqdm matplotlib transformers tokenizers \
        safetensors accelerate peft pytest scikit-image
    $PIP install -q --no-deps -e "$ROOT"
fi
if $PIP show triton >/dev/null 2>&1; then
    $PIP uninstall -q -y triton
fi

"$VENV/bin/python" -c "import torch, torchvision, open_clip, transformers; \
print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
'open_clip', open_clip.__version__, 'transformers', transformers.__version__)"
cd "$ROOT"
HF_HUB_OFFLINE=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_perception_pretrained.py tests/test_features.py "$@"
