#!/usr/bin/env bash
# End-to-end conformance driver: synthetic checkpoints (shardquant make-checkpoint) -> Quark F2F
# (the reference) and shardquant quantize, for every scheme shardquant supports -> compare.py
# per (checkpoint, scheme) -> one table. Works from a build tree or an installed folder.
# Owns nothing but its work directory; never deletes anything outside it.
#
# Usage: tests/conformance/run_all.sh [options]
#   --sq-device cpu|cuda      device for shardquant quantize (default cpu; env SQ_DEVICE)
#   --quark-device cpu|cuda   device for Quark (default: cuda if torch sees one, else cpu)
#   --ref-root DIR            use Quark outputs already made (DIR/<ckpt>/<scheme>/) instead of running Quark
#   --ref-bundle FILE         replay a stored Quark reference instead (ref_bundle.py run): e.g.
#                             tests/conformance/reference/quark-0.13-cuda.json.gz (Quark on an H100, 181
#                             runs incl. FP8 sources, keep-original, converters, overrides); --schemes,
#                             --work, --sq-device apply
#   --ckpt-gen sq|python      checkpoints from `shardquant make-checkpoint` (default) or from
#                             make_ckpt.py (numpy; fixed toy shapes, plain arch:dtype[:odd] entries only)
#   --set plain|fp8|ct|all    sq_matrix.py's checkpoint sets (default plain: 3 archs x bf16/fp16/fp32,
#                             some odd; fp8: block-FP8 sources incl. odd and presharded; ct: the
#                             compressed-tensors variants)
#   --matrix N1,N2,...        checkpoints instead of --set: sq_matrix.py names
#                             (ARCH-DTYPE[-odd][-fp8src|-ps<ROWS>|-ct-<VARIANT>]) or arch:dtype[:odd]
#   --schemes a,b,...         default: `shardquant schemes` (all supported)
#   --size BYTES --shard-size BYTES   make-checkpoint sizes (default 6000000 / 2500000, as sq_matrix.py
#                             and the reference bundles)
#   --work DIR                work directory (default ./conformance-work; must be empty or absent,
#                             or hold an earlier run of this script: its checkpoints are reused)
#   --no-quark / --no-sq      skip one side (e.g. make only the references)
# Env: SQ_BIN   shardquant binary (default <repo>/build/shardquant, then `shardquant` on PATH)
#      PYTHON   Python with Quark (default <repo>/.venv-conformance/bin/python, then python3)
# Exit status: 0 when every (checkpoint, scheme) pair is identical, both sides refused it, or it is a
# documented Quark difference (sq_matrix.py DOCUMENTED).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

sq_device="${SQ_DEVICE:-cpu}"
quark_device=""
ref_root=""
ref_bundle=""
ckpt_gen=""
schemes=""
matrix=""
ckpt_set="plain"
size=6000000
shard_size=2500000
work="$PWD/conformance-work"
do_quark=1
do_sq=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sq-device) sq_device="$2"; shift 2 ;;
    --quark-device) quark_device="$2"; shift 2 ;;
    --ref-root) ref_root="$2"; shift 2 ;;
    --ref-bundle) ref_bundle="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
    --ckpt-gen) ckpt_gen="$2"; shift 2 ;;
    --schemes) schemes="$2"; shift 2 ;;
    --matrix) matrix="$2"; shift 2 ;;
    --set) ckpt_set="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --shard-size) shard_size="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --no-quark) do_quark=0; shift ;;
    --no-sq) do_sq=0; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$repo/.venv-conformance/bin/python" ]]; then py="$repo/.venv-conformance/bin/python"; else py=python3; fi
fi
sq="${SQ_BIN:-}"
if [[ -z "$sq" ]]; then
  if [[ -x "$repo/build/shardquant" ]]; then sq="$repo/build/shardquant"; else sq="$(command -v shardquant || true)"; fi
fi
if [[ -z "$sq" || ! -x "$sq" ]]; then
  if [[ $do_sq == 1 || "$ckpt_gen" == sq ]]; then echo "run_all.sh: no shardquant binary (set SQ_BIN)" >&2; exit 2; fi
  sq=""
fi
if [[ -n "$ref_bundle" ]]; then
  # Stored Quark-CUDA reference: ref_bundle.py regenerates the inputs, runs shardquant, compares.
  [[ -n "$sq" ]] || { echo "run_all.sh: --ref-bundle needs the shardquant binary (SQ_BIN)" >&2; exit 2; }
  exec "$py" "$here/ref_bundle.py" run "$ref_bundle" --sq "$sq" --work "$work" --sq-device "$sq_device" \
    ${schemes:+--schemes "$schemes"} --python "$py"
