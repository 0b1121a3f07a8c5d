#!/usr/bin/env bash
# Builds the llraid image with buildah and runs it with podman (`npm run test:image`). No image
# registry is reachable here, so the base image the Dockerfile names is made locally: a
# debootstrap of Debian bookworm with this machine's Node.js 20 (node + npm) copied in, committed
# under that same tag. Cached under ${LLRAID_CACHE:-$HOME/.cache/llraid}/image.
# `--build-only` builds the image (localhost/llraid:<version>) and runs nothing in it (the real
# node's stage, scripts/k8s/node-images.sh, runs it under the kubelet instead).
set -euo pipefail
build_only=0; [ "${1:-}" = --build-only ] && build_only=1
cd "$(dirname "$0")/.."

BASE_IMAGE=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)
VERSION=$(node -p 'require("./package.json").version')
IMAGE=localhost/llraid:$VERSION
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${LLRAID_CACHE:-$HOME/.cache/llraid}/image

need() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "test-image: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
need buildah podman debootstrap runc

# This machine runs cgroup v1+v2 hybrid, which crun refuses, and has no CAP_SYS_RESOURCE, so the
# runtime may only lower rlimits: use runc with limits at or below the current hard limits.
nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ] && nofile=65536
RUN_OPTS=(--runtime runc --ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096)

node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" = 20 ] || { echo "test-image: expected this machine's Node.js to be 20 (the base image's), found $(node --version)" >&2; exit 1; }

if ! podman image exists "$BASE_IMAGE"; then
  mkdir -p "$cache"
  if [ ! -d "$cache/rootfs" ]; then
    echo "test-image: debootstrap bookworm (minbase) into $cache/rootfs"
    rm -rf "$cache/rootfs.tmp"
    debootstrap --variant=minbase bookworm "$cache/rootfs.tmp" "$MIRROR" > "$cache/debootstrap.log" 2>&1 \
      || { echo "test-image: debootstrap failed; last lines of $cache/debootstrap.log:" >&2; tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
    mv "$cache/rootfs.tmp" "$cache/rootfs"
  fi
  echo "test-image: committing $BASE_IMAGE (bookworm + node $(node --version))"
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  cp -a "$cache/rootfs/." "$stage/"
  # Laid out as the official node image: /usr/local/bin/node, npm under /usr/local/lib.
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  install -D -m 0755 "$(readlink -f "$(command -v node)")" "$stage/usr/local/bin/node"
  mkdir -p "$stage/usr/local/lib/node_modules"
  cp -a "$npm_dir" "$stage/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$stage/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$stage/usr/local/bin/npx"
  rm -rf "$stage/var/cache/apt/archives/"*.deb "$stage/var/lib/apt/lists/"*
  tar -C "$stage" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' \
    --message "local stand-in for $BASE_IMAGE: debootstrap bookworm + node $(node --version)" \
    - "$BASE_IMAGE" >/dev/null
  rm -rf "$stage"
  trap - EXIT
fi

echo "test-image: buildah bud -t $IMAGE"
start=$(date +%s)
# --network host: the build runs npm ci and apt-get against the registries this machine reaches.
ca_opts=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r "$NODE_EXTRA_CA_CERTS" ]; then
  # This machine reaches the npm registry through a proxy whose CA only the host trusts.
  ca_opts=(--volume "$NODE_EXTRA_CA_CERTS:/run/llraid-build-ca.crt:ro" --build-arg NODE_EXTRA_CA_CERTS=/run/llraid-build-ca.crt)
fi
buildah bud "${RUN_OPTS[@]}" "${ca_opts[@]}" --pull=never --network host --layers -t "$IMAGE" -f Dockerfile . > "$cache/bud.log" 2>&1 \
  || { echo "test-image: buildah bud failed; last lines of $cache/bud.log:" >&2; tail -n 30 "$cache/bud.log" >&2; exit 1; }
echo "test-image: built in $(( $(date +%s) - start ))s, size $(podman image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MiB", $1/1048576}')"

[ "$build_only" = 1 ] && exit 0

fail=0
check() {
  local what=$1 want=$2; shift 2
  local out
  if ! out=$("$@" 2>&1); then echo "test-image: FAIL $what: exited non-zero:"; echo "$out" | tail -n 20; fail=1; return; fi
  if ! grep -qE -- "$want" <<<"$out"; then echo "test-image: FAIL $what: expected output matching /$want/, found:"; echo "$out" | tail -n 20; fail=1; return; fi
  echo "test-image: ok $what"
}
check "llraid --version prints $VERSION" "^$VERSION\$" podman run "${RUN_OPTS[@]}" --rm --network none "$IMAGE" --version
check "llraid csi --help shows the csi options" "--endpoint" podman run "${RUN_OPTS[@]}" --rm --network none "$IMAGE" csi --help
for tool in nbd-client nbdfuse mkfs.ext4 mkfs.xfs resize2fs xfs_growfs losetup mount mdadm; do
  check "host tool $tool present" "/$tool\$" podman run "${RUN_OPTS[@]}" --rm --network none --entrypoint sh "$IMAGE" -c "command -v $tool"
done
check "mdadm runs" "mdadm - v" podman run "${RUN_OPTS[@]}" --rm --network none --entrypoint mdadm "$IMAGE" --version
exit $fail
