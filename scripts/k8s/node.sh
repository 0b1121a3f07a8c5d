#!/usr/bin/env bash
# Starts and stops one real Kubernetes node for the control plane of control-plane.sh: containerd
# and runc (Debian packages), CNI (Debian containernetworking-plugins: bridge + host-local), and
# the kubelet of build-binaries.sh, joined with a client certificate of the harness's CA.
#
#   node.sh up <state-dir> <bin-dir>   (LLRAID_NODE_IMAGES: image archives to import) the control plane of control-plane.sh is up in <state-dir>;
#                                      starts containerd and the kubelet, waits for the Node Ready;
#                                      appends NODE_NAME, NODE_DIR, CONTAINERD_ADDRESS to <state-dir>/env
#   node.sh down <state-dir>           stops them, removes the pods' containers and mounts
#
# Must run in a network namespace of its own (test-node.sh makes one): it adds an interface
# with the node's address, a pod bridge, and the NAT rule that stands in for kube-proxy's rule of
# the `kubernetes` Service (10.0.0.1:443 → the API server on 127.0.0.1). Nothing of that touches
# the machine's own network; it refuses to run in the host's namespace.
# Logs: <state-dir>/logs/{containerd,kubelet}.log.
set -euo pipefail
me=node
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NODE_NAME=${LLRAID_NODE_NAME:-llraid-node}
NODE_IP=10.89.0.1             # on llnode0 (a veth whose peer stays here too), in the node's network namespace
POD_SUBNET=10.88.0.0/24       # bridge llcni0; the pods' default route goes to it, and ends there
SERVICE_IP=10.0.0.1           # the `kubernetes` Service's ClusterIP (control-plane.sh's service range)
PAUSE_IMAGE=localhost/llraid-test/pause:1   # built by node-images.sh

usage() { echo "usage: node.sh up <state-dir> <bin-dir> | down <state-dir>" >&2; exit 2; }

in_own_netns() { [ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ]; }

