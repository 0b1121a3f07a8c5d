import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNodeReporting } from '../../src/k8s/node-reporting.js';
import { K8sError } from '../../src/k8s/errors.js';
import { snapshot } from './snapshot-fixture.js';

test('node reporting with status off serves the fed snapshots as metrics', async () => {
  const reporting = await startNodeReporting('node-a', { status: false, statusMinIntervalMs: 5000, metrics: { host: '127.0.0.1', port: 0 } });
  try {
    reporting.update(snapshot({ state: 'degraded' }));
    reporting.setPool([{ disk: 'disk-a', path: '/p/a', capacityBytes: 100, freeBytes: 40 }]);
    const text = await (await fetch(`http://127.0.0.1:${reporting.metricsPort}/metrics`)).text();
    assert.match(text, /llraid_volume_state\{volume="pvc-1b4e28ba-2fa1-11d2-883f-0016d3cca427",level="raid1",state="degraded",node="node-a"\} 1/);
    assert.match(text, /llraid_pool_free_bytes\{disk="disk-a",path="\/p\/a",node="node-a"\} 40/);
    assert.throws(() => reporting.update(snapshot({ name: 'BAD' })), (e: unknown) => e instanceof K8sError && e.code === 'EINVAL');
    reporting.remove(snapshot().name);
    assert.doesNotMatch(await (await fetch(`http://127.0.0.1:${reporting.metricsPort}/metrics`)).text(), /pvc-1b4e28ba/);
  } finally {
    await reporting.close();
  }
});
