#!/usr/bin/env bash
# Starts and stops a Kubernetes control plane on 127.0.0.1 for the cluster tests: etcd,
# kube-apiserver, kube-controller-manager and kube-scheduler, with their own CA, certificates and
# kubeconfigs under one state dir. No kubelet: the tests stand in for it (test/cluster/).
#
#   control-plane.sh up <state-dir> <bin-dir>   start everything, wait until the API answers;
#                                               writes <state-dir>/env (KUBECONFIG=..., API_SERVER=...)
#   control-plane.sh down <state-dir>           stop what `up` started (pids in <state-dir>/pids)
# Logs: <state-dir>/logs/<component>.log.
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
    "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
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
    --profiling=false
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
EOF
}

case "${1:-}" in
  # Not `up || down`: errexit is off inside a function called as a condition.
  up) [ $# -eq 3 ] || usage; trap 'down "$2"' EXIT; up "$2" "$3"; trap - EXIT ;;
  down) [ $# -eq 2 ] || usage; down "$2" ;;
  *) usage ;;
esac
