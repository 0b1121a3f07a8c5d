#!/usr/bin/env bash
# The Linux kernel's own NBD client against `llraid serve`: inside a kernel-vm guest (this host has
# no nbd module), nbd-client -unix attaches /dev/nbd0, then mkfs.ext4, mount, write, remount, diff.
# Needs the build (scripts/setup.sh) and ../shared/tools/kernel-vm, which installs its own packages.
set -euo pipefail
cd "$(dirname "$0")/../.."
vm=$(bash scripts/kernel-vm-path.sh)
if [ ! -x "$vm" ]; then
  echo "40-nbd-kernel: $vm not found; set KERNEL_VM to the kernel-vm tool" >&2
  exit 1
fi
[ -f dist/src/cli/bin.cjs ] || npm run --silent build
# The guest leaves its verdict in a directory shared read-write (outside /tmp, which the guest
# replaces): kernel-vm's console filter sometimes prints nothing, a file always arrives.
shared=$(mktemp -d /var/tmp/llraid-nbd-kernel.XXXXXX)
trap 'rm -rf "$shared"' EXIT
out=$("$vm" --mem 2048 --cpus 2 --timeout 600 --rw "$shared" -- bash "$PWD/test/nbd/kernel/nbd-client-ext4.sh" "$shared/ok" 2>&1) || { echo "$out"; exit 1; }
echo "$out" | tail -3
[ -f "$shared/ok" ] || { echo "40-nbd-kernel: the guest did not finish (no $shared/ok)"; echo "$out"; exit 1; }
echo "40-nbd-kernel: ok"
