#!/usr/bin/env bash
# Starts and stops a Kubernetes control plane on 127.0.0.1 for the cluster tests: etcd,
# kube-apiserver, kube-controller-manager and kube-scheduler, with their own CA, certificates and
# kubeconfigs under one state dir. No kubelet: the tests stand in for it (test/cluster/).
#
# LLRAID_CLUSTER_BRIDGE=1 also makes the API server reachable from network namespaces (the
# multi-node tests run each node in one): a hub namespace of the run's own, llr19-<id>-hub, with a
# bridge br0 at 10.214.0.1/24, where a relay listens on 10.214.0.1:<API port> and forwards to the
# API server on 127.0.0.1 (through a unix socket in the state dir: socket paths are not
# namespaced). Nothing is added to the machine's own namespace, so runs in parallel do not meet.
# The tests add node namespaces named llr19-<id>-<node> with a veth to br0; `down` deletes every
# llr19-<id>-* namespace, and `up` those of runs whose hub has no relay left (a crashed run).
#
#   control-plane.sh up <state-dir> <bin-dir>   start everything, wait until the API answers;
#                                               writes <state-dir>/env (KUBECONFIG=..., API_SERVER=...)
#   control-plane.sh down <state-dir>           stop what `up` started (pids in <state-dir>/pids)
# Logs: <state-dir>/logs/<component>.log.
#
# LLRAID_CLUSTER_SNAPSHOTS=1 also does what a cluster admin does for volume snapshots: installs
# the snapshot CRDs (VolumeSnapshot, VolumeSnapshotContent, VolumeSnapshotClass, the group
# snapshot ones, and SnapshotMetadataService), as build-binaries.sh copied them from the
# external-snapshotter and external-snapshot-metadata client modules into <bin-dir>/../crds,
# and runs the snapshot-controller beside kube-controller-manager, with
# --enable-distributed-snapshotting (llraid's csi-snapshotter runs per node) and the admin
# kubeconfig (it is the cluster's, not the driver's).
#
# The API server keeps an audit log, <state-dir>/audit.log (AUDIT_LOG in env), of the requests
# made by the ServiceAccounts of the namespaces in LLRAID_AUDIT_NAMESPACES (default
# llraid-system, where the tests install the chart), at level Metadata (who, verb, resource,
# when; no bodies), and of nothing else: test/cluster/api-audit.ts counts llraid's requests
# from it. The control plane's own traffic is not logged, so the file stays small.
set -euo pipefail
me=control-plane
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { echo "usage: control-plane.sh up <state-dir> <bin-dir> | down <state-dir>" >&2; exit 2; }

# A port the kernel reports free right now; the components bind it a moment later, so a collision
# with another process is possible but shows up as a start failure with the log named.
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

down() {
  local dir=$1 pid
  [ -f "$dir/pids" ] || return 0
  # Reverse start order: the API server must outlive the controllers that talk to it, etcd last.
  for pid in $(tac "$dir/pids"); do kill "$pid" 2>/dev/null || true; done
  for pid in $(tac "$dir/pids"); do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -f "$dir/pids"
  if [ -f "$dir/netns-prefix" ]; then
    remove_namespaces "$(cat "$dir/netns-prefix")"
    rm -f "$dir/netns-prefix" "$dir/api.sock"
  fi
}

BRIDGE_ADDRESS=10.214.0.1
BRIDGE_BITS=24

# Kills what runs in each namespace whose name starts with "$1-" (the tests' node processes, the
# relay) and deletes the namespaces; their veths and the bridge go with them.
remove_namespaces() {
  local prefix=$1 ns pid pids names
  names=$(ip netns list | awk '{print $1}' | grep -E "^${prefix}-" || true)
  [ -n "$names" ] || return 0
  for _ in 1 2 3 4 5; do
    pids=$(for ns in $names; do ip netns pids "$ns" 2>/dev/null || true; done)
    [ -n "$pids" ] || break
    for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
    sleep 0.2
  done
  for ns in $names; do ip netns del "$ns" 2>/dev/null || true; done
}

# Namespaces of earlier runs that died without `down`: their hub holds no process (the relay is
# gone) and is older than a minute (not a run starting right now).
remove_stale_namespaces() {
  local hub
  for hub in $(ip netns list | awk '{print $1}' | grep -E '^llr19-[0-9a-f]{6}-hub$' || true); do
    [ -z "$(ip netns pids "$hub" 2>/dev/null || true)" ] || continue
    [ -n "$(find "/run/netns/$hub" -mmin +1 2>/dev/null)" ] || continue
    echo "control-plane: removing the namespaces of a dead run (${hub%-hub}-*)" >&2
    remove_namespaces "${hub%-hub}"
  done
}

