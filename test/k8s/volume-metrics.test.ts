import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { VolumeMetrics } from '../../src/k8s/volume-metrics.js';
import { startMetricsServer } from '../../src/k8s/metrics-server.js';
import { K8sError } from '../../src/k8s/errors.js';
import { GiB, snapshot } from './snapshot-fixture.js';

const V = snapshot().name;

function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const body = line.slice(name.length + 1, line.lastIndexOf('}'));
    const have = Object.fromEntries([...body.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

test('a scrape over HTTP shows volume state, bitmap chunks, sync bytes, I/O, member errors and pool space', async () => {
  const m = new VolumeMetrics('node-a', { processMetrics: false });
  m.update(
    snapshot({
      state: 'resyncing',
      members: snapshot().members.map((x, i) => (i === 1 ? { ...x, errors: 7 } : x)),
      sync: { action: 'resync', reason: 'unclean shutdown', doneBytes: 3 * GiB, targetBytes: GiB, syncedBytes: GiB / 4, totalBytes: 10 * GiB, speedBytesPerSecond: 1000, startedAt: new Date() },
      lastSync: { action: 'resync', reason: 'unclean shutdown', bytes: 4096, totalBytes: 10 * GiB, durationSeconds: 1, finishedAt: new Date(1000) },
    }),
  );
  m.setPool([{ disk: 'disk-a', path: '/var/lib/llraid/disk-a', capacityBytes: 100 * GiB, freeBytes: 80 * GiB }]);
  const server = await startMetricsServer(m.registry, 0, '127.0.0.1');
  try {
    const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    const text = await res.text();
    assert.equal(sample(text, 'llraid_volume_state', { volume: V, state: 'resyncing', node: 'node-a' }), 1);
    assert.equal(sample(text, 'llraid_volume_state', { volume: V, state: 'clean' }), 0);
    assert.equal(sample(text, 'llraid_volume_bitmap_chunks', { volume: V, state: 'clean' }), 60);
    assert.equal(sample(text, 'llraid_volume_bitmap_chunks', { volume: V, state: 'unwritten' }), 100);
    assert.equal(sample(text, 'llraid_volume_resync_in_progress_bytes', { volume: V, action: 'resync' }), 3 * GiB);
    assert.equal(sample(text, 'llraid_volume_resync_bytes_total', { volume: V }), 4096);
    assert.equal(sample(text, 'llraid_volume_io_operations_total', { volume: V, op: 'write' }), 5);
    assert.equal(sample(text, 'llraid_volume_io_bytes_total', { volume: V, op: 'read' }), 40960);
    assert.equal(sample(text, 'llraid_volume_member_errors_total', { volume: V, disk: 'disk-b' }), 7);
    assert.equal(sample(text, 'llraid_pool_capacity_bytes', { disk: 'disk-a' }), 100 * GiB);
    assert.equal(sample(text, 'llraid_pool_free_bytes', { disk: 'disk-a' }), 80 * GiB);
    assert.equal((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${server.port}/nope`)).status, 404);
  } finally {
    await server.close();
  }
});

test('a finished sync is counted once however often it is reported, and a removed volume disappears', async () => {
  const m = new VolumeMetrics('node-a', { processMetrics: false });
  const first = { action: 'resync' as const, reason: 'r', bytes: 1000, totalBytes: GiB, durationSeconds: 1, finishedAt: new Date(1000) };
  m.update(snapshot({ lastSync: first }));
  m.update(snapshot({ lastSync: first, events: 43 }));
  m.update(snapshot({ lastSync: { ...first, bytes: 500, finishedAt: new Date(2000) } }));
  assert.equal(sample(await m.metrics(), 'llraid_volume_resync_bytes_total', { volume: V }), 1500);
  m.remove(V);
  const text = await m.metrics();
  assert.equal(text.includes(V), false);
});

test('a bad snapshot is refused and the previous one kept', async () => {
  const m = new VolumeMetrics('node-a', { processMetrics: false });
  m.update(snapshot());
  assert.throws(() => m.update(snapshot({ state: 'nonsense' as never })), (e: unknown) => e instanceof K8sError && e.code === 'EINVAL');
  assert.equal(sample(await m.metrics(), 'llraid_volume_state', { volume: V, state: 'clean' }), 1);
});

test('a taken port is a typed ELISTEN error', async () => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as { port: number }).port;
  try {
    const m = new VolumeMetrics('node-a', { processMetrics: false });
    await assert.rejects(startMetricsServer(m.registry, port, '127.0.0.1'), (e: unknown) => e instanceof K8sError && e.code === 'ELISTEN' && /EADDRINUSE/.test(e.message));
    await assert.rejects(startMetricsServer(m.registry, 70000), (e: unknown) => e instanceof K8sError && e.code === 'EINVAL');
  } finally {
    blocker.close();
  }
});
