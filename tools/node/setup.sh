#!/usr/bin/env bash
# Installs the pinned Node reference runtime (TF.js CPU backend, pure JavaScript; face-api) into
# tools/node/node_modules from package-lock.json. No native binaries are downloaded.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts
