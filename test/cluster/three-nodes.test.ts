// Issue 19's harness, first: three nodes, each in its own network namespace with its own address
// and disks (three-nodes.ts), run the chart's engine host and node plugin pods; the driver is
// registered on each; the pods see their node's address; the member TLS Secret reaches them; and
// one node's member service answers another over TLS with the chart's certificate.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DRIVER, NAMESPACE, RELEASE } from './chart.js';
import { clusterEnv, SKIP_REASON } from './cluster-env.js';
import { waitFor } from './kube-tools.js';
import { MEMBER_PORT, NODES, ThreeNodes } from './three-nodes.js';

const env = clusterEnv();
const skip = env ? false : SKIP_REASON;
let cluster: ThreeNodes;

/**
 * Whether this build has the member service run by the engine host (issue 19: the engine host
 * reads LLRAID_MEMBER_SERVICE_LISTEN). Once it does, a node whose member service does not answer
 * fails the test below; before, the test checks what it can and says so.
 */
before(async () => {
  if (!env) return;
  cluster = await ThreeNodes.start(env);
}, { timeout: 600_000 });

after(async () => {
  if (!env) return;
  await cluster?.teardown();
}, { timeout: 300_000 });

test('each node registered the driver in its CSINode with its node id and topology', { skip }, async () => {
  for (const n of NODES) {
    const csinode = await cluster.kube.get(['csinode', n.name]);
    const drivers = (csinode?.spec?.drivers ?? []) as { name: string; nodeID: string; topologyKeys: string[] }[];
    const d = drivers.find((x) => x.name === DRIVER);
    assert.ok(d, `expected driver ${DRIVER} in CSINode ${n.name}, found ${JSON.stringify(drivers)}`);
    assert.equal(d.nodeID, n.name);
    assert.deepEqual(d.topologyKeys, ['topology.llraid.io/node']);
  }
});

test('each node\'s plugin and engine host run in the node\'s namespace, and their logs show them serving', { skip, timeout: 60_000 }, async () => {
  for (const n of NODES) {
    const node = cluster.node(n.name);
    const netns = statSync(`/run/netns/${cluster.net.node(n.name).netns}`).ino;
    for (const container of ['llraid', 'engine-host']) {
      const pid = node.pid(container);
      assert.ok(pid, `expected container ${container} running on ${n.name}`);
      // /proc/PID/ns/net reads net:[<inode>]: the namespace the process is in.
      assert.equal(readlinkSync(`/proc/${pid}/ns/net`), `net:[${netns}]`, `${container} of ${n.name} runs in the node's namespace`);
    }
    await waitFor(`${n.name}'s plugin to log that it serves CSI`, 30_000, async () => {
      const log = await node.logTail('llraid', 200);
      return /serving CSI on unix:\/\/.* \(node [^,]+, attach fuse/.test(log) && log.includes(`(node ${n.name},`) ? true : undefined;
    }, async () => node.logTail('llraid'));
    assert.match(await node.logTail('engine-host', 200), /serving on .*engine-host\.sock/);
  }
});

test('each node has its address: Node InternalIP, the pods\' hostIP and podIP on the host network', { skip, timeout: 60_000 }, async () => {
  for (const n of NODES) {
    const node = await cluster.kube.get(['node', n.name]);
    const addresses = (node?.status?.addresses ?? []) as { type: string; address: string }[];
    assert.deepEqual(addresses.find((a) => a.type === 'InternalIP')?.address, n.address);
    const pods = await cluster.kube.list(['pods', '-n', NAMESPACE, '--field-selector', `spec.nodeName=${n.name}`]);
    assert.equal(pods.length, 2, `expected the engine host and node plugin pods on ${n.name}, found ${pods.map((p) => p.metadata.name).join(', ')}`);
    for (const pod of pods) {
      assert.equal(pod.spec?.hostNetwork, true, `${pod.metadata.name}: the member service needs the host network`);
      assert.equal(pod.status?.hostIP, n.address);
      assert.equal(pod.status?.podIP, n.address);
    }
  }
});

test('the chart\'s member TLS Secret reaches both containers of every node, read-only files at LLRAID_TLS_DIR', { skip }, async () => {
  const tls = await cluster.memberTlsDir();
  for (const n of NODES) {
    const node = cluster.node(n.name);
    for (const container of ['llraid', 'engine-host']) {
      const environ = readFileSync(`/proc/${node.pid(container)}/environ`, 'utf8').split('\0');
      const value = (name: string) => environ.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
      assert.equal(value('LLRAID_MEMBER_SERVICE_LISTEN'), `${n.address}:${MEMBER_PORT}`, `${container} on ${n.name}: $(HOST_IP) expanded to the node's address`);
      const dir = value('LLRAID_TLS_DIR') ?? '';
      assert.ok(dir.startsWith(node.dir), `${container} on ${n.name}: LLRAID_TLS_DIR ${dir} is the pod's secret volume on the node`);
      for (const f of ['ca.crt', 'tls.crt', 'tls.key']) {
        assert.deepEqual(readFileSync(join(dir, f)), readFileSync(join(tls, f)), `${f} of ${container} on ${n.name} is the Secret's`);
        assert.equal(statSync(join(dir, f)).mode & 0o777, 0o400, `${f} is readable by its owner only (defaultMode 0400)`);
      }
    }
  }
  const secret = await cluster.kube.get(['secret', '-n', NAMESPACE, `${RELEASE}-member-tls`]);
  assert.equal(secret?.type, 'kubernetes.io/tls');
});

test('the chart keeps the member certificate across an upgrade (lookup)', { skip, timeout: 120_000 }, async () => {
  const before = (await cluster.kube.get(['secret', '-n', NAMESPACE, `${RELEASE}-member-tls`]))?.data;
  await cluster.kube.helm(['upgrade', RELEASE, join(cluster.env.repo, 'charts', 'llraid'), '--namespace', NAMESPACE, '--reuse-values']);
  const afterUpgrade = (await cluster.kube.get(['secret', '-n', NAMESPACE, `${RELEASE}-member-tls`]))?.data;
  assert.deepEqual(afterUpgrade, before, 'the same CA, certificate and key after helm upgrade');
});

test('node-a reaches node-b\'s member service at 10.214.0.12 over TLS with the chart\'s certificate', { skip, timeout: 120_000 }, async () => {
  const listing = await waitFor('node-b\'s member service to answer nbdinfo --list from node-a', 60_000, async () =>
    cluster.listMembers('node-a', 'node-b').catch(() => undefined), async () => cluster.node('node-b').logTail('engine-host'));
  assert.match(listing, /protocol: newstyle-fixed with TLS/);
  // Each node exports what its disks hold; with no volume yet the listing may be empty, but it
  // was answered after STARTTLS with the chart's CA verifying the name llraid-member both ways.
  for (const [from, to] of [['node-c', 'node-a'], ['node-a', 'node-c']] as const) {
    assert.match(await cluster.listMembers(from, to), /with TLS/, `${from} to ${to}`);
  }
});