fi
if [[ -z "$ckpt_gen" ]]; then
  if [[ -n "$sq" ]] && "$sq" make-checkpoint --help >/dev/null 2>&1; then ckpt_gen=sq; else
    echo "run_all.sh: no working 'shardquant make-checkpoint'; falling back to make_ckpt.py" >&2; ckpt_gen=python; fi
fi
if [[ -z "$matrix" ]]; then
  if [[ $ckpt_gen == sq ]]; then matrix="$("$py" "$here/sq_matrix.py" list --set "$ckpt_set" | paste -sd, -)"
  else matrix="llama:bf16,llama:fp16:odd,deepseek_v3:bf16,deepseek_v3:fp16:odd,qwen3_moe:fp32,qwen3_moe:bf16:odd"; fi
fi
if [[ -z "$quark_device" ]]; then
  quark_device="$("$py" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")' 2>/dev/null || echo cpu)"
fi
if [[ -z "$schemes" && -n "$sq" ]]; then
  # `shardquant schemes` prints one scheme per line, name first.
  schemes="$("$sq" schemes 2>/dev/null | awk '/^not in/ {exit} /^  [a-z0-9_]+/ {print $1}' | paste -sd, -)"
fi
if [[ -z "$schemes" ]]; then
  schemes="$("$py" -c "import sys; sys.path.insert(0, '$here'); import spec_ref; print(','.join(spec_ref.SCHEMES))")"
fi
[[ -n "$schemes" ]] || { echo "run_all.sh: no schemes" >&2; exit 2; }

if [[ -e "$work" && ! -f "$work/.run_all" && -n "$(ls -A "$work" 2>/dev/null)" ]]; then
  echo "run_all.sh: $work exists, is not empty and is not a run_all work dir" >&2; exit 2
fi
mkdir -p "$work/ckpt"
touch "$work/.run_all"
ckroot="$work/ckpt"
if [[ -n "$ref_root" ]]; then
  qroot="$ref_root"
  do_quark=0
else
  qroot="$work/quark-$quark_device"
fi
sqroot="$work/sq-$sq_device"
echo "run_all.sh: shardquant=${sq:-none} ($sq_device) python=$py quark=${ref_bundle:-${ref_root:-$quark_device}} checkpoints=$ckpt_gen work=$work"
echo "run_all.sh: schemes=$schemes"

# 1. checkpoints
ckpts=()
IFS=, read -ra entries <<<"$matrix"
for e in "${entries[@]}"; do
  if [[ "$e" == *:* ]]; then
    IFS=: read -r arch dt odd <<<"$e"
    name="$arch-$dt${odd:+-odd}"
  else
    name="$e"
  fi
  ckpts+=("$name")
  if [[ ! -f "$ckroot/$name/config.json" ]]; then
    if [[ $ckpt_gen == sq ]]; then
      # sq_matrix.py's name -> make-checkpoint arguments (the ones reference bundles record)
      read -ra args <<<"$("$py" "$here/sq_matrix.py" args "$name")" || exit 1
      args=(make-checkpoint "${args[@]}" --out "$ckroot/$name")
      for i in "${!args[@]}"; do
        [[ "${args[$i]}" == --size ]] && args[$((i + 1))]="$size"
        [[ "${args[$i]}" == --shard-size ]] && args[$((i + 1))]="$shard_size"
      done
    else
      [[ "$e" == *:* ]] || { echo "run_all.sh: --ckpt-gen python takes arch:dtype[:odd] entries, not $e" >&2; exit 2; }
      args=("$here/make_ckpt.py" --arch "$arch" --dtype "$dt" --out "$ckroot/$name")
      [[ -n "$odd" ]] && args+=(--odd-shapes)
    fi
    if [[ $ckpt_gen == sq ]]; then "$sq" "${args[@]}"; else "$py" "${args[@]}"; fi >"$work/make-$name.log" 2>&1 \
      || { echo "make checkpoint $name failed:"; cat "$work/make-$name.log"; exit 1; }
  fi
done


IFS=, read -ra scheme_list <<<"$schemes"

