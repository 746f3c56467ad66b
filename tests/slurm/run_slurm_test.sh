#!/usr/bin/env bash
# The Slurm test: starts a throwaway single-node Slurm cluster on localhost (its own munge key,
# config, state and ports in a temporary folder; no cgroups), submits scripts/slurm/submit.sh's
# 4-task job array plus the finalize job on a generated checkpoint, and checks the output against
# a single run byte for byte. Installs nothing: without slurmctld, slurmd and munged (Debian's
# slurm-wlm and munge, scripts/install-deps.sh), or without root, or when the daemons do not come
# up, it prints why and exits 77 (ctest's skip). Every daemon it started is stopped on any exit.
#   tests/slurm/run_slurm_test.sh build/shardquant
set -euo pipefail
bin=$(realpath "${1:?usage: $0 PATH/TO/shardquant}")
repo=$(cd "$(dirname "$0")/../.." && pwd)
skip() {
  echo "SKIPPED: $*"
  exit 77
}
for c in slurmctld slurmd munged sbatch squeue scontrol sinfo; do
  command -v "$c" >/dev/null || skip "$c not found (apt-get install slurm-wlm munge)"
done
[ "$(id -u)" -eq 0 ] || skip "the throwaway cluster runs its daemons as root (SlurmUser=root)"

tmp=$(mktemp -d /tmp/sq-slurm-XXXXXX)
pids=()
array="" fin=""
cleanup() {
  local rc=$?
  # Jobs first, so that no job step outlives slurmd; then the daemons this script started.
  if [ -n "$array$fin" ]; then
    scancel $array $fin 2>/dev/null || true
    for _ in $(seq 50); do
      [ -z "$(squeue -h -j "${array:-0},${fin:-0}" 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$tmp/munged.pid" ] && kill "$(cat "$tmp/munged.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    for f in "$tmp"/*.log "$tmp"/jobs/*.out; do
      [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
    done
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# munge with its own key and socket.
mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool" "$tmp/jobs"
chmod 700 "$tmp/munge"
head -c 1024 /dev/urandom >"$tmp/munge/munge.key"
chmod 400 "$tmp/munge/munge.key"
sock=$tmp/munge/munge.sock
munged --force --key-file="$tmp/munge/munge.key" --socket="$sock" \
  --pid-file="$tmp/munged.pid" --log-file="$tmp/munged.log" --seed-file="$tmp/munge/seed" \
  >"$tmp/munged.out" 2>&1 || skip "munged did not start: $(tail -n 3 "$tmp/munged.out" "$tmp/munged.log" 2>/dev/null | tr '\n' ' ')"

# Two free TCP ports.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ctl_port=0
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 30000))
  if port_free "$p" && port_free $((p + 1)); then ctl_port=$p; break; fi
done
[ "$ctl_port" -ne 0 ] || skip "no two free TCP ports found"

cpus=$(nproc)
mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
mem=${mem:-1024}
conf=$tmp/slurm.conf
cat >"$conf" <<CONF
ClusterName=sqtest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctl_port
SlurmdPort=$((ctl_port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$conf
slurmctld -D -i -f "$conf" >"$tmp/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N localhost -f "$conf" >"$tmp/slurmd.out" 2>&1 &
pids+=($!)
up=""
for _ in $(seq 150); do
  state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
  [ "$state" = idle ] && { up=1; break; }
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || break 2; done
  sleep 0.2
done
[ -n "$up" ] || skip "Slurm did not come up (node state '${state:-none}'): $(tail -n 5 "$tmp"/slurmctld.out "$tmp"/slurmd.out "$tmp"/slurmctld.log "$tmp"/slurmd.log 2>/dev/null | tr '\n' ' ')"
echo "slurm up on ports $ctl_port/$((ctl_port + 1)) with $cpus CPUs in $SECONDS s"

# A checkpoint whose shards split over 4 workers, and the reference single run.
"$bin" make-checkpoint --arch llama --size 12M --shard-size 192K --out "$tmp/src" >/dev/null
"$bin" quantize --model-dir "$tmp/src" --output-dir "$tmp/single" --scheme mxfp4 --quiet

cd "$tmp/jobs"
export SHARDQUANT=$bin
export SBATCH_ARGS="--output=$tmp/jobs/%x-%A_%a.out --chdir=$tmp/jobs"
read -r array fin < <("$repo/scripts/slurm/submit.sh" 4 "$tmp/src" "$tmp/out" --scheme mxfp4 --quiet)
echo "submitted array $array and finalize $fin"
state=""
for _ in $(seq 600); do
  line=$(scontrol show job "$fin" -o 2>/dev/null || true)
  state=$(sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' <<<"$line")
  case "$state" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
  # A failed array task leaves finalize pending forever (afterok).
  [[ "$line" == *DependencyNeverSatisfied* ]] && { state="$state (an array task failed)"; break; }
  sleep 0.1
done
scontrol show job "$array" -o | sed -n 's/.*\(JobId=[0-9]* ArrayJobId=[0-9]* ArrayTaskId=[0-9]*\).*\(JobState=[A-Z]*\).*\(ExitCode=[0-9:]*\).*/  \1 \2 \3/p'
echo "finalize job $fin: ${state:-unknown}"
if [ "$state" != COMPLETED ]; then
  echo "FAILED: the finalize job did not complete"
  exit 1
fi
n_logs=$(ls "$tmp"/jobs/shardquant-"${array}"_*.out | wc -l)
[ "$n_logs" -eq 4 ] || { echo "FAILED: $n_logs array task logs, not 4"; exit 1; }
if ! diff -r "$tmp/single" "$tmp/out"; then
  echo "FAILED: the Slurm array + finalize output differs from a single run"
  exit 1
fi
echo "PASSED: 4-task array + finalize == single run ($(ls "$tmp/out" | wc -l) files) in $SECONDS s"
