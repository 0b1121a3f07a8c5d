// The harness itself, checked before the driver tests lean on it: the real control plane accepts
// the harness's Node, keeps it schedulable while the stand-in renews its Lease, the scheduler
// binds a pod to it, and a deleted pod goes away once the stand-in confirms it as the kubelet would.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterEnv, SKIP_REASON } from './cluster-env.js';
import { KubeTools, waitFor } from './kube-tools.js';
import { KubeletStandIn } from './kubelet-stand-in.js';

const env = clusterEnv();
const skip = env ? false : SKIP_REASON;
const NODE = 'harness-check';
const NS = 'harness-check';

let kube: KubeTools;
let node: KubeletStandIn;

before(async () => {
  if (!env) return;
  kube = new KubeTools(env);
  node = new KubeletStandIn(env, NODE);
  await kube.kubectl(['create', 'namespace', NS]);
});

after(async () => {
  if (!env) return;
  await node.stop();
  await kube.run('kubectl', ['delete', 'namespace', NS, '--wait=false']);
  // Waited for: a node left behind would draw the chart's DaemonSet pods in the later tests.
  await kube.run('kubectl', ['delete', 'node', NODE, '--wait=true']);
});

test('the API server reports the pinned release and serves the storage APIs the driver needs', { skip }, async () => {
  const version = JSON.parse(await kube.kubectl(['version', '-o', 'json'])) as { serverVersion: { gitVersion: string } };
  assert.match(version.serverVersion.gitVersion, /^v1\.\d+\.\d+$/);
  const resources = await kube.kubectl(['api-resources', '--api-group=storage.k8s.io', '-o', 'name']);
  for (const r of ['csidrivers.storage.k8s.io', 'csinodes.storage.k8s.io', 'csistoragecapacities.storage.k8s.io', 'storageclasses.storage.k8s.io']) {
    assert.ok(resources.split('\n').includes(r), `expected ${r} among storage.k8s.io resources, found: ${resources}`);
  }
});

test('a node registered by the stand-in stays Ready and untainted past the lease grace period', { skip, timeout: 120_000 }, async () => {
  await node.registerNode();
  // 40 s is the node lifecycle controller's grace period; wait beyond it.
  await new Promise((r) => setTimeout(r, 50_000));
  const n = await kube.get(['node', NODE]);
  assert.ok(n, `expected Node ${NODE}, found none`);
  const taints = (n.spec?.taints as { key: string }[] | undefined) ?? [];
  assert.deepEqual(taints.map((t) => t.key), [], 'expected no taints on a node with a fresh Lease');
  const ready = (n.status?.conditions as { type: string; status: string }[]).find((c) => c.type === 'Ready');
  assert.equal(ready?.status, 'True');
});

test('the scheduler binds a pod to the node, and a deleted pod is gone once the stand-in confirms it', { skip, timeout: 120_000 }, async () => {
  await kube.kubectl(['apply', '-n', NS, '-f', '-'], JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'sleeper' },
    spec: { containers: [{ name: 'c', image: 'registry.invalid/none:0', command: ['sleep', 'infinity'] }] },
  }));
  const nodeName = await waitFor('the scheduler to bind pod sleeper', 60_000, async () => {
    const pod = await kube.get(['pod', '-n', NS, 'sleeper']);
    return (pod?.spec?.nodeName as string | undefined) || undefined;
  }, () => kube.kubectl(['describe', 'pod', '-n', NS, 'sleeper']));
  assert.equal(nodeName, NODE);

  await kube.kubectl(['delete', 'pod', '-n', NS, 'sleeper', '--wait=false']);
  await waitFor('pod sleeper to be deleted', 60_000, async () => ((await kube.get(['pod', '-n', NS, 'sleeper'])) ? undefined : true));
});