# The hub namespace with its bridge and the two relays (see the top of this file).
bridge_up() {
  local dir=$1 api_port=$2 prefix hub relay
  if ! command -v ip >/dev/null || ! command -v nsenter >/dev/null; then
    echo "control-plane: LLRAID_CLUSTER_BRIDGE=1 needs ip (iproute2) and nsenter (util-linux), found none" >&2; exit 1
  fi
  [ "$(id -u)" = 0 ] || { echo "control-plane: LLRAID_CLUSTER_BRIDGE=1 needs root (network namespaces), running as uid $(id -u)" >&2; exit 1; }
  remove_stale_namespaces
  prefix=llr19-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
  hub=$prefix-hub
  echo "$prefix" > "$dir/netns-prefix"
  ip netns add "$hub"
  ip -n "$hub" link set lo up
  # No STP and no forward delay: a port forwards as soon as it is up (a healed link works at once).
  ip -n "$hub" link add br0 type bridge stp_state 0 forward_delay 0
  ip -n "$hub" addr add "$BRIDGE_ADDRESS/$BRIDGE_BITS" dev br0
  ip -n "$hub" link set br0 up
  relay="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/relay.mjs"
  start "$dir" relay-host node "$relay" "unix:$dir/api.sock" "tcp:127.0.0.1:$api_port"
  start "$dir" relay-hub nsenter "--net=/run/netns/$hub" node "$relay" "tcp:$BRIDGE_ADDRESS:$api_port" "unix:$dir/api.sock"
  # /readyz answers without credentials; --cacert also checks the bridge address in the SANs.
  wait_for "the API server at $BRIDGE_ADDRESS:$api_port from $hub" "$dir/logs/relay-hub.log" 30 \
    nsenter "--net=/run/netns/$hub" curl -sf --cacert "$dir/pki/ca.crt" "https://$BRIDGE_ADDRESS:$api_port/readyz"
  cat >> "$dir/env" <<EOF
API_SERVER_BRIDGE=https://$BRIDGE_ADDRESS:$api_port
LLRAID_CLUSTER_NETNS=$hub
LLRAID_CLUSTER_NETNS_PREFIX=$prefix
EOF
}

# The audit policy of the header: Metadata for the ServiceAccounts of the llraid namespaces (their
# group system:serviceaccounts:<namespace>), None for everyone else. RequestReceived is omitted:
# each request is logged when its response starts (a watch: once, when its stream opens) and
# when it completes (a watch: when its stream ends).
audit_policy() {
  local file=$1 ns groups=""
  for ns in ${LLRAID_AUDIT_NAMESPACES:-llraid-system}; do groups+="\"system:serviceaccounts:$ns\", "; done
  cat > "$file" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: [${groups%, }]
- level: None
EOF
}

kubeconfig() {
  local dir=$1 name=$2 server=$3
  cat > "$dir/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: llraid-test
  cluster:
    server: $server
    certificate-authority: $dir/pki/ca.crt
users:
- name: $name
  user:
    client-certificate: $dir/pki/$name.crt
    client-key: $dir/pki/$name.key
contexts:
- name: $name
  context: {cluster: llraid-test, user: $name}
current-context: $name
EOF
}

start() {
  local dir=$1 name=$2; shift 2
  "$@" > "$dir/logs/$name.log" 2>&1 &
  echo $! >> "$dir/pids"
}

