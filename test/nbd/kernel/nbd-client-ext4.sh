#!/usr/bin/env bash
# Runs inside the kernel-vm guest (which has the nbd module): `llraid serve` on a file, the kernel
# NBD client attached to it with nbd-client -unix, then mkfs.ext4, mount, write a tree of files,
# unmount, remount and compare. Prints "kernel-nbd: ok" on success.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
work=$(mktemp -d /tmp/llraid-kernel-nbd.XXXXXX)
serve_pid=
cleanup() {
  umount "$work/mnt" 2>/dev/null || true
  nbd-client -d /dev/nbd0 >/dev/null 2>&1 || true
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" || true
  rm -rf "$work"
}
trap cleanup EXIT

modprobe nbd nbds_max=4 2>/dev/null || true
[ -b /dev/nbd0 ] || { echo "kernel-nbd: /dev/nbd0 missing: the guest kernel has no nbd driver" >&2; exit 1; }
truncate -s 128M "$work/disk.img"
node "$root/dist/src/cli/bin.cjs" serve --file "$work/disk.img" --socket "$work/nbd.sock" --export-name vol >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 200); do [ -S "$work/nbd.sock" ] && break; sleep 0.1; done
[ -S "$work/nbd.sock" ] || { cat "$work/serve.log" >&2; exit 1; }
cat "$work/serve.log"

nbd-client -unix "$work/nbd.sock" /dev/nbd0 -N vol -b 4096 -timeout 30
echo "kernel-nbd: attached, size $(blockdev --getsize64 /dev/nbd0)"
mkfs.ext4 -q -F /dev/nbd0
mkdir -p "$work/mnt" "$work/src"
mount /dev/nbd0 "$work/mnt"
for d in a b c; do
  mkdir -p "$work/src/$d"
  for i in $(seq 1 10); do head -c $((i * 7919)) /dev/urandom >"$work/src/$d/f$i"; done
done
head -c 8M /dev/urandom >"$work/src/big"
cp -a "$work/src/." "$work/mnt/"
sync
umount "$work/mnt"
echo 3 >/proc/sys/vm/drop_caches
mount /dev/nbd0 "$work/mnt"
diff -r --exclude=lost+found "$work/src" "$work/mnt"
umount "$work/mnt"
fsck.ext4 -n -f /dev/nbd0 >/dev/null
nbd-client -d /dev/nbd0
echo "kernel-nbd: ok"
# The host reads this marker from a directory shared read-write: the console may not reach it.
if [ -n "${1:-}" ]; then echo ok >"$1"; fi
