#!/usr/bin/env bash
# Submits a shardquant run as an N-task Slurm job array plus its finalize job, and prints both job
# ids ("ARRAY_ID FINALIZE_ID"). Extra sbatch options (partition, account, time, CPUs, GPUs) go in
# SBATCH_ARGS, e.g. SBATCH_ARGS="--partition=cpu --cpus-per-task=16 --time=2:00:00".
#   scripts/slurm/submit.sh 8 /shared/DeepSeek-V3 /shared/DeepSeek-V3-mxfp4 --scheme mxfp4
set -euo pipefail
if (($# < 3)); then
  echo "usage: $0 N SRC OUT [quantize options, e.g. --scheme mxfp4]" >&2
  exit 2
fi
n=$1 src=$2 out=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
read -r -a extra <<<"${SBATCH_ARGS:-}"
array=$(sbatch --parsable "${extra[@]}" --array="0-$((n - 1))" \
  "$here/quantize_array.sbatch" "$src" "$out" "$@")
array=${array%%;*}  # --parsable prints "id;cluster" on multi-cluster setups
fin=$(sbatch --parsable "${extra[@]}" --dependency="afterok:$array" \
  "$here/finalize.sbatch" "$src" "$out" "$@")
echo "${array} ${fin%%;*}"