# The kubelet sets vm.overcommit_memory, vm.panic_on_oom, kernel.panic, kernel.panic_on_oops and
# the root key quotas at start (or, with protectKernelDefaults, refuses to start unless they have
# its values). They are global to this machine, which other work shares: kernel.panic_on_oops=1
# would turn any oops into a reboot. So the kubelet runs in a mount namespace of its own where
# those /proc/sys files are bind-mounted regular files holding the kubelet's values; it starts
# with protectKernelDefaults: true and finds them as it wants them. The node dir stays a peer of
# the host's (propagation unchanged), so the volume mounts it makes reach containerd and back.
# Mounts of other work on the machine (under /tmp, /var/tmp, /run/netns, FUSE) are made private
# and detached in that namespace, so the kubelet's copies hold none of them busy.
write_kubelet_ns_script() {
  local dir=$1 sys=$1/node-sysctl
  mkdir -p "$sys"
  cat > "$dir/kubelet-ns.sh" <<EOF
set -eu
for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
          kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
  f=\${kv%%=*}; v=\${kv#*=}; n=\$(echo "\$f" | tr / _)
  echo "\$v" > "$sys/\$n"
  mount --bind "$sys/\$n" "/proc/sys/\$f"
done
# An unmount propagates to the peers of the parent mount: make the parent private here first
# (this namespace's copy only), then the mount itself, then detach it.
awk '{print \$1, \$2, \$5, \$9}' /proc/self/mountinfo > "$dir/kubelet-ns.mounts"
sort -k3 -r "$dir/kubelet-ns.mounts" | while read -r id parent m fstype; do
  case "\$m" in "$dir"|"$dir"/*) continue ;; esac
  case "\$m:\$fstype" in
    /tmp/*|/var/tmp/*|/run/netns/*|*:fuse|*:fuse.*)
      p=\$(awk -v id="\$parent" '\$1 == id {print \$3}' "$dir/kubelet-ns.mounts")
      [ -n "\$p" ] && mount --make-private "\$p"
      mount --make-rprivate "\$m"
      umount -l "\$m" ;;
  esac
done
exec "\$@"
EOF
}

up() {
  local dir=$1 bin=$2
  in_own_netns || { echo "node: expected to run in a network namespace of its own (test-node.sh makes one), found the host's" >&2; exit 1; }
  for b in kubelet kubectl; do
    [ -x "$bin/$b" ] || { echo "node: expected $bin/$b (scripts/k8s/build-binaries.sh builds it), found none" >&2; exit 1; }
  done
  for c in containerd runc ctr unshare iptables; do
    command -v "$c" >/dev/null || { echo "node: expected $c on PATH, found none" >&2; exit 1; }
  done
  [ -x /usr/lib/cni/bridge ] || { echo "node: expected /usr/lib/cni/bridge (Debian containernetworking-plugins), found none" >&2; exit 1; }
  [ -f "$dir/env" ] || { echo "node: expected $dir/env of control-plane.sh up, found none" >&2; exit 1; }
  local api_server api_port pki=$dir/pki
  api_server=$(sed -n 's/^API_SERVER=//p' "$dir/env"); api_port=${api_server##*:}

  # Network: the node's address, and the `kubernetes` Service's ClusterIP answered by the API server.
  ip link set lo up
  ip link add llnode0 type veth peer name llnode1   # this kernel has no dummy interfaces
  ip link set llnode1 up
  ip addr add "$NODE_IP/32" dev llnode0
  ip link set llnode0 up
  sysctl -qw net.ipv4.conf.all.route_localnet=1
  # A route to the Service IP: a host-network pod's (the plugin's: its member service listens on
  # the node's address) connection is routed before OUTPUT's DNAT rewrites it, and without a
  # route it fails at once ("network is unreachable"), as csi-provisioner's did.
  ip route add "$SERVICE_IP/32" dev llnode0
  iptables -t nat -A PREROUTING -d "$SERVICE_IP/32" -p tcp --dport 443 -j DNAT --to-destination "127.0.0.1:$api_port"
  iptables -t nat -A OUTPUT -d "$SERVICE_IP/32" -p tcp --dport 443 -j DNAT --to-destination "127.0.0.1:$api_port"

  # The kubelet's and the run dir must be shared mounts for the chart's Bidirectional propagation.
  local node_dir=$dir/node
  mkdir -p "$node_dir" "$dir/containerd/root" "$dir/containerd/state" "$dir/cni/net.d" "$dir/cni/ipam" "$dir/logs"
  mount --bind "$node_dir" "$node_dir"
  echo "$node_dir" >> "$dir/node-mounts"
  mount --make-rshared "$node_dir"
  mkdir -p "$node_dir/kubelet" "$node_dir/run" "$node_dir/pod-logs"

  cert "$pki" kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "extendedKeyUsage=clientAuth"
  cert "$pki" kubelet-serving "/CN=$NODE_NAME" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME
extendedKeyUsage=serverAuth"
  cat > "$dir/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: llraid-test
  cluster: {server: $api_server, certificate-authority: $pki/ca.crt}
users:
- name: kubelet
  user: {client-certificate: $pki/kubelet-client.crt, client-key: $pki/kubelet-client.key}
contexts:
- name: kubelet
  context: {cluster: llraid-test, user: kubelet}
current-context: kubelet
EOF

  local sock=$dir/containerd/containerd.sock
  cat > "$dir/containerd/config.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine gives root no CAP_SYS_RESOURCE: an oom_score_adj below containerd's own (the
  # sandbox's -998, a critical pod's -997) fails in runc ("can't get final child's PID from pipe:
  # EOF"). Restricted, CRI raises such scores to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
    max_conf_num = 1
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
EOF
  cat > "$dir/cni/net.d/10-llraid-pods.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "llraid-pods",
  "plugins": [
    {
      "type": "bridge", "bridge": "llcni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": "$dir/cni/ipam", "ranges": [[{"subnet": "$POD_SUBNET"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    }
  ]
}
EOF
  containerd --config "$dir/containerd/config.toml" > "$dir/logs/containerd.log" 2>&1 &
  echo $! > "$dir/containerd.pid"
  wait_for containerd "$dir/logs/containerd.log" 30 ctr --address "$sock" version
  # The images of node-images.sh (no registry is reachable): the pause image before any pod.
  local archive
  for archive in ${LLRAID_NODE_IMAGES:-}; do
    ctr --address "$sock" -n k8s.io images import "$archive" >/dev/null \
      || { echo "node: ctr images import $archive failed" >&2; return 1; }
  done

  # The kubelet's cgroups (cgroupfs driver) under a root of this run's in every v1 hierarchy, so
  # that no other kubelet on the machine takes its pods for orphans, nor it theirs.
  local cg_root h
  cg_root=/llraid-node.$(basename "$dir")
  echo "$cg_root" > "$dir/cgroup-root"
  for h in /sys/fs/cgroup/*/; do
    [ "$(stat -f -c %T "$h")" = cgroupfs ] || continue
    mkdir -p "$h$cg_root"
    if [ -f "$h/cpuset.cpus" ]; then
      cat "$h/cpuset.cpus" > "$h$cg_root/cpuset.cpus"; cat "$h/cpuset.mems" > "$h$cg_root/cpuset.mems"
    fi
  done
  : > "$dir/resolv.conf"   # pods get no nameserver: nothing in them looks a name up
  cat > "$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine runs cgroup v1 (hybrid); the kubelet refuses v1 unless told (cgroup v1 is in
# maintenance mode since Kubernetes 1.31).
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $cg_root
containerRuntimeEndpoint: unix://$sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: AlwaysAllow}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
resolvConf: $dir/resolv.conf
protectKernelDefaults: true
failSwapOn: false
podLogsDir: $node_dir/pod-logs
maxPods: 30
serializeImagePulls: false
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
syncFrequency: 10s
fileCheckFrequency: 10s
EOF
  write_kubelet_ns_script "$dir"
  unshare -m --propagation unchanged sh "$dir/kubelet-ns.sh" "$bin/kubelet" --config "$dir/kubelet.yaml" --kubeconfig "$dir/kubelet.kubeconfig" \
    --root-dir "$node_dir/kubelet" --cert-dir "$dir/pki/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --v=2 > "$dir/logs/kubelet.log" 2>&1 &
  echo $! > "$dir/kubelet.pid"
  local k=("$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig")
  wait_for "node $NODE_NAME to register" "$dir/logs/kubelet.log" 90 "${k[@]}" get node "$NODE_NAME"
  if ! "${k[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=120s; then
    echo "node: expected node $NODE_NAME Ready within 120s; its conditions and the last lines of the kubelet's log:" >&2
    "${k[@]}" describe node "$NODE_NAME" | sed -n '/Conditions:/,/Addresses:/p' >&2
    tail -n 30 "$dir/logs/kubelet.log" >&2
    return 1
  fi
  cat >> "$dir/env" <<EOF
NODE_NAME=$NODE_NAME
NODE_DIR=$node_dir
CONTAINERD_ADDRESS=$sock
EOF
}

stop_pid() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$file"
}