up() {
  local dir=$1 bin=$2
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$bin/$b" ] || { echo "control-plane: expected $bin/$b (scripts/k8s/build-binaries.sh builds it), found none" >&2; exit 1; }
  done
  command -v etcd >/dev/null || { echo "control-plane: expected etcd on PATH (Debian etcd-server), found none" >&2; exit 1; }
  mkdir -p "$dir/pki" "$dir/logs" "$dir/etcd"
  local pki=$dir/pki
  : > "$dir/pids"

  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -subj "/CN=llraid-test-ca" \
    -days 2 -out "$pki/ca.crt" 2>/dev/null
  cert "$pki" apiserver "/CN=kube-apiserver" \
    "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,IP:$BRIDGE_ADDRESS,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth"
  cert "$pki" admin "/O=system:masters/CN=llraid-test-admin" "extendedKeyUsage=clientAuth"
  cert "$pki" controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  cert "$pki" scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
  # How the API server authenticates to a kubelet (logs, exec): scripts/k8s/node.sh's kubelet
  # trusts this CA for clients.
  cert "$pki" apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

  local etcd_port etcd_peer api_port kcm_port sched_port server
  etcd_port=$(free_port); etcd_peer=$(free_port); api_port=$(free_port); kcm_port=$(free_port); sched_port=$(free_port)
  server=https://127.0.0.1:$api_port
  for c in admin controller-manager scheduler; do kubeconfig "$dir" "$c" "$server"; done

  start "$dir" etcd etcd --name llraid-test --data-dir "$dir/etcd" --logger zap \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "llraid-test=http://127.0.0.1:$etcd_peer" \
    --quota-backend-bytes 1073741824
  wait_for etcd "$dir/logs/etcd.log" 30 curl -sf "http://127.0.0.1:$etcd_port/health"

  audit_policy "$dir/audit-policy.yaml"
  start "$dir" kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode Node,RBAC \
    --allow-privileged=true \
    --endpoint-reconciler-type none \
    --profiling=false \
    --audit-policy-file "$dir/audit-policy.yaml" \
    --audit-log-path "$dir/audit.log" --audit-log-format json --audit-log-mode blocking
  wait_for kube-apiserver "$dir/logs/kube-apiserver.log" 120 \
    "$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig" get --raw /readyz

  start "$dir" kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --leader-elect=false
  start "$dir" kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" \
    --leader-elect=false
  wait_for kube-controller-manager "$dir/logs/kube-controller-manager.log" 60 \
    curl -sfk "https://127.0.0.1:$kcm_port/healthz"
  wait_for kube-scheduler "$dir/logs/kube-scheduler.log" 60 \
    curl -sfk "https://127.0.0.1:$sched_port/healthz"
  # The default ServiceAccount is what the serviceaccount controller creates; Pods need it.
  wait_for "the default ServiceAccount" "$dir/logs/kube-controller-manager.log" 60 \
    "$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig" -n default get serviceaccount default

  cat > "$dir/env" <<EOF
KUBECONFIG=$dir/admin.kubeconfig
API_SERVER=$server
K8S_BIN=$bin
AUDIT_LOG=$dir/audit.log
EOF
  if [ "${LLRAID_CLUSTER_SNAPSHOTS:-}" = 1 ]; then snapshots_up "$dir" "$bin"; fi
  if [ "${LLRAID_CLUSTER_BRIDGE:-}" = 1 ]; then bridge_up "$dir" "$api_port"; fi
}

# The snapshot CRDs and the snapshot-controller (see the top of this file).
snapshots_up() {
  local dir=$1 bin=$2 crds port kubectl
  crds=$(cd "$bin/.." && pwd)/crds
  kubectl=("$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig")
  [ -x "$bin/snapshot-controller" ] || { echo "control-plane: expected $bin/snapshot-controller (scripts/k8s/build-binaries.sh builds it), found none" >&2; exit 1; }
  [ -f "$crds/snapshot.storage.k8s.io_volumesnapshots.yaml" ] && [ -f "$crds/cbt.storage.k8s.io_snapshotmetadataservices.yaml" ] ||
    { echo "control-plane: expected the snapshot CRDs in $crds (scripts/k8s/build-binaries.sh copies them), found none" >&2; exit 1; }
  "${kubectl[@]}" apply -f "$crds" > "$dir/logs/snapshot-crds.log"
  "${kubectl[@]}" wait --for condition=established --timeout=60s -f "$crds" >> "$dir/logs/snapshot-crds.log"
  port=$(free_port)
  start "$dir" snapshot-controller "$bin/snapshot-controller" \
    --kubeconfig "$dir/admin.kubeconfig" --leader-election=false --enable-distributed-snapshotting \
    --http-endpoint "127.0.0.1:$port" --v=4
  wait_for snapshot-controller "$dir/logs/snapshot-controller.log" 60 curl -sf "http://127.0.0.1:$port/metrics" -o /dev/null
  echo "SNAPSHOT_CONTROLLER_METRICS=http://127.0.0.1:$port/metrics" >> "$dir/env"
}

case "${1:-}" in
  # Not `up || down`: errexit is off inside a function called as a condition.
  up) [ $# -eq 3 ] || usage; trap 'down "$2"' EXIT; up "$2" "$3"; trap - EXIT ;;
  down) [ $# -eq 2 ] || usage; down "$2" ;;
  *) usage ;;
esac
