#!/usr/bin/env bash
# One run on the GPU machine (no network; python3 there already holds torch 2.11 + CUDA):
# installs the carried wheels (.whl/, amd-quark and the packages it imports that the image lacks),
# runs golden_tc.py with Quark on CUDA (and on that host's CPU), and, when checkpoints were carried
# in .conformance-ckpt/, runs Quark F2F on CUDA for every scheme on each of them and keeps a
# manifest (per-tensor SHA-256, config.json, weight_map) of every output, so shardquant outputs
# made anywhere can be compared with the CUDA reference (compare.py MANIFEST DIR).
# Owns only /tmp/site, /tmp/qref and what it writes under $OUT.
# Usage (device tool, repo root, carry [".whl", ".conformance-ckpt"]): bash tests/conformance/gpu_run.sh
# Second run (references for FP8 sources, keep-original, converters, overrides; carry also
# ".conformance-ckpt2"): SKIP_GOLDEN=1 SKIP_MATRIX=1 JOBS=.conformance-ckpt2/jobs.txt bash tests/conformance/gpu_run.sh
# make-checkpoint matrix (carry [".whl", "gpu-install"]): SQ_MATRIX=all SQ_BIN=gpu-install/bin/shardquant
#   SKIP_GOLDEN=1 bash tests/conformance/gpu_run.sh -- makes sq_matrix.py's checkpoints with that binary
#   in /tmp/sqm, runs Quark on CUDA for sq_matrix.py's jobs (every scheme, keep-original on FP8/CT
#   sources), builds $OUT/quark-0.13-cuda-sq.json.gz (ref_bundle.py build --gen sq) and replays it
#   with the same binary on CUDA (FP8 and CT labels) and then on the CPU (all jobs), both cut at
#   DEADLINE_S after the start. SQ_ONLY=n1,n2 narrows the set to those sq_matrix.py names.
set -uo pipefail
T0=$(date +%s)
OUT="${OUT:-/tmp/gpu_run_out}"
mkdir -p "$OUT"
here="tests/conformance"
# Local dry run: QDEV=cpu PY=.venv-conformance/bin/python SKIP_PIP=1 OUT=/tmp/x bash tests/conformance/gpu_run.sh
QDEV="${QDEV:-cuda}"
PY="${PY:-python3}"
if [[ -z "${SKIP_PIP:-}" ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-16}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
{
  nvidia-smi -L
  "$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  "$PY" -m pip list 2>/dev/null | grep -iE '^(numpy|safetensors|transformers|huggingface.hub|pyarrow|onnx|typing.extensions|ninja) '
} 2>&1

if [[ -z "${SKIP_GOLDEN:-}" ]]; then
t0=$(date +%s)
"$PY" "$here/golden_tc.py" --device "$QDEV" --json "$OUT/golden_cuda.json" >"$OUT/golden_cuda.txt" 2>&1
echo "golden_tc $QDEV: rc=$? in $(( $(date +%s) - t0 )) s"
grep -E "STUBBED|Error" "$OUT/golden_cuda.txt" | head -5
grep -E "^  G[0-9]|^  TC|goldens passing|DIFFERENT|formats.md: error" "$OUT/golden_cuda.txt" | head -80
fi

# Extra reference jobs: JOBS=FILE of quark_ref --jobs lines whose OUTPUT_DIR is /tmp/qref2/<label>/<scheme>
# (FP8 sources, keep-original, converters, per-layer overrides, exclude lists).
if [[ -n "${JOBS:-}" ]]; then
  t0=$(date +%s)
  "$PY" "$here/quark_ref.py" --jobs "$JOBS" --device "$QDEV" --replace >"$OUT/quark_cuda_jobs2.txt" 2>&1
  echo "quark F2F $QDEV on $(grep -c . "$JOBS") extra jobs: $(grep -c '^JOB ok' "$OUT/quark_cuda_jobs2.txt") ok, $(grep -c '^JOB error' "$OUT/quark_cuda_jobs2.txt") errors, $(( $(date +%s) - t0 )) s"
  grep '^JOB error' "$OUT/quark_cuda_jobs2.txt" | cut -c1-220
  mkdir -p /tmp/qman2
  for c in /tmp/qref2/*/; do
    c="$(basename "$c")"
    mkdir -p "/tmp/qman2/$c"
    for d in /tmp/qref2/$c/*/; do
      "$PY" "$here/compare.py" --manifest "$d" "/tmp/qman2/$c/$(basename "$d").manifest.json"
    done
  done
  tar czf "$OUT/quark_cuda_manifests2.tgz" -C /tmp/qman2 .
fi

if [[ -n "${SQ_MATRIX:-}" ]]; then
  sq="${SQ_BIN:-gpu-install/bin/shardquant}"
  # Quark's compressed-tensors loading needs the real package (quark_env would stub a broken one)
  "$PY" -c 'import compressed_tensors.compressors.base as b, compressed_tensors as c; print("compressed_tensors", c.__version__, "ok")' 2>&1 | tail -1
  export LD_LIBRARY_PATH="$(dirname "$(dirname "$sq")")/lib:${LD_LIBRARY_PATH:-}"
  t0=$(date +%s)
  sel=(--set "$SQ_MATRIX")
  [[ -n "${SQ_ONLY:-}" ]] && sel=(--only "$SQ_ONLY")
  "$PY" "$here/sq_matrix.py" make --sq "$sq" --root /tmp/sqm "${sel[@]}" >"$OUT/sq_make.txt" 2>&1
  rc=$?
  echo "make-checkpoint matrix ($SQ_MATRIX): rc=$rc $(ls /tmp/sqm | wc -l) checkpoints, $(du -sm /tmp/sqm | cut -f1) MB in $(( $(date +%s) - t0 )) s"
  "$PY" "$here/sq_matrix.py" jobs --root /tmp/sqm --out-root /tmp/qref3 "${sel[@]}" >"$OUT/sq_jobs.txt"
  t0=$(date +%s)
  timeout "${QUARK_S:-330}" "$PY" "$here/quark_ref.py" --jobs "$OUT/sq_jobs.txt" --device "$QDEV" --replace \
    >"$OUT/quark_cuda_sq_jobs.txt" 2>"$OUT/quark_cuda_sq_stderr.txt"
  rc=$?
  echo "quark F2F $QDEV on $(wc -l <"$OUT/sq_jobs.txt") jobs: rc=$rc $(grep -c '^JOB ok' "$OUT/quark_cuda_sq_jobs.txt") ok, $(grep -c '^JOB error' "$OUT/quark_cuda_sq_jobs.txt") errors, $(( $(date +%s) - t0 )) s"
  grep -m3 STUBBED "$OUT/quark_cuda_sq_stderr.txt"
  grep '^JOB error' "$OUT/quark_cuda_sq_jobs.txt" | sed 's/Registered values.*//' | cut -c1-200 | sort | uniq | head -40
  t0=$(date +%s)
  "$PY" "$here/ref_bundle.py" build "$OUT/quark-0.13-cuda-sq.json.gz" --gen sq --jobs "$OUT/sq_jobs.txt" \
    --outputs /tmp/qref3 --ckpt-root /tmp/sqm \
    --about "Quark 0.13 F2F on CUDA ($(nvidia-smi -L | head -1 | cut -c1-60)), inputs from shardquant make-checkpoint (tests/conformance/sq_matrix.py set $SQ_MATRIX)"
  echo "bundle built in $(( $(date +%s) - t0 )) s"
  # shardquant on the same jobs, until DEADLINE_S (default 470 s) after the start: first its CUDA
  # path on the recovered sources (FP8 and compressed-tensors labels), then the CPU on everything
  # (the CPU replay can also be run anywhere later: gpu_result.py --sq BIN).
  t0=$(date +%s)
  left=$(( ${DEADLINE_S:-470} - (t0 - T0) ))
  (( left > 240 )) && left=240
  (( left < 10 )) && left=10
  labels="$( { "$PY" "$here/sq_matrix.py" list --set fp8; "$PY" "$here/sq_matrix.py" list --set ct; } | sed 'p;s/$/-keep/' | paste -sd, -)"
  timeout "$left" "$PY" "$here/ref_bundle.py" run "$OUT/quark-0.13-cuda-sq.json.gz" --sq "$sq" \
    --work /tmp/rb-cuda --sq-device "${SQ_REPLAY_DEVICE:-cuda}" --labels "$labels" >"$OUT/replay_cuda.txt" 2>&1
  rc=$?
  echo "replay shardquant ${SQ_REPLAY_DEVICE:-cuda} (fp8 + ct labels, limit $left s): rc=$rc $(tail -1 "$OUT/replay_cuda.txt") in $(( $(date +%s) - t0 )) s"
  t0=$(date +%s)
  left=$(( ${DEADLINE_S:-470} - (t0 - T0) ))
  (( left < 10 )) && left=10
  timeout "$left" "$PY" "$here/ref_bundle.py" run "$OUT/quark-0.13-cuda-sq.json.gz" --sq "$sq" \
    --work /tmp/rb-cpu --sq-device cpu >"$OUT/replay_cpu.txt" 2>&1
  rc=$?
  echo "replay shardquant cpu (all labels, limit $left s): rc=$rc $(tail -1 "$OUT/replay_cpu.txt") in $(( $(date +%s) - t0 )) s"
fi

if [[ -d .conformance-ckpt && -z "${SKIP_MATRIX:-}" ]]; then
  t0=$(date +%s)
  jobs=/tmp/qref-jobs.txt
  : >"$jobs"
  schemes="$("$PY" -c "import sys; sys.path.insert(0, '$here'); import spec_ref; print(' '.join(spec_ref.SCHEMES))")"
  for c in .conformance-ckpt/*/; do
    c="$(basename "$c")"
    for s in $schemes; do echo "$PWD/.conformance-ckpt/$c $s /tmp/qref/$c/$s" >>"$jobs"; done
  done
  "$PY" "$here/quark_ref.py" --jobs "$jobs" --device "$QDEV" --replace >"$OUT/quark_cuda_jobs.txt" 2>&1
  echo "quark F2F cuda on $(wc -l <"$jobs") jobs: $(grep -c '^JOB ok' "$OUT/quark_cuda_jobs.txt") ok, $(grep -c '^JOB error' "$OUT/quark_cuda_jobs.txt") errors, $(( $(date +%s) - t0 )) s"
  mkdir -p /tmp/qman
  for c in /tmp/qref/*/; do
    c="$(basename "$c")"
    mkdir -p "/tmp/qman/$c"
    for d in /tmp/qref/$c/*/; do
      s="$(basename "$d")"
      "$PY" "$here/compare.py" --manifest "$d" "/tmp/qman/$c/$s.manifest.json"
    done
  done
  tar czf "$OUT/quark_cuda_manifests.tgz" -C /tmp/qman .
  # full outputs of the smallest checkpoint, for element-level diffs, if they fit
  small="$(du -s /tmp/qref/*/ | sort -n | head -1 | awk '{print $2}')"
  tar czf "$OUT/quark_cuda_outputs_small.tgz" -C "$(dirname "$small")" "$(basename "$small")"
  [[ $(stat -c %s "$OUT/quark_cuda_outputs_small.tgz") -lt 15000000 ]] || rm -f "$OUT/quark_cuda_outputs_small.tgz"
fi
if [[ -z "${SKIP_GOLDEN:-}" ]]; then
t0=$(date +%s)
"$PY" "$here/golden_tc.py" --device cpu >"$OUT/golden_cpu_gpuhost.txt" 2>&1
echo "golden_tc cpu (GPU host): rc=$? in $(( $(date +%s) - t0 )) s"
grep -E "^  TC|goldens passing" "$OUT/golden_cpu_gpuhost.txt"
fi

ls -la "$OUT"
