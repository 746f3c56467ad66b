#!/usr/bin/env bash
# README command 2: install dependencies, build, run every test (GPU tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh "$@"
ctest --test-dir build --output-on-failure --parallel "$(nproc)"
