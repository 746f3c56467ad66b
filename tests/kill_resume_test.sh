#!/usr/bin/env bash
# The kill test (issue 11): runs `shardquant quantize` on a generated checkpoint of several shards
# under a small --memory-budget, kills it at 20 random points with SIGKILL and resumes each time
# with --resume, then does the same with SIGINT (exit 130, then resume). After every resumed run
# the output must be byte-identical to a clean run and hold no temporary file; nothing outside
# the output folder may change (the parent folder and a planted link's target are compared).
# Usage: kill_resume_test.sh SHARDQUANT WORK_DIR [SEED] [ROUNDS]
set -u
SQ=$1
WORK=$2
SEED=${3:-${SQ_KILL_SEED:-$(date +%s)}}
ROUNDS=${4:-20}
echo "kill test: seed $SEED, $ROUNDS rounds per signal (rerun with this seed to repeat)"
RANDOM=$SEED
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
SRC=$WORK/src CLEAN=$WORK/clean OUT=$WORK/out
fail() { echo "FAIL: $*"; exit 1; }

"$SQ" make-checkpoint --arch llama --size 24M --shard-size 3M --out "$SRC" --seed 7 >/dev/null ||
  fail "make-checkpoint"
# A planted link in the source to a file outside it: skipped, its target never touched.
echo "secret" > "$WORK/secret.txt"
ln -s "$WORK/secret.txt" "$SRC/special_tokens_map.json"
ARGS=(quantize --model-dir "$SRC" --scheme mxfp4 --memory-budget 8M --quiet)

t0=$(date +%s%N)
"$SQ" "${ARGS[@]}" --output-dir "$CLEAN" || fail "clean run"
t1=$(date +%s%N)
RUN_MS=$(( (t1 - t0) / 1000000 ))
echo "clean run: $RUN_MS ms, $(ls "$CLEAN"/*.safetensors | wc -l) shards"
[ -e "$CLEAN/special_tokens_map.json" ] && fail "a link leading outside the model was copied"

snapshot() {  # everything under WORK except the output folder: path, size, mtime
  (cd "$WORK" && find . -mindepth 1 -path ./out -prune -o -printf '%p %s %T@\n' | sort)
}
check_output() {  # $1: what happened
  local tmp
  tmp=$(find "$OUT" -name '*.sq-tmp-*' | head -1)
  [ -z "$tmp" ] || fail "$1: temporary file left: $tmp"
  diff -r "$CLEAN" "$OUT" >/dev/null || fail "$1: output differs from the clean run ($(diff -rq "$CLEAN" "$OUT" | head -3))"
}

before=$(snapshot)
for sig in KILL INT; do
  stopped=0
  for ((i = 1; i <= ROUNDS; i++)); do
    rm -rf "$OUT"
    delay=$(( RANDOM % (RUN_MS * 3 / 4 + 1) ))
    "$SQ" "${ARGS[@]}" --output-dir "$OUT" 2>/dev/null &
    pid=$!
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    kill -s "$sig" "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rc=$?
    [ "$sig" = KILL ] && [ "$rc" = 137 ] && stopped=$((stopped + 1))
    if [ "$sig" = INT ]; then
      # 130: stopped; 0: it had finished before the signal.
      [ "$rc" = 130 ] || [ "$rc" = 0 ] || fail "SIGINT round $i (after $delay ms): exit $rc, expected 130"
      if [ "$rc" = 130 ]; then
        stopped=$((stopped + 1))
        tmp=$(find "$OUT" -name '*.sq-tmp-*' 2>/dev/null | head -1)
        [ -z "$tmp" ] || fail "SIGINT round $i: the stopped run left $tmp"
      fi
    fi
    "$SQ" "${ARGS[@]}" --output-dir "$OUT" --resume || fail "$sig round $i (after $delay ms): resume failed"
    check_output "$sig round $i (after $delay ms, first run exit $rc)"
  done
  echo "SIG$sig: $ROUNDS rounds ($stopped stopped mid-run, the rest had finished), resumed, outputs identical"
done
after=$(snapshot)
[ "$before" = "$after" ] || fail "files outside the output folder changed: $(diff <(echo "$before") <(echo "$after") | head -5)"
[ "$(cat "$WORK/secret.txt")" = secret ] || fail "the planted link's target changed"
echo "PASS"
rm -rf "$WORK"
