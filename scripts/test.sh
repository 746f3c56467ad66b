#!/usr/bin/env bash
# README command 2: install dependencies, build, run every test (GPU tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh "$@"
# Fuzz the safetensors header reader for 60 s (clang-14 + libFuzzer, own build in build-fuzz/).
scripts/fuzz.sh 60
# The Python package (CPU) in a fresh virtual environment: pip install ., then its pytest suite.
rm -rf build/venv-test
python3 -m venv build/venv-test
build/venv-test/bin/pip install -q . pytest
build/venv-test/bin/python -m pytest -q tests/python
# Last, so ctest's summary closes the log.
ctest --test-dir build --output-on-failure --parallel "$(nproc)"
