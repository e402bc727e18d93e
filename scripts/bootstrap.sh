#!/usr/bin/env bash
# Make .venv with the hub and its test tools installed; quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "bootstrap: Python 3.11 or newer is required (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing lienthong-hub and its test tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
# promtool checks the shipped Prometheus alert rules; Debian's chromium drives the console's
# browser test (Playwright with its executable path: no browser download).
for pkg in prometheus:promtool chromium:chromium; do
  if ! command -v "${pkg#*:}" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "bootstrap: installing ${pkg%%:*}"
      (apt-get install -y -qq "${pkg%%:*}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq "${pkg%%:*}" >/dev/null; })
    else
      echo "bootstrap: ${pkg#*:} is missing; install it (Debian: apt-get install ${pkg%%:*})" >&2
    fi
  fi
done
# xmlsec1 proves that stock tools verify the hub's XML signatures (tests use it).
if ! command -v xmlsec1 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing xmlsec1"
    (apt-get install -y -qq xmlsec1 >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq xmlsec1 >/dev/null; })
  else
    echo "bootstrap: xmlsec1 is missing; install it (Debian: apt-get install xmlsec1)" >&2
  fi
fi
