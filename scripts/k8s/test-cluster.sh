#!/usr/bin/env bash
# `npm run test:cluster`: the control-plane end-to-end tests (test/cluster/). Builds or finds the
# cached Kubernetes binaries, starts etcd + kube-apiserver + controller-manager + scheduler on
# 127.0.0.1 and, for the nodes in network namespaces, 10.214.0.1 (scripts/k8s/control-plane.sh), runs the tests against them, and stops everything.
# LLRAID_KEEP_CLUSTER=1 keeps the state dir (certificates, logs) for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash scripts/setup.sh
bin=$(scripts/k8s/build-binaries.sh | tail -n 1)

state=$(mktemp -d /tmp/llraid-cluster.XXXXXX)
cleanup() {
  scripts/k8s/control-plane.sh down "$state" || true
  if [ "${LLRAID_KEEP_CLUSTER:-}" = 1 ]; then echo "test-cluster: state kept in $state"; else rm -rf "$state"; fi
}
trap cleanup EXIT
echo "test-cluster: starting the control plane in $state"
start=$(date +%s)
# The bridge: the multi-node tests (test/cluster/three-nodes.ts) run each node in a network
# namespace that reaches the API server at 10.214.0.1.
LLRAID_CLUSTER_BRIDGE=1 scripts/k8s/control-plane.sh up "$state" "$bin"
echo "test-cluster: control plane up in $(( $(date +%s) - start ))s"

set -a
# shellcheck disable=SC1091
. "$state/env"
LLRAID_CLUSTER_STATE=$state
set +a
mapfile -t files < <(find test/cluster -name '*.test.ts' | sort)
node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
