#!/usr/bin/env bash
# Installs the Debian 12 packages shardquant builds and tests with (run as root, or with sudo).
# The CUDA toolkit is taken from /usr/local/cuda when present; without it the build is CPU-only.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config git time
      libtbb-dev libsimdjson-dev libzstd-dev nlohmann-json3-dev doctest-dev liburing-dev libcli11-dev
      clang-14 libclang-rt-14-dev python3 python3-numpy zstd
      slurm-wlm munge)  # the Slurm test starts a throwaway single-node cluster (tests/slurm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
