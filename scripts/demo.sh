#!/usr/bin/env bash
# README command 1: install dependencies, build, generate a small llama-shaped checkpoint and
# run the main job on it.
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
