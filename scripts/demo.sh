#!/usr/bin/env bash
# The README's demo: set-up (as for the tests), then `llraid demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
exec node dist/src/cli/bin.cjs demo "$@"
