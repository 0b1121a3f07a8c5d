#!/usr/bin/env bash
# The torture and property tests in long mode (test/support/long-mode.ts): the figures of the
# reliability work (kill -9 cycles, member faults, power cuts, NBD fuzzing) at full count.
# Takes much longer than `npm test`; run it by hand or on a nightly schedule.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export LLRAID_TEST_LONG=1
mapfile -t files < <(grep -l 'long-mode' -r test --include='*.test.ts' | sort)
[ ${#files[@]} -gt 0 ] || { echo "test:long: expected test files that use test/support/long-mode.ts, found none" >&2; exit 1; }
node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
