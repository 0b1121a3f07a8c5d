// Issue 19's scale check: the API requests llraid makes per minute at rest must grow with the
// nodes, not the volumes. Three nodes (three-nodes.ts); 10 replicated volumes (raid1, replicas 2)
// created through node-a's CSI Controller, 2 of them staged there; the requests of the node
// plugins' ServiceAccount counted over a minute at rest from the API server's audit log
// (api-audit.ts: each watch once, when it is made); then 200 volumes, counted again.
//
// At rest nothing per volume is periodic (docs/architecture.md, "Why API load grows with nodes,
// not volumes"): the node Leases are renewed (3 nodes × 60 / renewSeconds a minute), the
// watches stay open (one per node plugin, and the sidecars' informers, each re-made every 5–10
// minutes), the status feeds look at every volume and write nothing while nothing changes.
// The figures and what they mean for 1,000 nodes: docs/architecture.md, "Counted, not only argued".

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { auditLogPath, countRequests, formatCount, measureRequests, type RequestCount } from './api-audit.js';
import { NAMESPACE, RELEASE } from './chart.js';
import { clusterEnv, SKIP_REASON } from './cluster-env.js';
import { NODES, ThreeNodes } from './three-nodes.js';

const env = clusterEnv();
const skip = env ? false : SKIP_REASON;
const MiB = 1024 * 1024;
/** The node plugins' ServiceAccount (the chart's fullname in the release namespace). */
const USER = `system:serviceaccount:${NAMESPACE}:${RELEASE}`;
const PARAMETERS = { level: '1', members: '2', replicas: '2', bitmap: 'llbitmap' };
const VOLUME_BYTES = 8 * MiB;
const STAGED = 2;
/** The window each figure is measured over. */
const WINDOW_MS = 60_000;
/** Requests a minute the figure may hold beyond what the node Leases explain: watches re-made, a stray status write. */
const SLACK_PER_MINUTE = 12;
const TOPOLOGY_KEY = 'topology.llraid.io/node';

let cluster: ThreeNodes;
let renewSeconds = 5;
const created: { id: string; context: Record<string, string> }[] = [];
const staged: { id: string; staging: string }[] = [];
const figures: { volumes: number; count: RequestCount }[] = [];

before(async () => {
  if (!env) return;
  // Thick 8 MiB members, every volume with one on node-a: ~2 GiB there across its two disks.
  cluster = await ThreeNodes.start(env, { diskBytes: 2048 * MiB });
  const values = JSON.parse(await cluster.kube.helm(['get', 'values', RELEASE, '-n', NAMESPACE, '--all', '-o', 'json'])) as { nodeLease?: { renewSeconds?: number } };
  renewSeconds = values.nodeLease?.renewSeconds ?? renewSeconds;
}, { timeout: 600_000 });

after(async () => {
  if (!env) return;
  const node = cluster?.node('node-a');
  for (const s of staged) {
    await node?.csi.call('Node', 'NodeUnstageVolume', { volume_id: s.id, staging_target_path: s.staging }, 120_000)
      .catch((e: unknown) => process.stderr.write(`api-scale: unstaging ${s.id}: ${String(e)}\n`));
  }
  await cluster?.teardown();
}, { timeout: 600_000 });

