#!/usr/bin/env bash
# csi-sanity (kubernetes-csi/csi-test) against `llraid csi` with a disk pool of three directories
# on an XFS made with reflink=1 in a loop file (snapshots and clones are reflinks of member files,
# and the plugin advertises them only where the disks can clone), fuse attach, real mounts: once
# with mount volumes and once with raw block volumes.
# The plugin's --kubelet-dir is $work/kubelet, and csi-sanity's mount and staging dirs are below
# it: the plugin refuses Node calls that name any other path.
# Prints each run's passed/failed/skipped counts; fails when any spec fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

CSI_TEST_VERSION=v5.4.0
GOBIN="${GOBIN:-$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin}"
SANITY="$GOBIN/csi-sanity"
if ! { [ -x "$SANITY" ] && go version -m "$SANITY" 2>/dev/null | grep -q "csi-test/v5[[:space:]]*$CSI_TEST_VERSION"; }; then
  command -v go >/dev/null || { echo "50-csi-sanity: go is needed to build csi-sanity" >&2; exit 1; }
  echo "50-csi-sanity: building csi-sanity $CSI_TEST_VERSION"
  GOBIN="$GOBIN" go install "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@$CSI_TEST_VERSION"
fi
[ -f dist/src/cli/bin.cjs ] || npm run --silent build

work=$(mktemp -d /tmp/llraid-csi-sanity.XXXXXX)
plugin_pid=
cleanup() {
  if [ -n "$plugin_pid" ]; then kill "$plugin_pid" 2>/dev/null || true; wait "$plugin_pid" 2>/dev/null || true; fi
  # Anything a failed run left staged: unmount, detach and stop engines found under this run dir.
  for m in $(awk -v w="$work" '$2 ~ "^"w {print $2}' /proc/mounts | grep -vx "$work/xfs" | sort -r); do umount -l "$m" 2>/dev/null || true; done
  for pidf in "$work"/run/*/nbdfuse.pid; do [ -e "$pidf" ] || continue; kill "$(cat "$pidf")" 2>/dev/null || true; done
  pkill -TERM -f -- "--socket $work/run/" 2>/dev/null || true
  # The disks' filesystem last, once no engine holds a member on it (its loop device goes with it).
  if mountpoint -q "$work/xfs"; then umount "$work/xfs" 2>/dev/null || umount -l "$work/xfs" || true; fi
  if [ -n "${LLRAID_CSI_LOGS:-}" ]; then mkdir -p "$LLRAID_CSI_LOGS"; cp "$work"/*.log "$LLRAID_CSI_LOGS"/ || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# The disks: one sparse XFS image with reflink (mkfs.xfs -m reflink=1), mounted through a loop
# device that `mount -o loop` frees again at umount. No reflink, no snapshot tests: fail, never skip.
truncate -s 4G "$work/disks.img"
mkfs.xfs -q -m reflink=1 "$work/disks.img"
mkdir -p "$work/xfs"
mount -o loop "$work/disks.img" "$work/xfs"
mkdir -p "$work"/xfs/disk-a "$work"/xfs/disk-b "$work"/xfs/disk-c "$work"/kubelet

node dist/src/cli/bin.cjs csi --endpoint "unix://$work/csi.sock" --node-id sanity-node \
  --disks "$work/xfs/disk-a,$work/xfs/disk-b,$work/xfs/disk-c" --attach fuse --run-dir "$work/run" --kubelet-dir "$work/kubelet" \
  >"$work/plugin.log" 2>&1 &
plugin_pid=$!
for _ in $(seq 100); do [ -S "$work/csi.sock" ] && break; sleep 0.1; done
[ -S "$work/csi.sock" ] || { cat "$work/plugin.log"; exit 1; }

status=0
for access in mount block; do
  echo "-- csi-sanity --csi.testvolumeaccesstype=$access"
  set +e
  "$SANITY" --csi.endpoint "unix://$work/csi.sock" --csi.testvolumeaccesstype="$access" \
    --csi.testvolumesize=$((64 * 1024 * 1024)) --csi.testvolumeexpandsize=$((128 * 1024 * 1024)) \
    --csi.mountdir "$work/kubelet/target" --csi.stagingdir "$work/kubelet/staging" \
    --ginkgo.no-color --ginkgo.timeout=10m --ginkgo.v >"$work/sanity-$access.log" 2>&1
  rc=$?
  set -e
  grep -E '^\s*\[FAIL\]' "$work/sanity-$access.log" || true
  summary=$(grep -E '(SUCCESS|FAIL)! -- ' "$work/sanity-$access.log" | tail -1)
  echo "csi-sanity $access: ${summary:-no summary (exit $rc)}"
  if [ $rc -ne 0 ]; then
    status=1
    tail -n 60 "$work/sanity-$access.log"
    tail -n 40 "$work/plugin.log"
  fi
done
exit $status
