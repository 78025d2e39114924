#!/usr/bin/env bash
# Set up vlnav on a fresh CPU machine: offscreen OpenGL (Mesa EGL), a virtualenv in .venv
# and the package with its dev tools. Idempotent; takes about a minute the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p 2>/dev/null | grep -q libEGL_mesa; then
  echo "installing Mesa EGL (offscreen OpenGL) ..."
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# the policy's extra pins torch==2.13.0, so pip takes the CPU build on a CPU machine
# (install the CUDA build of your choice first on a GPU machine: the pin is then satisfied)
.venv/bin/python -m pip install -q -e '.[dev,llm]' 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import vlnav" && echo "vlnav installed in .venv"
