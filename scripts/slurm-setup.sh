#!/usr/bin/env bash
# Install Debian's Slurm and munge packages when missing, so tests can start a one-node cluster.
# Installing only: tests/slurm_cluster.py writes the config and starts the daemons itself.
# Idempotent: does nothing when every binary is present; runs `apt-get update` only when needed.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
# Debian puts the daemons in sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# Wait for another apt/dpkg run instead of failing on its lock.
APT_OPTS=(-q -o DPkg::Lock::Timeout=300)
BINARIES=(slurmctld slurmd sbatch squeue scancel scontrol sinfo munged)

missing() {
  local bin
  for bin in "${BINARIES[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || return 0
  done
  return 1
}

if ! missing; then
  echo "slurm-setup: Slurm and munge already installed"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "slurm-setup: need root (or sudo) to install: ${PACKAGES[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
install() {
  "${SUDO[@]}" apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${PACKAGES[@]}"
}

# Installing must not start the packages' system daemons: the tests start their own.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
fi

start=$(date +%s)
# Package lists may be absent (fresh image) or stale (404 on download): update, then retry once.
if ! install; then
  echo "slurm-setup: install failed; running apt-get update and retrying" >&2
  "${SUDO[@]}" apt-get "${APT_OPTS[@]}" update
  install
fi

if missing; then
  echo "slurm-setup: packages installed but a binary is still missing (${BINARIES[*]})" >&2
  exit 1
fi
echo "slurm-setup: installed ${PACKAGES[*]} in $(($(date +%s) - start)) s"
