#!/usr/bin/env bash
# Builds the Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler),
# the kubelet, kubectl, the csi-provisioner, csi-resizer and csi-snapshotter sidecars, the snapshot-controller,
# the csi-snapshot-metadata sidecar and its example client snapshot-metadata-lister, and helm from the Go module
# proxy, at pinned versions, into ${LLRAID_CACHE:-$HOME/.cache/llraid}/k8s/<release>/bin; cached binaries are
# skipped.
#
# Interface (used by the cluster harness and the packaging tests): progress goes to stderr, and the
# last line on stdout is the bin dir. `--check` builds nothing: it prints the bin dir and exits 0
# only when every binary is already cached (1 otherwise). Names given after the options restrict the
# build (or the check) to those binaries. Per-binary build seconds are appended to <release>/build-times.txt.
set -euo pipefail

K8S_VERSION=v1.36.3
STAGING_VERSION=v0.36.3          # k8s.io/<staging module> tag matching K8S_VERSION
PROVISIONER_VERSION=v6.4.0
RESIZER_VERSION=v2.3.0
HELM_VERSION=v3.22.0
REGISTRAR_VERSION=v2.13.0       # scripts/k8s/sidecars/node-driver-registrar (chart: sidecars.nodeDriverRegistrar)
LIVENESSPROBE_VERSION=v2.15.0   # scripts/k8s/sidecars/livenessprobe (chart: sidecars.livenessProbe)
SNAPSHOTTER_VERSION=v8.7.0      # csi-snapshotter, snapshot-controller; also the snapshot CRDs' client/v8 module
SNAPSHOT_METADATA_VERSION=v0.2.0         # csi-snapshot-metadata, snapshot-metadata-lister
SNAPSHOT_METADATA_CLIENT_VERSION=v0.1.0  # what v0.2.0 requires; holds the SnapshotMetadataService CRD

cache=${LLRAID_CACHE:-$HOME/.cache/llraid}/k8s/$K8S_VERSION
bin=$cache/bin
names=(kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet csi-provisioner csi-resizer helm
       csi-node-driver-registrar livenessprobe csi-snapshotter snapshot-controller csi-snapshot-metadata
       snapshot-metadata-lister)

check=
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
if [ $# -gt 0 ]; then
  for name in "$@"; do
    case " ${names[*]} " in *" $name "*) ;; *) echo "build-binaries: expected one of: ${names[*]}; got $name" >&2; exit 2;; esac
  done
  names=("$@")
fi
wanted() { case " ${names[*]} " in *" $1 "*) return 0;; esac; return 1; }

crds=$cache/crds   # the snapshot CRDs, beside the snapshot-controller (control-plane.sh installs them)
all_cached() {
  local name
  for name in "${names[@]}"; do [ -x "$bin/$name" ] || return 1; done
  if wanted snapshot-controller; then [ -f "$crds/cbt.storage.k8s.io_snapshotmetadataservices.yaml" ] || return 1; fi
}

if [ -n "$check" ]; then
  echo "$bin"
  all_cached
  exit
fi

command -v go >/dev/null || { echo "build-binaries: expected a Go toolchain (go) on PATH, found none" >&2; exit 1; }
mkdir -p "$bin"
# One builder at a time per release: two sessions building the same binary would race on the rename.
exec 9>"$cache/.lock"
flock 9

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"

