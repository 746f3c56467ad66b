#!/usr/bin/env bash
# Configures and builds into build/ (CUDA when nvcc is found; pass -DSHARDQUANT_CUDA=OFF to skip).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
cmake --build build --parallel "$(nproc)"
