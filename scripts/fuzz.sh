#!/usr/bin/env bash
# Builds the safetensors header fuzzer with clang-14 (libFuzzer + ASan + UBSan) in build-fuzz/ and
# runs it for SECONDS (default 60) on one job, seeded with the malformed corpus and valid files.
# Usage: scripts/fuzz.sh [SECONDS]. New interesting inputs go to build-fuzz/corpus/, crashes to
# build-fuzz/crash-*; the exit status is non-zero when the fuzzer finds a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSHARDQUANT_FUZZ=ON -DSHARDQUANT_CUDA=OFF -DSHARDQUANT_BUILD_TESTS=OFF \
  -DSHARDQUANT_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz --target safetensors_header_fuzz
mkdir -p build-fuzz/corpus
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
cp tests/data/malformed/*.safetensors fuzz/seeds/*.safetensors "$seeds"/
build-fuzz/fuzz/safetensors_header_fuzz -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix=build-fuzz/ -max_len=65536 build-fuzz/corpus "$seeds"
