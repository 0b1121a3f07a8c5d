#!/usr/bin/env bash
# `npm run test:node`: one real node on this machine. The control plane of control-plane.sh and a
# node of node.sh (containerd, runc, CNI, the kubelet) run together in a network namespace made
# for the run, the images of node-images.sh are imported into containerd, and test/node/*.test.ts
# installs the chart with helm and runs the volume scenarios through real pods.
# LLRAID_KEEP_CLUSTER=1 keeps the state dir (certificates, logs, kubelet dir) for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${LLRAID_NODE_NETNS:-}" ]; then
  bash scripts/setup.sh
  # The node's own Debian packages (scripts/apt-packages.txt has what every test needs).
  missing=()
  for p in containerd runc containernetworking-plugins buildah podman debootstrap iptables busybox-static gcc libc6-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "test-node: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  bin=$(bash scripts/k8s/build-binaries.sh | tail -n 1)
  echo "test-node: building the images (buildah; cached when unchanged)"
  start=$(date +%s)
  images=$(bash scripts/k8s/node-images.sh "$bin")
  echo "test-node: images ready in $(( $(date +%s) - start ))s"

  ns=llraid-node-$$
  ip netns add "$ns"
  trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
  # Only the network namespace is entered: the node shares the machine's mounts (its kubelet keeps
  # a mount namespace of its own, see node.sh).
  LLRAID_NODE_NETNS=$ns LLRAID_NODE_IMAGES=$images LLRAID_K8S_BIN=$bin \
    nsenter --net="/run/netns/$ns" bash "$0" "$@"
  exit
fi

bin=$LLRAID_K8S_BIN
state=$(mktemp -d /tmp/llraid-node.XXXXXX)
cleanup() {
  bash scripts/k8s/node.sh down "$state" || true
  bash scripts/k8s/control-plane.sh down "$state" || true
  if [ "${LLRAID_KEEP_CLUSTER:-}" = 1 ]; then echo "test-node: state kept in $state"; else rm -rf "$state"; fi
}
trap cleanup EXIT
echo "test-node: control plane and node in network namespace $LLRAID_NODE_NETNS, state in $state"
start=$(date +%s)
ip link set lo up   # a new network namespace has its loopback down
bash scripts/k8s/control-plane.sh up "$state" "$bin"
bash scripts/k8s/node.sh up "$state" "$bin"
echo "test-node: control plane and node up in $(( $(date +%s) - start ))s"

set -a
# shellcheck disable=SC1091
. "$state/env"
LLRAID_NODE_STATE=$state
set +a
"$bin/kubectl" get nodes -o wide
mapfile -t files < <(find test/node -name '*.test.ts' | sort)
node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
