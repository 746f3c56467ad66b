#!/usr/bin/env bash
# Builds a libFuzzer target with clang-14 (libFuzzer + ASan + UBSan) in build-fuzz/ and runs it for
# SECONDS (default 60) on one job. Usage: scripts/fuzz.sh [SECONDS] [TARGET]
#   TARGET safetensors_header_fuzz (default): seeds = tests/data/malformed + fuzz/seeds
#   TARGET config_json_fuzz: the config.json / index JSON tree, seeds = fuzz/seeds_json
# New interesting inputs go to build-fuzz/corpus-TARGET/, crashes to build-fuzz/crash-*; the exit
# status is non-zero when the fuzzer finds a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
target="${2:-safetensors_header_fuzz}"
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSHARDQUANT_FUZZ=ON -DSHARDQUANT_CUDA=OFF -DSHARDQUANT_BUILD_TESTS=OFF \
  -DSHARDQUANT_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz --target "$target"
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
case "$target" in
  safetensors_header_fuzz) cp tests/data/malformed/*.safetensors fuzz/seeds/* "$seeds"/ ;;
  config_json_fuzz) cp fuzz/seeds_json/* "$seeds"/ ;;
  *) echo "unknown fuzz target $target" >&2; exit 2 ;;
esac
mkdir -p "build-fuzz/corpus-$target"
"build-fuzz/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix=build-fuzz/ -max_len=65536 "build-fuzz/corpus-$target" "$seeds"
