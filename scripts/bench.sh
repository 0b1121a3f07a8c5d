#!/usr/bin/env bash
# npm run bench: the md engine benchmark (bench/md.ts) — llbitmap against no bitmap, resync after
# a power cut, resync against a plain copy. Builds first so the CLI in dist/ matches the sources.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci
npm run --silent build || echo "bench: build failed; benchmarking the TypeScript sources anyway" >&2
exec node --import tsx bench/md.ts "$@"