/** CreateVolume on node-a's plugin, `n` at a time, until `count` volumes exist. */
async function createVolumes(count: number, parallel = 4): Promise<void> {
  const csi = cluster.node('node-a').csi;
  const topology = NODES.map((n) => ({ segments: { [TOPOLOGY_KEY]: n.name } }));
  let next = created.length;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const r = await csi.call<{ volume: { volume_id: string; volume_context: Record<string, string> } }>('Controller', 'CreateVolume', {
        name: `pvc-scale-${String(i).padStart(4, '0')}`,
        capacity_range: { required_bytes: VOLUME_BYTES, limit_bytes: 0 },
        volume_capabilities: [{ block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
        parameters: PARAMETERS,
        // As csi-provisioner with strict topology asks for the selected node: node-a first.
        accessibility_requirements: { requisite: topology, preferred: topology },
      }, 180_000);
      created.push({ id: r.volume.volume_id, context: r.volume.volume_context ?? {} });
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

/** NodeStage (block) of the first volumes on node-a, so the status feeds follow live engines too. */
async function stageSome(): Promise<void> {
  const node = cluster.node('node-a');
  for (const v of created.slice(0, STAGED)) {
    const staging = join(node.hostPath('/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/staging'), v.id);
    mkdirSync(staging, { recursive: true });
    await node.csi.call('Node', 'NodeStageVolume', {
      volume_id: v.id, staging_target_path: staging, volume_capability: { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
      volume_context: v.context, publish_context: {}, secrets: {},
    }, 180_000);
    staged.push({ id: v.id, staging });
  }
}

/**
 * Waits until llraid has written nothing but its node Leases for `quietMs` (the status reporters
 * caught up with every volume, the sidecars published capacity), bounded by `timeoutMs`.
 */
async function settle(quietMs = 20_000, timeoutMs = 300_000): Promise<void> {
  const log = auditLogPath(cluster.env);
  const start = Date.now();
  const writes = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);
  for (;;) {
    const now = Date.now();
    const recent = countRequests(log, { fromMs: now - quietMs, toMs: now, user: USER }).requests
      .filter((r) => writes.has(r.verb) && !r.resource.startsWith('leases'));
    if (recent.length === 0 && now - start >= quietMs) return;
    if (now - start > timeoutMs) {
      throw new Error(`expected llraid to write nothing but Leases for ${quietMs} ms, found after ${timeoutMs} ms still: ${recent.slice(-5).map((r) => `${r.verb} ${r.resource} ${r.name}`).join('; ')}`);
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function measure(volumes: number): Promise<RequestCount> {
  await settle();
  const count = await measureRequests(auditLogPath(cluster.env), WINDOW_MS, { user: USER });
  process.stdout.write(`${formatCount(`llraid's API requests at rest with ${volumes} volumes (${STAGED} staged), 3 nodes`, count)}\n`);
  figures.push({ volumes, count });
  return count;
}

/** What the node plugins' Leases alone cost a minute: one renewal per node every renewSeconds. */
function leasesPerMinute(): number {
  return (NODES.length * 60) / renewSeconds;
}

test('10 volumes, 2 staged: llraid\'s requests a minute at rest are about the node Leases\' renewals', { skip, timeout: 900_000 }, async () => {
  await createVolumes(10);
  await stageSome();
  const c = await measure(10);
  assert.ok(c.perMinute <= leasesPerMinute() + SLACK_PER_MINUTE,
    `expected at most ${leasesPerMinute()} Lease renewals + ${SLACK_PER_MINUTE} a minute, found ${c.perMinute.toFixed(1)}:\n${formatCount('at 10', c)}`);
});

test('200 volumes: the requests a minute at rest do not grow with the volumes', { skip, timeout: 3_600_000 }, async () => {
  const at10 = figures.find((f) => f.volumes === 10)?.count;
  assert.ok(at10, 'needs the figure of the 10-volume test');
  await createVolumes(200);
  const at200 = await measure(200);
  process.stdout.write(`per minute at rest: ${at10.perMinute.toFixed(1)} with 10 volumes, ${at200.perMinute.toFixed(1)} with 200 (node Leases alone: ${leasesPerMinute()})\n`);
  assert.ok(at200.perMinute <= at10.perMinute + SLACK_PER_MINUTE,
    `expected at most ${at10.perMinute.toFixed(1)} + ${SLACK_PER_MINUTE} a minute with 200 volumes, found ${at200.perMinute.toFixed(1)}:\n${formatCount('at 200', at200)}`);
  assert.ok(at200.perMinute <= leasesPerMinute() + SLACK_PER_MINUTE,
    `expected at most ${leasesPerMinute()} Lease renewals + ${SLACK_PER_MINUTE} a minute, found ${at200.perMinute.toFixed(1)}`);
  // Nothing is read or written per volume at rest: no request names one of the volumes.
  const ids = new Set(created.map((v) => v.id));
  const perVolume = at200.requests.filter((r) => ids.has(r.name));
  assert.deepEqual(perVolume.map((r) => `${r.verb} ${r.resource} ${r.name}`), [], 'no request about a single volume at rest');
});
