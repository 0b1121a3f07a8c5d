#!/usr/bin/env bash
# npm run bench: the md engine benchmarks, one after the other —
#   bench/md.ts        raid1/raid10: llbitmap against no bitmap, resync after a power cut, resync
#                      against a plain copy (issue 2)
#   bench/md-parity.ts raid5/raid6: llbitmap against no bitmap, lazy parity against a full initial
#                      build, full-stripe writes against raid0 (issue 3; alone: npm run bench:parity)
# Builds first so the CLI in dist/ matches the sources.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci
npm run --silent build || echo "bench: build failed; benchmarking the TypeScript sources anyway" >&2
node --import tsx bench/md.ts "$@"
echo
node --import tsx bench/md-parity.ts "$@"
