#!/usr/bin/env bash
# The GPU-machine end-to-end run, in one call, from an installed folder:
#   cmake --install build --prefix gpu-install      (on the build machine, CUDA on)
#   bench/run_gpu_e2e.sh [gpu-install]              (on the GPU machine; logs go to $OUT)
# Steps: machine facts; CPU vs CUDA output identity on a small checkpoint (schemes with and
# without amax passes, split tensors); a 16 GB bf16 llama checkpoint on the machine's disk;
# page cache dropped when allowed; I/O floor then bf16 -> mxfp4 on cuda (target: within 1.15x of
# the floor); the same from /dev/shm (target: >= 8 GB/s input) when it has room.
# Environment: OUT (log folder, default ./e2e-out), SQ_BENCH_DIR (scratch on the disk to test,
# default ./bench-data), SQ_SIZE (checkpoint size, default 16G), SQ_BUDGET (default 8G),
# SQ_STREAMS (default 4). SQ_SKIP_IDENTITY=1 skips the identity check, SQ_ONLY_IDENTITY=1 runs
# only it, SQ_ONLY_SHM=1 runs only the /dev/shm part (checkpoint made there; nothing on the disk);
# SQ_SHM_VARIANTS="VAR=VALUE ..." adds one /dev/shm run per io knob setting. The zstd rows (disk
# and /dev/shm: compressed input, --compress output) use SQ_ZSTD_LEVEL (default 3).
set -uo pipefail
PREFIX=${1:-gpu-install}
BIN=$(cd "$PREFIX/bin" && pwd)
OUT=${OUT:-$PWD/e2e-out}
WORK=${SQ_BENCH_DIR:-$PWD/bench-data}
SIZE=${SQ_SIZE:-16G}
BUDGET=${SQ_BUDGET:-8G}
STREAMS=${SQ_STREAMS:-4}
mkdir -p "$OUT" "$WORK"
LOG="$OUT/e2e.log"
exec > >(tee -a "$LOG") 2>&1

say() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
drop_caches() {
  sync
  if echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then echo "page cache dropped"
  else echo "page cache NOT dropped (no permission): numbers may include cached reads"; fi
}

say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv || true
nproc; free -g | head -2
df -h "$WORK" /dev/shm || true
findmnt -T "$WORK" -o SOURCE,FSTYPE,OPTIONS || true
"$BIN/shardquant" --version 2>/dev/null || true

shm_runs() {  # $1 = checkpoint folder on /dev/shm
  "$BIN/e2e_bench" --model-dir "$1" --output-dir /dev/shm/sq-e2e/out \
    --scheme mxfp4 --device cuda --memory-budget "$BUDGET" --streams "$STREAMS" \
    --json "$OUT/shm-mxfp4-cuda.json"
  echo "--- /dev/shm, tmpfs writes forced to pwrite (A/B for the mapped writes of the copy threads)"
  SHARDQUANT_TMPFS_WRITES=pwrite "$BIN/e2e_bench" --model-dir "$1" --output-dir /dev/shm/sq-e2e/out \
    --scheme mxfp4 --device cuda --memory-budget "$BUDGET" --streams "$STREAMS" --skip-floor \
    --json "$OUT/shm-mxfp4-cuda-pwrite.json"
  for v in ${SQ_SHM_VARIANTS:-}; do  # e.g. SHARDQUANT_COPY_THREADS=12 (io/async_io.cpp knobs)
    echo "--- /dev/shm with $v"
    env "$v" "$BIN/e2e_bench" --model-dir "$1" --output-dir /dev/shm/sq-e2e/out \
      --scheme mxfp4 --device cuda --memory-budget "$BUDGET" --streams "$STREAMS" --skip-floor \
      --json "$OUT/shm-mxfp4-cuda-$v.json"
  done
  echo "--- /dev/shm with the pread engine"
  "$BIN/e2e_bench" --model-dir "$1" --output-dir /dev/shm/sq-e2e/out \
    --scheme mxfp4 --device cuda --memory-budget "$BUDGET" --streams "$STREAMS" --io-engine pread \
    --json "$OUT/shm-mxfp4-cuda-pread.json"
  echo "--- /dev/shm, zstd rows: compressed input and --compress output"
  "$BIN/e2e_bench" --model-dir "$1" --output-dir /dev/shm/sq-e2e/out \
    --scheme mxfp4 --device cuda --memory-budget "$BUDGET" --streams "$STREAMS" --skip-floor \
    --zstd "${SQ_ZSTD_LEVEL:-3}" --json "$OUT/shm-mxfp4-cuda-zstd.json"
  echo "--- /dev/shm, CPU backend (no PCIe copies)"
  "$BIN/e2e_bench" --model-dir "$1" --output-dir /dev/shm/sq-e2e/out \
    --scheme mxfp4 --device cpu --memory-budget "$BUDGET" --skip-floor \
    --json "$OUT/shm-mxfp4-cpu.json"
}

if [ -n "${SQ_ONLY_SHM:-}" ]; then
  say "/dev/shm only: a $SIZE bf16 llama checkpoint made there, floor and bf16 -> mxfp4"
  rm -rf /dev/shm/sq-e2e && mkdir -p /dev/shm/sq-e2e
  "$BIN/shardquant" make-checkpoint --arch llama --size "$SIZE" --shard-size 4G --out /dev/shm/sq-e2e/ckpt
  du -sh /dev/shm/sq-e2e/ckpt
  shm_runs /dev/shm/sq-e2e/ckpt
  rm -rf /dev/shm/sq-e2e
  say "done (/dev/shm only)"; exit 0
