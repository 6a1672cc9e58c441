#!/usr/bin/env bash
# Installs what stockledger needs on a fresh Debian machine: Java, Maven and PostgreSQL's server
# from Debian's packages when missing, and a virtualenv with the locked Python dependencies (requirements.lock).
# Downloads are cached in ~/.cache/stockledger (STOCKLEDGER_CACHE_DIR) so a second run is fast.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: please install ${missing[*]} (Debian packages), then run again" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]} from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
# Downloads live outside the checkout so a fresh clone (CI) reuses them.
CACHE="${STOCKLEDGER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stockledger}"
mkdir -p "$CACHE"
export PIP_CACHE_DIR="$CACHE/pip"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi
# Every transitive dependency is pinned with its hashes in requirements.lock (made from pyproject.toml by
# pip-compile, see its header); the project itself is installed on top without resolving anything.
stamp=".venv/.installed-$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python dependencies (requirements.lock)" >&2
  .venv/bin/pip install -q --require-hashes -r requirements.lock
  .venv/bin/pip install -q --no-deps -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
