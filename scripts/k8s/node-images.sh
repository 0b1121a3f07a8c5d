#!/usr/bin/env bash
# Builds the images the real node runs, with buildah, as docker archives for `ctr images import`
# (no image registry is reachable here). Prints the archives' paths, one a line, on stdout.
#
#   node-images.sh <bin-dir>
#
# - the llraid node image from the Dockerfile (scripts/test-image.sh --build-only), tagged as the
#   chart names it (<image.repository>:<appVersion>);
# - the sidecars under the chart's image names, each the binary of build-binaries.sh alone (with
#   the shared libraries it links, for the dynamically linked ones);
# - localhost/llraid-test/pause:1, the pod sandbox (scripts/k8s/images/pause.c, static);
# - localhost/llraid-test/busybox:1, the application image: Debian's busybox-static and its applets.
# Archives are cached in ${LLRAID_CACHE:-$HOME/.cache/llraid}/node-images, keyed by a hash of
# what they are made from.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:?usage: node-images.sh <bin-dir>}
out=${LLRAID_CACHE:-$HOME/.cache/llraid}/node-images
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

for c in buildah gcc; do command -v "$c" >/dev/null || { echo "node-images: expected $c on PATH, found none" >&2; exit 1; }; done
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null || { echo "node-images: expected /bin/busybox (Debian busybox-static), found none" >&2; exit 1; }

values=charts/llraid/values.yaml
chart_image() { sed -n "s/^ *image: \(.*\/$1:.*\)$/\1/p" "$values" | head -n 1; }
hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

# image_from_rootfs <tag> <rootfs dir> <entrypoint json> <key>: archive $out/<safe tag>.tar
image_from_rootfs() {
  local tag=$1 rootfs=$2 entry=$3 key=$4 file ctr
  file=$out/$(echo "$tag" | tr '/:' '__').tar
  if [ -f "$file" ] && [ "$(cat "$file.key" 2>/dev/null)" = "$key" ]; then echo "$file"; return; fi
  ctr=$(buildah from scratch)
  buildah copy --quiet "$ctr" "$rootfs" / >/dev/null
  buildah config --entrypoint "$entry" --cmd '[]' --env PATH=/bin:/usr/bin "$ctr"
  buildah commit --quiet --rm "$ctr" "$tag" >/dev/null
  rm -f "$file"
  buildah push --quiet "$tag" "docker-archive:$file:$tag" >/dev/null
  echo "$key" > "$file.key"
  echo "node-images: built $tag" >&2
  echo "$file"
}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# A binary with the shared libraries ldd names, at the same paths.
binary_rootfs() {
  local binary=$1 root=$2 lib
  install -D -m 0755 "$binary" "$root/$(basename "$binary")"
  for lib in $(ldd "$binary" 2>/dev/null | grep -o '/[^ ]*' || true); do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
  mkdir -p "$root/tmp" "$root/etc"
  echo "root:x:0:0:root:/:/sbin/nologin" > "$root/etc/passwd"
}

for name in csi-node-driver-registrar csi-provisioner csi-resizer livenessprobe; do
  tag=$(chart_image "$name")
  [ -n "$tag" ] || { echo "node-images: expected an image of $name in $values, found none" >&2; exit 1; }
  binary_rootfs "$bin/$name" "$stage/$name"
  image_from_rootfs "$tag" "$stage/$name" "[\"/$name\"]" "$(hash_of "$bin/$name")"
done

mkdir -p "$stage/pause"
gcc -static -O2 -o "$stage/pause/pause" scripts/k8s/images/pause.c
image_from_rootfs localhost/llraid-test/pause:1 "$stage/pause" '["/pause"]' "$(hash_of scripts/k8s/images/pause.c)"

mkdir -p "$stage/busybox/bin" "$stage/busybox/tmp"
cp /bin/busybox "$stage/busybox/bin/busybox"
for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "$stage/busybox/bin/$applet"; done
image_from_rootfs localhost/llraid-test/busybox:1 "$stage/busybox" '["/bin/sh"]' "$(hash_of /bin/busybox)"

# The llraid image: what the Dockerfile copies in decides whether it is rebuilt.
version=$(node -p 'require("./package.json").version')
repo=$(sed -n 's/^  repository: //p' "$values" | head -n 1)
app_version=$(sed -n 's/^appVersion: "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/llraid/Chart.yaml)
tag=$repo:$app_version
file=$out/$(echo "$tag" | tr '/:' '__').tar
key=$(hash_of Dockerfile package.json package-lock.json tsconfig.json tsconfig.build.json $(find src proto -type f | sort))
if [ -f "$file" ] && [ "$(cat "$file.key" 2>/dev/null)" = "$key" ]; then
  echo "$file"
else
  bash scripts/test-image.sh --build-only >&2
  buildah tag "localhost/llraid:$version" "$tag"
  rm -f "$file"
  buildah push --quiet "$tag" "docker-archive:$file:$tag" >/dev/null
  echo "$key" > "$file.key"
  echo "node-images: built $tag" >&2
  echo "$file"
fi