down() {
  local dir=$1 sock
  sock=$dir/containerd/containerd.sock
  # The kubelet first, so that it restarts nothing; then the pods' containers while containerd
  # still runs, noting the pod network namespaces CNI made (/run/netns/cni-*, in the sandboxes'
  # specs); then containerd.
  stop_pid "$dir/kubelet.pid"
  # Each container's shim is the parent of its first process (init.pid in the task's dir).
  local netns=() shims=() f
  for f in "$dir"/containerd/state/io.containerd.runtime.v2.task/*/*/init.pid; do
    [ -f "$f" ] || continue
    shims+=("$(awk '/^PPid:/ {print $2}' "/proc/$(cat "$f")/status" 2>/dev/null)")
  done
  if [ -S "$sock" ]; then
    mapfile -t netns < <(for c in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io containers info "$c" 2>/dev/null | grep -o '"/var/run/netns/cni-[0-9a-f-]*"\|"/run/netns/cni-[0-9a-f-]*"' | tr -d '"'
    done | sort -u)
    for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
  fi
  stop_pid "$dir/containerd.pid"
  # Shims outlive containerd: end those of this node (noted above), checked by their command line.
  local pid
  for pid in "${shims[@]}"; do
    if grep -q containerd-shim "/proc/$pid/cmdline" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  done
  for m in "${netns[@]}"; do if [ -e "$m" ]; then ip netns del "$(basename "$m")" 2>/dev/null || true; fi; done
  # Every mount below the state dir (overlay rootfs, pod volumes, FUSE, the node dir's bind), deepest first.
  local m
  for m in $(awk '{print $5}' /proc/self/mountinfo | grep -F "$dir/" | sort -r); do umount -l "$m" 2>/dev/null || true; done
  if [ -f "$dir/node-mounts" ]; then
    while read -r m; do umount -l "$m" 2>/dev/null || true; done < "$dir/node-mounts"
    rm -f "$dir/node-mounts"
  fi
  # The kubelet's cgroups (cgroupfs driver): this run's root in every v1 hierarchy, leaves first.
  local h cg_root
  if [ -f "$dir/cgroup-root" ]; then
    cg_root=$(cat "$dir/cgroup-root")
    for h in /sys/fs/cgroup/*/; do
      if [ -d "$h$cg_root" ]; then find "$h$cg_root" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi
    done
  fi
  return 0
}

case "${1:-}" in
  up) [ $# -eq 3 ] || usage; up "$2" "$3" ;;
  down) [ $# -eq 2 ] || usage; down "$2" ;;
  *) usage ;;
esac
