#!/usr/bin/env bash
# Issue 15 conformance matrix: Hadamard rotation (r1,r2,r4 online) with mxfp4, mxfp6_e2m3,
# int4_wo_128 and fp8 on the make_ckpt.py llama and qwen3_moe toy checkpoints in bf16/fp16/fp32:
# Quark 0.13 F2F (quark_ref.py --jobs, jobs.txt) then `shardquant quantize` with the same
# rotation options, then compare.py per run. Owns nothing else; the results table is printed.
#   PYTHON=/work/venv/bin/python SQ_BIN=build/shardquant WORK=/tmp/rot \
#     [QUARK_DEVICE=cpu|cuda] [SQ_DEVICE=cpu] tests/conformance/rotation/rotation_check.sh
# QUARK_DEVICE=cuda on the GPU machine makes the CUDA references (the later session's job): the
# Quark outputs stay in $WORK/quark/ for ref_bundle.py. With QUARK_DEVICE=cpu, fp8 on bf16/fp16
# and int4_wo_128 on fp32 differ where Quark-CPU differs from Quark-CUDA (formats.md Appendix B).
# JOBS=kv_jobs.txt runs the kv_cache_scheme / attention_scheme / min_kv_scale matrix instead
# (then rotation/kv_goldens.py $WORK refreshes tests/data/rotation/kv_goldens.json).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CONF="$(dirname "$HERE")"
PYTHON="${PYTHON:-python3}"
SQ_BIN="${SQ_BIN:-build/shardquant}"
WORK="${WORK:-/tmp/rotation-check}"
QUARK_DEVICE="${QUARK_DEVICE:-cpu}"
SQ_DEVICE="${SQ_DEVICE:-cpu}"
JOBS="${JOBS:-jobs.txt}"
mkdir -p "$WORK"
cd "$WORK"
for arch in llama qwen3_moe; do
  for dt in bf16 fp16 fp32; do
    [ -f "${arch}_$dt/config.json" ] || "$PYTHON" "$CONF/make_ckpt.py" --arch "$arch" --dtype "$dt" --out "${arch}_$dt" >/dev/null
  done
done
rm -rf quark sq && mkdir -p quark sq
sed "s|@HERE@|$HERE|g" "$HERE/$JOBS" > jobs.resolved.txt
PYTHONPATH="$CONF" "$PYTHON" "$CONF/quark_ref.py" --device "$QUARK_DEVICE" --jobs jobs.resolved.txt 2>&1 | grep -E '^(JOB|quark_ref:)'
set -f  # the globs of job lines (--exclude *k_proj) go to the programs as written
pass=0 diff=0 fail=0
while read -r ck scheme out rest; do
  [ -z "$ck" ] || [ "${ck:0:1}" = "#" ] && continue
  cand="sq/${out#quark/}"
  rest="${rest//--layer-config/--layer-scheme}"
  rest="$(echo "$rest" | sed -E 's/--layer-scheme ([^ =]+)=([^ ]+)/--layer-scheme \1 \2/g')"
  # shellcheck disable=SC2086
  if ! "$SQ_BIN" quantize --model-dir "$ck" --output-dir "$cand" --scheme "$scheme" --device "$SQ_DEVICE" $rest --quiet 2>"$cand.err"; then
    echo "FAIL $ck $scheme: shardquant: $(head -c 300 "$cand.err")"; fail=$((fail + 1)); continue
  fi
  line="$("$PYTHON" "$CONF/compare.py" "$out" "$cand" 2>&1 | tail -1 || true)"
  echo "$ck $scheme: $line"
  case "$line" in
    *config=ok*files=ok*) n="${line#*tensors_identical=}"; n="${n%% *}"; if [ "${n%/*}" = "${n#*/}" ]; then pass=$((pass + 1)); else diff=$((diff + 1)); fi ;;
    *) fail=$((fail + 1)) ;;
  esac
done < jobs.resolved.txt
echo "rotation_check: $pass identical, $diff with differing tensors, $fail failed (Quark on $QUARK_DEVICE, shardquant on $SQ_DEVICE)"
