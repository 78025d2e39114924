#!/usr/bin/env bash
# Set up vlnav on a fresh CPU machine: offscreen OpenGL (Mesa EGL), a virtualenv in .venv
# and the package with its dev tools. Idempotent; takes about a minute the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_UPDATED=""
apt_install() {  # apt_install PKG...: apt-get update (once), then install quietly
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ -z "$APT_UPDATED" ]; then $sudo apt-get update -qq && APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! ldconfig -p 2>/dev/null | grep -q libEGL_mesa; then
  echo "installing Mesa EGL (offscreen OpenGL) ..."
  apt_install libegl1 libegl-mesa0 libgl1-mesa-dri
fi

# Headless Chromium and its driver, for the test that opens the quickstart's report in a
# browser (tests/test_report_browser.py). Optional: without them that test is skipped.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Chromium and chromedriver (browser test of the report) ..."
    apt_install chromium chromium-driver \
      || echo "note: could not install chromium chromium-driver; the browser test will be skipped"
  else
    echo "note: chromium/chromedriver not found; the browser test of the report will be skipped" \
      "(as root: apt-get install chromium chromium-driver)"
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# the policy's extra pins torch==2.13.0, so pip takes the CPU build on a CPU machine
# (install the CUDA build of your choice first on a GPU machine: the pin is then satisfied)
.venv/bin/python -m pip install -q -e '.[dev,llm]' 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import vlnav" && echo "vlnav installed in .venv"
