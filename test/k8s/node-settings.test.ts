import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nodeSettingsFromEnv } from '../../src/k8s/node-settings.js';
import { startNodeReporting } from '../../src/k8s/node-reporting.js';
import { K8sError } from '../../src/k8s/errors.js';
import { snapshot } from './snapshot-fixture.js';

test('the chart environment becomes node settings; unset means md and llbitmap defaults, status only in a cluster', () => {
  assert.deepEqual(nodeSettingsFromEnv({}), { syncSpeedMinKiB: 1000, syncSpeedMaxKiB: 200000, bitmapDaemonSleepSeconds: 30, status: false, statusMinIntervalMs: 5000 });
  assert.equal(nodeSettingsFromEnv({ KUBERNETES_SERVICE_HOST: '10.0.0.1' }).status, true, 'status defaults on inside a cluster');
  const s = nodeSettingsFromEnv({
    LLRAID_SYNC_SPEED_MIN: '5000', LLRAID_SYNC_SPEED_MAX: '500000', LLRAID_BITMAP_DAEMON_SLEEP: '5',
    LLRAID_STATUS: 'off', LLRAID_STATUS_MIN_INTERVAL: '15', LLRAID_METRICS_ADDRESS: ':9999',
  });
  assert.deepEqual(s, { syncSpeedMinKiB: 5000, syncSpeedMaxKiB: 500000, bitmapDaemonSleepSeconds: 5, status: false, statusMinIntervalMs: 15000, metrics: { host: '0.0.0.0', port: 9999 } });
  assert.deepEqual(nodeSettingsFromEnv({ LLRAID_METRICS_ADDRESS: '[::1]:80' }).metrics, { host: '::1', port: 80 });
});

test('bad settings are refused naming the variable and what was found', () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ LLRAID_SYNC_SPEED_MIN: 'fast' }, /LLRAID_SYNC_SPEED_MIN: expected a whole number ≥ 1, found "fast"/],
    [{ LLRAID_SYNC_SPEED_MIN: '10', LLRAID_SYNC_SPEED_MAX: '5' }, /LLRAID_SYNC_SPEED_MAX: expected at least LLRAID_SYNC_SPEED_MIN \(10\), found 5/],
    [{ LLRAID_BITMAP_DAEMON_SLEEP: '0' }, /LLRAID_BITMAP_DAEMON_SLEEP: expected a whole number ≥ 1, found "0"/],
    [{ LLRAID_STATUS: 'maybe' }, /LLRAID_STATUS: expected on or off/],
    [{ LLRAID_METRICS_ADDRESS: '9890' }, /LLRAID_METRICS_ADDRESS: expected \[host\]:port/],
    [{ LLRAID_METRICS_ADDRESS: ':70000' }, /LLRAID_METRICS_ADDRESS/],
  ];
  for (const [env, re] of cases) assert.throws(() => nodeSettingsFromEnv(env), (e: unknown) => e instanceof K8sError && e.code === 'EINVAL' && re.test(e.message));
});

test('node reporting with status off serves the fed snapshots as metrics', async () => {
  const reporting = await startNodeReporting('node-a', { ...nodeSettingsFromEnv({ LLRAID_STATUS: 'off' }), metrics: { host: '127.0.0.1', port: 0 } });
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
