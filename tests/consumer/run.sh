#!/usr/bin/env bash
# ctest consumer_install: installs the build tree into a fresh prefix, builds tests/consumer
# against it (find_package(shardquant)) and with pkg-config, runs both on a generated checkpoint
# and checks that their output folders are byte-identical to the installed program's.
# Usage: run.sh BUILD_DIR WORK_DIR
set -euo pipefail
BUILD=$1
WORK=$2
SRC=$(cd "$(dirname "$0")" && pwd)
rm -rf "$WORK"
mkdir -p "$WORK"
PREFIX=$WORK/prefix
cmake --install "$BUILD" --prefix "$PREFIX" >"$WORK/install.log"
# Nothing internal is installed: only the public leaf headers.
ls "$PREFIX/include/shardquant"
if grep -rn '#include "' "$PREFIX/include/shardquant" | grep -v '"shardquant/'; then
  echo "FAIL: a public header includes a non-public one"; exit 1
fi
if ls "$PREFIX/bin" | grep -q tests; then echo "FAIL: test binaries installed by default"; exit 1; fi
# Only the public API is exported.
SO=$(readlink -f "$PREFIX/lib/libshardquant.so")
readelf -d "$SO" | grep SONAME
if nm -DC --defined-only "$SO" | grep -v ' shardquant::\(input_error\|io_error\|usage_error\|cancelled_error\|quantize_checkpoint\|plan_checkpoint\|run_report\|plan_report\|default_memory_budget\|version\|schemes\|inspect\|parse_io_engine\|io_engine_name\)' |
   grep ' shardquant::'; then
  echo "FAIL: internal symbols exported"; exit 1
fi

cmake -S "$SRC" -B "$WORK/build" -G Ninja -DCMAKE_PREFIX_PATH="$PREFIX" >"$WORK/configure.log"
cmake --build "$WORK/build" >"$WORK/build.log"
if command -v pkg-config >/dev/null; then
  export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
  # shellcheck disable=SC2046
  c++ "$SRC/main.cpp" -o "$WORK/consumer_pc" $(pkg-config --cflags --libs shardquant)
fi

"$PREFIX/bin/shardquant" make-checkpoint --arch llama --size 24M --shard-size 8M --seed 5 \
  --out "$WORK/model" >/dev/null
"$PREFIX/bin/shardquant" quantize --model-dir "$WORK/model" --output-dir "$WORK/cli" \
  --scheme mxfp4 --quiet
"$WORK/build/consumer" "$WORK/model" "$WORK/api" mxfp4 >"$WORK/api.json"
diff -r "$WORK/cli" "$WORK/api"
if [ -x "$WORK/consumer_pc" ]; then
  "$WORK/consumer_pc" "$WORK/model" "$WORK/api_pc" mxfp4 >/dev/null
  diff -r "$WORK/cli" "$WORK/api_pc"
fi
echo "consumer output byte-identical to the CLI's ($(ls "$WORK/api" | wc -l) files)"
