#!/usr/bin/env bash
# The packaging against a real API server: etcd (Debian etcd-server) and the Kubernetes control
# plane from scripts/k8s/build-binaries.sh (k8s.io/kubernetes at a pinned release, cached).
# Server-side applies deploy/ (the default chart) and the chart rendered with every option, so
# the server validates every object; then runs test/k8s/apiserver.test.ts: the status reporter,
# authenticated as the chart's own ServiceAccount, writes a RaidVolume and Events, and the test
# reads them back and checks `kubectl describe raidvolume`; then, as the same ServiceAccount,
# test/k8s/replication-apiserver.test.ts: replicated volumes' RaidVolumes (compare-and-swap of
# the owner, finalizers, one watch for all) and the node Leases (keeper and observer).
#
# The cold build of the Kubernetes binaries takes about 20 minutes on two cores; it runs here
# whenever they are not cached (~/.cache/llraid), so this suite and 80-cluster always run: a
# suite that cannot run fails, it never passes by skipping.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v etcd >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
fi
if ! bin=$(bash scripts/k8s/build-binaries.sh --check 2>/dev/null | tail -n 1); then
  echo "70-apiserver: building the Kubernetes binaries (cold: about 20 minutes)"
  start=$(date +%s)
  bin=$(bash scripts/k8s/build-binaries.sh | tail -n 1)
  echo "70-apiserver: built in $(( $(date +%s) - start ))s"
fi
helm=$(bash scripts/ensure-helm.sh)
bash scripts/gen-deploy.sh --check

state=$(mktemp -d /tmp/llraid-apiserver.XXXXXX)
cleanup() { bash scripts/k8s/control-plane.sh down "$state" || true; rm -rf "$state"; }
trap cleanup EXIT
bash scripts/k8s/control-plane.sh up "$state" "$bin"
admin=$state/admin.kubeconfig
k() { "$bin/kubectl" --kubeconfig "$admin" "$@"; }

echo "70-apiserver: server-side apply of deploy/ (namespace, CRD, default chart)"
k apply --server-side -f deploy/00-namespace.yaml -f deploy/01-crds.yaml
k wait --for=condition=Established crd/raidvolumes.llraid.io --timeout=60s
k apply --server-side -f deploy/02-llraid.yaml
echo "70-apiserver: server-side apply of the chart with every option (test/chart/values-all.yaml)"
k create namespace llraid-all --dry-run=client -o yaml | k apply --server-side -f -
# The ServiceMonitor needs the Prometheus Operator's CRD, which this server does not have.
# The CRD is the default install's (one per cluster): this release leaves it out.
"$helm" template llraid-all charts/llraid --namespace llraid-all -f test/chart/values-all.yaml \
  --set metrics.serviceMonitor.enabled=false --set crd.install=false | k apply --server-side -f -
k -n llraid get daemonset,serviceaccount,service
k -n llraid-all get daemonset
k get csidriver,storageclass

# What the provisioner would have made: the claim and its PV (the chart's StorageClass).
pv=pvc-0d5c1d4e-7a1b-4c55-9a43-0d2b9c1a0001
k create namespace apps --dry-run=client -o yaml | k apply --server-side -f -
k apply --server-side -f - <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: apps}
spec:
  storageClassName: llraid-raid1
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Gi}}
  volumeName: $pv
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: $pv}
spec:
  storageClassName: llraid-raid1
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  claimRef: {namespace: apps, name: data}
  csi: {driver: csi.llraid.io, volumeHandle: $pv, fsType: ext4}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{key: topology.llraid.io/node, operator: In, values: [node-a]}]
YAML

# The reporter runs as the chart's ServiceAccount, so the chart's RBAC is what is tested.
token=$(k -n llraid create token llraid --duration=1h)
server=$(sed -n 's/^API_SERVER=//p' "$state/env")
cat > "$state/llraid-sa.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: $server, certificate-authority: $state/pki/ca.crt}}]
users: [{name: llraid, user: {token: $token}}]
contexts: [{name: llraid, context: {cluster: test, user: llraid}}]
current-context: llraid
YAML

LLRAID_TEST_KUBECONFIG=$state/llraid-sa.kubeconfig LLRAID_TEST_ADMIN_KUBECONFIG=$admin \
LLRAID_TEST_KUBECTL=$bin/kubectl LLRAID_TEST_PV=$pv \
  node --import tsx --test --test-reporter=spec test/k8s/apiserver.test.ts
# Apart, not beside the file above: it counts the server's LIST and WATCH requests.
LLRAID_TEST_KUBECONFIG=$state/llraid-sa.kubeconfig LLRAID_TEST_ADMIN_KUBECONFIG=$admin \
LLRAID_TEST_KUBECTL=$bin/kubectl LLRAID_TEST_NAMESPACE=llraid \
  node --import tsx --test --test-reporter=spec test/k8s/replication-apiserver.test.ts
