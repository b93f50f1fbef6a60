#!/usr/bin/env bash
# Create (or reuse) the tools virtualenv at tools/.venv with tools/requirements.txt.
# Idempotent: reinstalls only when requirements.txt changed. Prints the venv path
# on stdout (all other output goes to stderr), so: VENV=$(bash tools/venv.sh)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1; then python="$cand"; break; fi
  done
fi
[ -n "$python" ] || { echo "venv.sh: no python3 found" >&2; exit 1; }

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv"
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "venv.sh: creating $venv with $($python --version 2>&1)" >&2
  "$python" -m venv "$venv" >&2
fi
echo "venv.sh: installing $req" >&2
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req" >&2
echo "$want" > "$stamp"
echo "$venv"
