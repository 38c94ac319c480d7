#!/usr/bin/env bash
# Installs the system libraries Lockstep builds against: OpenBLAS, Open MPI (library, headers, mpirun)
# and pkg-config; and iproute2, whose network namespaces make the multi-host tests' hosts. Idempotent: does nothing when they are already there. Needs root (or sudo) on Debian.
set -euo pipefail
packages=(libopenblas-dev libopenmpi-dev openmpi-bin pkg-config iproute2)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "Installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