# 2. Quark (one Python process for all runs)
if [[ $do_quark == 1 ]]; then
  jobs="$work/quark-jobs.txt"
  : >"$jobs"
  for c in "${ckpts[@]}"; do
    for s in "${scheme_list[@]}"; do
      [[ -e "$qroot/$c/$s" ]] || echo "$ckroot/$c $s $qroot/$c/$s" >>"$jobs"
    done
  done
  if [[ -s "$jobs" ]]; then
    t0=$(date +%s)
    "$py" "$here/quark_ref.py" --jobs "$jobs" --device "$quark_device" --replace >"$work/quark-jobs.log" 2>"$work/quark.log" || true
    echo "run_all.sh: Quark ($quark_device): $(grep -c '^JOB ok' "$work/quark-jobs.log" || true) ok, $(grep -c '^JOB error' "$work/quark-jobs.log" || true) errors in $(( $(date +%s) - t0 )) s"
  fi
fi

# 3. shardquant
if [[ $do_sq == 1 ]]; then
  t0=$(date +%s)
  for c in "${ckpts[@]}"; do
    for s in "${scheme_list[@]}"; do
      out="$sqroot/$c/$s"
      [[ -e "$out" ]] && continue
      mkdir -p "$(dirname "$out")"
      if ! "$sq" quantize --model-dir "$ckroot/$c" --output-dir "$out" --scheme "$s" --device "$sq_device" \
          >"$out.log" 2>&1; then
        mkdir -p "$out"
        cp "$out.log" "$out/SQ_ERROR.txt"
      fi
    done
  done
  echo "run_all.sh: shardquant ($sq_device) done in $(( $(date +%s) - t0 )) s"
fi

# 4. compare
refpath() {  # reference for checkpoint $1, scheme $2
  echo "$qroot/$1/$2"
}
# checkpoints where Quark is known to depart from formats.md (sq_matrix.py DOCUMENTED)
docs=" $("$py" -c "import sys; sys.path.insert(0, '$here'); import sq_matrix; print(' '.join(sq_matrix.DOCUMENTED))") "
status=0
n_ok=0; n_all=0; n_doc=0
printf '\n%-22s %-22s %-12s %-8s %-6s %s\n' scheme checkpoint tensors config files note
for s in "${scheme_list[@]}"; do
  for c in "${ckpts[@]}"; do
    q="$(refpath "$c" "$s")"; o="$sqroot/$c/$s"
    qs="$("$py" "$here/compare.py" --status "$q")"
    n_all=$((n_all + 1))
    if [[ "$qs" == missing || ! -e "$o" ]]; then
      printf '%-22s %-22s %-12s %-8s %-6s %s\n' "$s" "$c" - - - "not run"; status=1; continue
    fi
    se=0
    [[ -f "$o/SQ_ERROR.txt" ]] && se=1
    if [[ "$qs" == error || $se == 1 ]]; then
      if [[ "$qs" == error && $se == 1 ]]; then note="both refused"; n_ok=$((n_ok + 1))
      elif [[ "$qs" == error && "$docs" == *" $c "* ]]; then note="documented: ONLY Quark refused"; n_doc=$((n_doc + 1))
      else note="ONLY $([[ "$qs" == error ]] && echo Quark || echo shardquant) refused"; status=1; fi
      printf '%-22s %-22s %-12s %-8s %-6s %s\n' "$s" "$c" - - - "$note"; continue
    fi
    "$py" "$here/compare.py" "$q" "$o" --label "$s/$c" --json "$o.compare.json" >"$o.compare.txt" 2>&1 || true
    line="$(tail -1 "$o.compare.txt")"
    t="$(sed -n 's/.*tensors_identical=\([0-9/]*\).*/\1/p' <<<"$line")"
    cf="$(sed -n 's/.*config=\([A-Za-z]*\).*/\1/p' <<<"$line")"
    fl="$(sed -n 's/.*files=\([A-Za-z]*\).*/\1/p' <<<"$line")"
    note=""
    if [[ -z "$t" || "${t%/*}" != "${t#*/}" || "$cf" != ok || "$fl" != ok ]]; then
      if [[ "$docs" == *" $c "* ]]; then note="documented: see $o.compare.txt"; n_doc=$((n_doc + 1))
      else status=1; note="see $o.compare.txt"; fi
    else n_ok=$((n_ok + 1)); fi
    printf '%-22s %-22s %-12s %-8s %-6s %s\n' "$s" "$c" "${t:-?}" "${cf:-?}" "${fl:-?}" "$note"
  done
done
echo
echo "$n_ok passed, $n_doc documented, $((n_all - n_ok - n_doc)) failed"
exit $status
