#!/usr/bin/env bash
# The control-plane end-to-end tests (test/cluster). 70-apiserver has built the Kubernetes
# binaries by now; test-cluster.sh builds whatever is still missing, so this suite always runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/k8s/test-cluster.sh
