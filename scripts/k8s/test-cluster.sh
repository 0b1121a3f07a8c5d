#!/usr/bin/env bash
# `npm run test:cluster`: the control-plane end-to-end tests (test/cluster/). Builds or finds the
# cached Kubernetes binaries, starts etcd + kube-apiserver + controller-manager + scheduler on
# 127.0.0.1 and, for the nodes in network namespaces, 10.214.0.1 (scripts/k8s/control-plane.sh), runs the tests against them, and stops everything.
# LLRAID_KEEP_CLUSTER=1 keeps the state dir (certificates, logs) for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash scripts/setup.sh
bin=$(scripts/k8s/build-binaries.sh | tail -n 1)

# One control plane per suite: the snapshot suite's (LLRAID_CLUSTER_SNAPSHOTS=1: the snapshot CRDs
# and snapshot-controller) makes every chart install render the snapshot sidecars, which the other
# files' figures (API requests at rest, the containers of a release) must not see.
state=
cleanup() {
  [ -n "$state" ] || return 0
  scripts/k8s/control-plane.sh down "$state" || true
  if [ "${LLRAID_KEEP_CLUSTER:-}" = 1 ]; then echo "test-cluster: state kept in $state"; else rm -rf "$state"; fi
  state=
}
trap cleanup EXIT

# run_suite SNAPSHOTS FILE...: a fresh control plane (with the bridge: the multi-node tests run each
# node in a network namespace that reaches the API server at 10.214.0.1), the files, teardown.
run_suite() {
  local snapshots=$1 rc=0; shift
  state=$(mktemp -d /tmp/llraid-cluster.XXXXXX)
  echo "test-cluster: starting the control plane in $state${snapshots:+ (with volume snapshots)}"
  local start; start=$(date +%s)
  LLRAID_CLUSTER_SNAPSHOTS=$snapshots LLRAID_CLUSTER_BRIDGE=1 scripts/k8s/control-plane.sh up "$state" "$bin"
  echo "test-cluster: control plane up in $(( $(date +%s) - start ))s"
  (
    set -a
    # shellcheck disable=SC1091
    . "$state/env"
    LLRAID_CLUSTER_STATE=$state
    set +a
    node --import tsx --test --test-concurrency=1 --test-reporter=spec "$@"
  ) || rc=$?
  cleanup
  return "$rc"
}

mapfile -t files < <(find test/cluster -name '*.test.ts' ! -name snapshots.test.ts | sort)
rc=0
run_suite "" "${files[@]}" || rc=$?
run_suite 1 test/cluster/snapshots.test.ts || rc=$?
exit "$rc"
