#!/usr/bin/env bash
# Create .venv and install trialprep with the pinned lock (constraints.txt).
# Works on a fresh Debian machine that has only python3 (installs python3-venv if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-test}

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing python3-venv" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "bootstrap: python3's venv module is missing; install python3-venv" >&2
    exit 1
  fi
fi

stamp="$VENV/.trialprep-installed"
want=$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want-$EXTRAS" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[${EXTRAS}]"
echo "$want-$EXTRAS" > "$stamp"
echo "bootstrap: environment ready in $VENV" >&2