# Writes a throwaway main module in $work/<name> whose go.mod is the target module's own go.mod
# (same requires, replaces, godebug), so the dependency graph is exactly the one upstream builds.
# The target's relative `./staging/src/k8s.io/X` replaces become `k8s.io/X $STAGING_VERSION`; any other
# relative replace (`X => ./client`: a nested module of the same repository) must be named in the optional
# fourth argument, "X@version ...", and becomes `X version` as the proxy publishes it.
make_module() {
  local name=$1 module=$2 version=$3 locals=${4:-} dir=$work/$1 gomod
  mkdir -p "$dir"
  gomod=$(cd "$dir" && go mod download -json "$module@$version" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || { echo "build-binaries: expected the go.mod of $module@$version from the module proxy, found none" >&2; return 1; }
  {
    echo "module llraid.local/build/$name"
    awk -v staging="$STAGING_VERSION" -v locals="$locals" '
      BEGIN { n = split(locals, l, " "); for (i = 1; i <= n; i++) { at = index(l[i], "@"); pub[substr(l[i], 1, at - 1)] = substr(l[i], at + 1) } }
      /^module / || /^toolchain / || /^tool / { next }
      /^tool \($/ { skip = 1; next }
      skip && /^\)/ { skip = 0; next }
      skip { next }
      { line = $0
        if (match(line, /=> \.\/staging\/src\/k8s\.io\/[A-Za-z0-9._-]+/)) {
          mod = substr(line, RSTART + 24, RLENGTH - 24)
          line = substr(line, 1, RSTART - 1) "=> k8s.io/" mod " " staging
        } else if (match(line, /=> \.\.?\//)) {
          split(line, f, " "); mod = (f[1] == "replace") ? f[2] : f[1]
          if (!(mod in pub)) { print "build-binaries: relative replace of " mod " has no published version" > "/dev/stderr"; exit 1 }
          line = substr(line, 1, RSTART - 1) "=> " mod " " pub[mod]
        }
        print line }' "$gomod" || return 1
    echo "require $module $version"
  } > "$dir/go.mod"
  printf 'package main\n' > "$dir/doc.go"
}

# build <name> <module> <version> <package> <ldflags>
build() {
  local name=$1 module=$2 version=$3 pkg=$4 ldflags=$5 locals=${6:-} start secs
  wanted "$name" || return 0
  if [ -x "$bin/$name" ]; then echo "build-binaries: $name cached" >&2; return; fi
  echo "build-binaries: building $name from $module@$version" >&2
  start=$(date +%s)
  [ -f "$work/$name/go.mod" ] || make_module "$name" "$module" "$version" "$locals"
  (cd "$work/$name" && nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$bin/.$name.tmp" "$pkg")
  mv "$bin/.$name.tmp" "$bin/$name"
  secs=$(( $(date +%s) - start ))
  echo "$name $secs s ($(date -u +%FT%TZ))" >> "$cache/build-times.txt"
  echo "build-binaries: $name built in ${secs}s" >&2
}

major=${K8S_VERSION#v}; minor=${major#*.}; minor=${minor%%.*}; major=${major%%.*}
k8s_ldflags="-s -w"
for pkgpath in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkgpath.gitVersion=$K8S_VERSION -X $pkgpath.gitMajor=$major -X $pkgpath.gitMinor=$minor"
  k8s_ldflags+=" -X $pkgpath.gitTreeState=clean -X $pkgpath.buildDate=1970-01-01T00:00:00Z"
done

# All five Kubernetes binaries share one throwaway module (named after the first) and one build cache.
for name in kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet; do
  if [ -f "$work/kube-apiserver/go.mod" ] && [ ! -e "$work/$name" ]; then ln -s kube-apiserver "$work/$name"; fi
  build "$name" k8s.io/kubernetes "$K8S_VERSION" "k8s.io/kubernetes/cmd/$name" "$k8s_ldflags"
done
build csi-provisioner github.com/kubernetes-csi/external-provisioner/v6 "$PROVISIONER_VERSION" \
  github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner "-s -w -X main.version=$PROVISIONER_VERSION"
build csi-resizer github.com/kubernetes-csi/external-resizer/v2 "$RESIZER_VERSION" \
  github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer "-s -w -X main.version=$RESIZER_VERSION"
# The node's sidecars, whose modules the proxy does not serve: their upstream source at the chart's
# tags is kept in scripts/k8s/sidecars/<name> (cmd/ and pkg/ as released, with the release's own
# go.mod and go.sum; dependencies come from the module proxy). Static (CGO off): they go into
# images on their own (scripts/k8s/node-images.sh).
build_local() {
  local name=$1 dir=$2 pkg=$3 ldflags=$4 start secs
  wanted "$name" || return 0
  if [ -x "$bin/$name" ]; then echo "build-binaries: $name cached" >&2; return; fi
  echo "build-binaries: building $name from $dir" >&2
  start=$(date +%s)
  rm -rf "$work/$name"; cp -r "$dir" "$work/$name"
  (cd "$work/$name" && CGO_ENABLED=0 nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$bin/.$name.tmp" "$pkg")
  mv "$bin/.$name.tmp" "$bin/$name"
  secs=$(( $(date +%s) - start ))
  echo "$name $secs s ($(date -u +%FT%TZ))" >> "$cache/build-times.txt"
  echo "build-binaries: $name built in ${secs}s" >&2
}
sidecars=$(cd "$(dirname "$0")/sidecars" && pwd)
build_local csi-node-driver-registrar "$sidecars/node-driver-registrar" ./cmd/csi-node-driver-registrar \
  "-s -w -X main.version=$REGISTRAR_VERSION"
build_local livenessprobe "$sidecars/livenessprobe" ./cmd/livenessprobe "-s -w -X main.version=$LIVENESSPROBE_VERSION"
# Snapshots: the sidecar and the cluster's snapshot controller share one module, as do the changed-block
# sidecar and its example client. Both upstream go.mods replace their nested client module with ./client.
snapclient=github.com/kubernetes-csi/external-snapshotter/client/v8
for name in csi-snapshotter snapshot-controller; do
  if [ -f "$work/csi-snapshotter/go.mod" ] && [ ! -e "$work/$name" ]; then ln -s csi-snapshotter "$work/$name"; fi
  build "$name" github.com/kubernetes-csi/external-snapshotter/v8 "$SNAPSHOTTER_VERSION" \
    "github.com/kubernetes-csi/external-snapshotter/v8/cmd/$name" "-s -w -X main.version=$SNAPSHOTTER_VERSION" \
    "$snapclient@$SNAPSHOTTER_VERSION"
done
metaclient=github.com/kubernetes-csi/external-snapshot-metadata/client
for name in csi-snapshot-metadata snapshot-metadata-lister; do
  pkg=cmd/csi-snapshot-metadata; [ "$name" = snapshot-metadata-lister ] && pkg=examples/snapshot-metadata-lister
  if [ -f "$work/csi-snapshot-metadata/go.mod" ] && [ ! -e "$work/$name" ]; then ln -s csi-snapshot-metadata "$work/$name"; fi
  build "$name" github.com/kubernetes-csi/external-snapshot-metadata "$SNAPSHOT_METADATA_VERSION" \
    "github.com/kubernetes-csi/external-snapshot-metadata/$pkg" "-s -w -X main.version=$SNAPSHOT_METADATA_VERSION" \
    "$metaclient@$SNAPSHOT_METADATA_CLIENT_VERSION"
done
# The CRDs of both, as the same modules publish them (config/crd), for the cluster harness: a
# cluster admin installs them, not the driver's chart.
copy_crds() {
  local module dir
  mkdir -p "$crds"
  for module in "$snapclient@$SNAPSHOTTER_VERSION" "$metaclient@$SNAPSHOT_METADATA_CLIENT_VERSION"; do
    dir=$(cd "$work" && go mod download -json "$module" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
    [ -d "$dir/config/crd" ] || { echo "build-binaries: expected config/crd in $module from the module proxy, found none" >&2; return 1; }
    cp "$dir"/config/crd/*storage.k8s.io_*.yaml "$crds/"
  done
  chmod -R u+w "$crds"
}
if wanted snapshot-controller && [ ! -f "$crds/cbt.storage.k8s.io_snapshotmetadataservices.yaml" ]; then copy_crds; fi
build helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
  "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"

echo "$bin"
