#!/usr/bin/env bash
# One real node (scripts/k8s/test-node.sh): containerd, runc, CNI and the kubelet run the chart's
# images; a Pod's PVC is written, moved and read back, the engine is killed in its pod, raw block
# and expansion. 70-apiserver has built the Kubernetes binaries by now; test-node.sh builds
# whatever is still missing (and the images), so this suite always runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/k8s/test-node.sh
