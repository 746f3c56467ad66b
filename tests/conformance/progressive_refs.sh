#!/usr/bin/env bash
# Quark references for the custom progressive specs of tests/conformance/specs/*.json (shardquant's
# --quant-spec format; quark_ref.py --spec builds the same QConfig). Owns .conformance-ckpt3/ (two
# make_ckpt.py llama checkpoints, F32 and BF16), tests/conformance/progressive_jobs.txt's outputs
# and /tmp/sqprog-refs; nothing else.
#
#   bash tests/conformance/progressive_refs.sh make
#       (here) the two checkpoints; add "/.conformance-ckpt3/" to .git/info/exclude once.
#   device tool, carry [".whl", ".conformance-ckpt3"]:
#       SKIP_GOLDEN=1 SKIP_MATRIX=1 JOBS=tests/conformance/progressive_jobs.txt bash tests/conformance/gpu_run.sh
#       -> $OUT/quark_cuda_manifests2.tgz (one manifest per job: /tmp/qref2/<ckpt>/<spec>)
#   bash tests/conformance/progressive_refs.sh compare DIR
#       (here) DIR = that tgz unpacked; shardquant (SQ_BIN, default build/shardquant) quantizes both
#       checkpoints with every spec on the CPU and compare.py checks each against its Quark-on-CUDA
#       manifest; ends with "N passed, N failed".
#   bash tests/conformance/progressive_refs.sh cpu
#       (here) Quark on the CPU for the same jobs and progressive_check.py: differences must come
#       from the CPU's scale rounding (TC4; TC1 for an fp8 per-tensor first stage on BF16) only.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PY="${PYTHON:-$root/.venv-conformance/bin/python}"
SQ="${SQ_BIN:-$root/build/shardquant}"
ck="${CKPT_DIR:-$root/.conformance-ckpt3}"  # the device run reads .conformance-ckpt3
work="${WORK_DIR:-/tmp/sqprog-refs}"
specs=("$here"/specs/*.json)

case "${1:-}" in
  make)
    for d in fp32 bf16; do
      "$PY" "$here/make_ckpt.py" --arch llama --dtype "$d" --out "$ck/llama-$d" || exit 1
    done
    ;;
  compare)
    man="${2:?usage: progressive_refs.sh compare MANIFEST_DIR}"
    pass=0 fail=0
    for d in fp32 bf16; do
      for s in "${specs[@]}"; do
        n="$(basename "$s" .json)"
        out="$work/sq/llama-$d/$n"
        rm -rf "$out"
        "$SQ" quantize --model-dir "$ck/llama-$d" --output-dir "$out" --quant-spec "$s" --quiet
        if "$PY" "$here/compare.py" "$man/llama-$d/$n.manifest.json" "$out" --label "llama-$d/$n" |
          tail -1 | grep -q 'tensors_identical=\([0-9]*\)/\1 config=ok files=ok'; then
          pass=$((pass + 1))
        else
          fail=$((fail + 1))
          echo "DIFF llama-$d/$n"
        fi
      done
    done
    echo "$pass passed, $fail failed"
    ;;
  cpu)
    mkdir -p "$work"
    : >"$work/cpu_jobs.txt"
    for d in fp32 bf16; do
      for s in "${specs[@]}"; do
        echo "$ck/llama-$d $s $work/quark_cpu/llama-$d/$(basename "$s" .json)" >>"$work/cpu_jobs.txt"
      done
    done
    "$PY" "$here/quark_ref.py" --jobs "$work/cpu_jobs.txt" --device cpu --replace | grep -v '^JOB ok'
    for d in fp32 bf16; do
      for s in "${specs[@]}"; do
        n="$(basename "$s" .json)"
        out="$work/sq/llama-$d/$n"
        rm -rf "$out"
        "$SQ" quantize --model-dir "$ck/llama-$d" --output-dir "$out" --quant-spec "$s" --quiet
        "$PY" "$here/compare.py" "$work/quark_cpu/llama-$d/$n" "$out" --label "llama-$d/$n" | tail -1
        "$PY" "$here/progressive_check.py" "$work/quark_cpu/llama-$d/$n" "$out" --label "llama-$d/$n" |
          tail -1
      done
    done
    ;;
  *)
    sed -n '2,22p' "$0"
    exit 2
    ;;
esac
