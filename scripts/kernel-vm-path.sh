#!/usr/bin/env bash
# Prints where the kernel-vm tool is: $KERNEL_VM, else ../shared/tools/kernel-vm beside this
# checkout (as CI has it), else beside the checkout this one was cloned from (a clean clone made
# elsewhere, e.g. `git clone . /var/tmp/cc`). Prints the first candidate when none exists, so the
# caller's "not found" names the expected place.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${KERNEL_VM:-}" ]; then echo "$KERNEL_VM"; exit 0; fi
first="$(cd .. && pwd)/shared/tools/kernel-vm"
origin=$(git config --get remote.origin.url 2>/dev/null || true)
for c in "$first" ${origin:+"$origin/../shared/tools/kernel-vm"}; do
  if [ -x "$c" ]; then realpath "$c"; exit 0; fi
done
echo "$first"
