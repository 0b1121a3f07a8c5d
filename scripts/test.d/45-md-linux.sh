#!/usr/bin/env bash
# llraid's md engine and Linux md read each other's arrays. Forward: raid1 and raid10 near=2
# members made by test/md/linux-interop/make-members.ts are assembled by the real kernel md driver
# and mdadm inside ../shared/tools/kernel-vm and must hold the same bytes and size. Reverse:
# arrays created and written by Linux md in the guest are assembled by llraid on the host
# (test/md/linux-interop/check-linux-members.ts) and must read back what Linux wrote.
set -euo pipefail
cd "$(dirname "$0")/../.."
VM=$(bash scripts/kernel-vm-path.sh)
if [ ! -x "$VM" ]; then
  echo "45-md-linux: no kernel-vm at $VM (set KERNEL_VM); this suite needs a Linux guest with md" >&2
  exit 1
fi
# The guest sees the host filesystem read-only except /tmp, so the files live outside /tmp.
work=$(mktemp -d /var/tmp/llraid-md-linux.XXXXXX)
trap 'rm -rf "$work"' EXIT
node --import tsx test/md/linux-interop/make-members.ts "$work"
cat > "$work/guest.sh" <<GUEST
set -e
W=$work
mdadm --assemble /dev/md1 /dev/vda /dev/vdb
cmp -n 4194304 /dev/md1 \$W/r1.expected
test "\$(blockdev --getsize64 /dev/md1)" = "\$(cat \$W/r1.size)"
mdadm --detail /dev/md1 | grep -E 'Raid Level|State :|Active Devices'
mdadm --stop /dev/md1
mdadm --assemble /dev/md2 /dev/vdc /dev/vdd /dev/vde
cmp -n 4194304 /dev/md2 \$W/r10.expected
test "\$(blockdev --getsize64 /dev/md2)" = "\$(cat \$W/r10.size)"
mdadm --detail /dev/md2 | grep -E 'Raid Level|Layout|State :|Active Devices'
mdadm --stop /dev/md2
mdadm --create /dev/md3 --run --metadata=1.2 --level=1 --raid-devices=2 --bitmap=none --assume-clean --name=linux-r1 /dev/vdf /dev/vdg
dd if=\$W/r1.expected of=/dev/md3 bs=1M oflag=direct status=none
mdadm --stop /dev/md3
mdadm --create /dev/md4 --run --metadata=1.2 --level=10 --layout=n2 --chunk=64 --raid-devices=3 --bitmap=none --assume-clean --name=linux-r10 /dev/vdh /dev/vdi /dev/vdj
dd if=\$W/r10.expected of=/dev/md4 bs=1M oflag=direct status=none
mdadm --stop /dev/md4
echo LINUX-MD-INTEROP-OK
echo ok > \$W/ok
GUEST
for f in l1-0 l1-1 l10-0 l10-1 l10-2; do truncate -s 64M "$work/$f.img"; done
out=$("$VM" --timeout 600 --rw "$work" --disk "$work/r1-0.img" --disk "$work/r1-1.img" \
  --disk "$work/r10-0.img" --disk "$work/r10-1.img" --disk "$work/r10-2.img" \
  --disk "$work/l1-0.img" --disk "$work/l1-1.img" \
  --disk "$work/l10-0.img" --disk "$work/l10-1.img" --disk "$work/l10-2.img" -- sh "$work/guest.sh" 2>&1) || { echo "$out"; exit 1; }
echo "$out" | grep -v '^\[' || true
# The verdict comes through the shared directory: the console filter of kernel-vm may drop it.
[ -f "$work/ok" ] || { echo "45-md-linux: the guest did not finish (no $work/ok)"; echo "$out"; exit 1; }
node --import tsx test/md/linux-interop/check-linux-members.ts "$work/r1.expected" "$work/l1-0.img" "$work/l1-1.img"
node --import tsx test/md/linux-interop/check-linux-members.ts "$work/r10.expected" "$work/l10-0.img" "$work/l10-1.img" "$work/l10-2.img"
