#!/usr/bin/env bash
# The Helm chart with the real helm (built once from the Go module proxy, scripts/ensure-helm.sh):
# lint and render with default values and with test/chart/values-all.yaml (every option), check
# that deploy/ is what the chart renders, then test/chart/chart.test.ts on the renders.
set -euo pipefail
cd "$(dirname "$0")/../.."
helm=$(bash scripts/ensure-helm.sh)
"$helm" version --short

echo "60-chart: helm lint (default values, every option)"
"$helm" lint --strict charts/llraid
"$helm" lint --strict charts/llraid -f test/chart/values-all.yaml
echo "60-chart: helm template (default values, every option)"
for values in "" test/chart/values-all.yaml; do
  out=$("$helm" template llraid charts/llraid --namespace llraid --include-crds ${values:+-f "$values"})
  echo "  ${values:-defaults}: $(grep -c '^kind:' <<<"$out") objects ($(grep '^kind:' <<<"$out" | sort | uniq -c | awk '{printf "%s%s×%s", sep, $3, $1; sep=", "}'))"
done
bash scripts/gen-deploy.sh --check
LLRAID_HELM=$helm node --import tsx --test --test-reporter=spec test/chart/chart.test.ts
