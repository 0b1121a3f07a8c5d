#!/usr/bin/env bash
# The whole test run: set-up, lint, typecheck, the unit and integration tests (node --test),
# then the suites in scripts/test.d/ (each a script that runs a real outside tool, in order).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== lint"; npx eslint .
echo "== typecheck"; npx tsc -p tsconfig.json --noEmit

echo "== node --test"
mapfile -t files < <(find test -name '*.test.ts' | sort)
node --import tsx --test --test-concurrency=2 --test-reporter=spec "${files[@]}"

for suite in scripts/test.d/*.sh; do
  [ -e "$suite" ] || continue
  echo "== $(basename "$suite")"
  bash "$suite"
done
