#!/usr/bin/env bash
# README command 1: install dependencies, build, generate a small llama-shaped checkpoint, print
# the MXFP4 plan (--dry-run) and then run the quantization itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
mkdir -p demo
if [ ! -f demo/llama/config.json ]; then
  build/shardquant make-checkpoint --arch llama --size 300M --dtype bf16 --shard-size 100M \
    --seed 1 --out demo/llama
fi
build/shardquant quantize --model-dir demo/llama --output-dir demo/llama-mxfp4 --scheme mxfp4 --dry-run
# The best device present: a CUDA GPU when the build has CUDA and one is visible, else the CPU.
device=cpu
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 &&
  grep -q "SHARDQUANT_CUDA:BOOL=ON" build/CMakeCache.txt; then
  device=cuda
fi
# --overwrite: a second run replaces the files of the first one (nothing else is deleted).
build/shardquant quantize --model-dir demo/llama --output-dir demo/llama-mxfp4 --scheme mxfp4 \
  --device "$device" --overwrite
build/shardquant inspect demo/llama-mxfp4 | tail -n 12
