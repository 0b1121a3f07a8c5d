#!/usr/bin/env bash
# Prints the path of a helm binary at the pinned version, building it from the Go module proxy
# on first use (cached in ${LLRAID_CACHE:-$HOME/.cache/llraid}/helm/<version>). Same version as
# scripts/k8s/build-binaries.sh, so the chart tests and the cluster harness agree.
set -euo pipefail
HELM_VERSION=v3.22.0
dir=${LLRAID_CACHE:-$HOME/.cache/llraid}/helm/$HELM_VERSION
if [ ! -x "$dir/helm" ]; then
  command -v go >/dev/null || { echo "ensure-helm: expected a Go toolchain (go) to build helm $HELM_VERSION, found none" >&2; exit 1; }
  echo "ensure-helm: building helm $HELM_VERSION (takes minutes once)" >&2
  mkdir -p "$dir"
  GOBIN=$dir GOFLAGS=-buildvcs=false nice go install \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
fi
echo "$dir/helm"