fi

if [ -z "${SQ_SKIP_IDENTITY:-}" ]; then
say "CPU vs CUDA output identity (1G llama, small budget so tensors split)"
rm -rf "$WORK/small"
"$BIN/shardquant" make-checkpoint --arch llama --size 1G --shard-size 256M --out "$WORK/small" --seed 3
SAME=ok
# Reference: the CPU backend with a 64 MiB budget. CUDA: 64 MiB and 8 GiB budgets, 1 and 4 streams.
for scheme in mxfp4 fp8 int4_wo_128 ptpc_fp8 int4_fp8 mxfp6_e2m3 uint4_wo_32 int8; do
  rm -rf "$WORK/small-cpu"
  "$BIN/shardquant" quantize --model_dir "$WORK/small" --output-dir "$WORK/small-cpu" \
    --scheme "$scheme" --exclude --device cpu --memory-budget 64M --quiet \
    --report "$OUT/small-$scheme-cpu.json" || { echo "FAILED: $scheme on cpu"; SAME=failed; }
  for cfg in 64M:1 64M:4 8G:1 8G:4; do
    budget=${cfg%:*}; streams=${cfg#*:}
    rm -rf "$WORK/small-cuda"
    "$BIN/shardquant" quantize --model_dir "$WORK/small" --output-dir "$WORK/small-cuda" \
      --scheme "$scheme" --exclude --device cuda --memory-budget "$budget" --streams "$streams" \
      --quiet || { echo "FAILED: $scheme on cuda ($budget, $streams streams)"; SAME=failed; }
    if diff -r -q "$WORK/small-cpu" "$WORK/small-cuda"; then
      echo "$scheme: cuda (budget $budget, $streams streams) identical to cpu"
    else
      echo "$scheme: cuda (budget $budget, $streams streams) DIFFERS from cpu"; SAME=failed
    fi
  done
done
rm -rf "$WORK/small" "$WORK/small-cpu" "$WORK/small-cuda"
echo "identity check: $SAME"
fi

if [ -n "${SQ_ONLY_IDENTITY:-}" ]; then say "done (identity only)"; exit 0; fi
say "make a $SIZE bf16 llama checkpoint on $WORK"
rm -rf "$WORK/ckpt" "$WORK/bench-out"
time "$BIN/shardquant" make-checkpoint --arch llama --size "$SIZE" --shard-size 4G --out "$WORK/ckpt"
du -sh "$WORK/ckpt"

say "disk: I/O floor, then bf16 -> mxfp4 on cuda"
drop_caches
"$BIN/e2e_bench" --model-dir "$WORK/ckpt" --output-dir "$WORK/bench-out" --scheme mxfp4 \
  --device cuda --memory-budget "$BUDGET" --streams "$STREAMS" --json "$OUT/disk-mxfp4-cuda.json"

say "disk: the same on the CPU backend (for comparison)"
drop_caches
"$BIN/e2e_bench" --model-dir "$WORK/ckpt" --output-dir "$WORK/bench-out" --scheme mxfp4 \
  --device cpu --memory-budget "$BUDGET" --skip-floor --json "$OUT/disk-mxfp4-cpu.json"

say "disk: fp8 (per-tensor amax) on cuda"
drop_caches
"$BIN/e2e_bench" --model-dir "$WORK/ckpt" --output-dir "$WORK/bench-out" --scheme fp8 \
  --device cuda --memory-budget "$BUDGET" --streams "$STREAMS" --json "$OUT/disk-fp8-cuda.json"

say "disk: zstd rows (issue 19): plain run, then compressed input and --compress output on cuda"
drop_caches
"$BIN/e2e_bench" --model-dir "$WORK/ckpt" --output-dir "$WORK/bench-out" --scheme mxfp4 \
  --device cuda --memory-budget "$BUDGET" --streams "$STREAMS" --skip-floor --zstd "${SQ_ZSTD_LEVEL:-3}" \
  --json "$OUT/disk-mxfp4-cuda-zstd.json"

say "/dev/shm: I/O floor, then bf16 -> mxfp4 on cuda"
need_kb=$(du -sk "$WORK/ckpt" | cut -f1)
avail_kb=$(df -k --output=avail /dev/shm | tail -1)
if [ "$avail_kb" -gt $((need_kb * 2)) ]; then
  rm -rf /dev/shm/sq-e2e && mkdir -p /dev/shm/sq-e2e
  cp -r "$WORK/ckpt" /dev/shm/sq-e2e/ckpt
  shm_runs /dev/shm/sq-e2e/ckpt
  rm -rf /dev/shm/sq-e2e
else
  echo "/dev/shm has $((avail_kb / 1024)) MiB free, needs $((need_kb * 2 / 1024)) MiB: skipped"
fi

say "peak RSS of the program (budget $BUDGET), /usr/bin/time -v"
rm -rf "$WORK/bench-out"
if [ -x /usr/bin/time ]; then
  /usr/bin/time -v "$BIN/shardquant" quantize --model_dir "$WORK/ckpt" --output-dir "$WORK/bench-out" \
    --scheme mxfp4 --device cuda --memory-budget "$BUDGET" --quiet 2>&1 | grep -E "Maximum resident|Elapsed"
else
  "$BIN/shardquant" quantize --model_dir "$WORK/ckpt" --output-dir "$WORK/bench-out" \
    --scheme mxfp4 --device cuda --memory-budget "$BUDGET" --quiet --report "$OUT/rss.json"
  grep peak_rss "$OUT/rss.json"
fi
rm -rf "$WORK/bench-out"
say "done"
