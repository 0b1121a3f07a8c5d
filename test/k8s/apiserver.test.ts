// The status reporter against a real kube-apiserver (started by scripts/test.d/70-apiserver.sh,
// which applies the CRD and the rendered chart and hands over a kubeconfig of the chart's own
// ServiceAccount, so the chart's RBAC is what is exercised). Skipped without that server.
// Checks the RaidVolume object, the Events on the PVC, the PV and the RaidVolume, and the text
// of `kubectl describe raidvolume` and `kubectl get raidvolumes`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { KubeClusterApi } from '../../src/k8s/cluster-api.js';
import { StatusReporter } from '../../src/k8s/status-reporter.js';
import type { VolumeStatus } from '../../src/k8s/volume-status.js';
import { GiB, snapshot } from './snapshot-fixture.js';

const kubeconfig = process.env.LLRAID_TEST_KUBECONFIG; // the chart ServiceAccount's
const adminKubeconfig = process.env.LLRAID_TEST_ADMIN_KUBECONFIG;
const kubectl = process.env.LLRAID_TEST_KUBECTL ?? 'kubectl';
const pvName = process.env.LLRAID_TEST_PV ?? 'pvc-0d5c1d4e-7a1b-4c55-9a43-0d2b9c1a0001';
// Skipped only when neither is set (the plain test pass); one without the other fails the file.
if (!kubeconfig !== !adminKubeconfig) throw new Error('expected both LLRAID_TEST_KUBECONFIG and LLRAID_TEST_ADMIN_KUBECONFIG, or neither');
const skip = kubeconfig && adminKubeconfig ? false : 'needs LLRAID_TEST_KUBECONFIG (run scripts/test.d/70-apiserver.sh)';

function admin(): { core: CoreV1Api; custom: CustomObjectsApi } {
  const kc = new KubeConfig();
  kc.loadFromFile(adminKubeconfig!);
  return { core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi) };
}

function describe(kind: string, name: string, namespace?: string): string {
  const args = ['--kubeconfig', adminKubeconfig!, 'describe', kind, name, ...(namespace ? ['-n', namespace] : [])];
  return execFileSync(kubectl, args, { encoding: 'utf8' });
}

test('the reporter keeps a RaidVolume and writes Events that kubectl describe shows', { skip, timeout: 120_000 }, async () => {
  const errors: string[] = [];
  const reporter = new StatusReporter(new KubeClusterApi(kubeconfig), { node: 'node-a', minIntervalMs: 200, onError: (e) => errors.push(e.message) });
  const base = snapshot({ name: pvName, persistentVolume: pvName, claim: { namespace: 'apps', name: 'data' } });
  const step = async (s: VolumeStatus) => {
    reporter.update(s);
    assert.equal(await reporter.flush(30_000), true, `reporter did not settle; API errors: ${errors.join('; ')}`);
  };

  // A clean volume, then the story of a node crash: bitmap-guided resync of 256 MiB of 10 GiB.
  await step(base);
  const startedAt = new Date(Date.now() - 4000);
  await step({
    ...base,
    state: 'resyncing',
    events: 44,
    bitmap: { chunkSize: 64 * 1024 * 1024, counts: { ...base.bitmap!.counts, clean: 56, needSync: 2, syncing: 2 } },
    sync: { action: 'resync', reason: 'unclean shutdown', doneBytes: 5 * GiB, targetBytes: 256 * 1024 * 1024, syncedBytes: 128 * 1024 * 1024, totalBytes: 10 * GiB, speedBytesPerSecond: 2 * GiB, startedAt },
  });
  const { custom } = admin();
  const during = (await custom.getClusterCustomObject({ group: 'llraid.io', version: 'v1alpha1', plural: 'raidvolumes', name: pvName })) as {
    status: { state: string; sync: { progress: string; targetBytes: number }; conditions: Array<{ type: string; status: string }> };
  };
  assert.equal(during.status.state, 'resyncing');
  assert.equal(during.status.sync.progress, '50.0%');
  assert.equal(during.status.conditions.find((c) => c.type === 'Syncing')?.status, 'True');

  await step({
    ...base,
    events: 45,
    lastSync: { action: 'resync', reason: 'unclean shutdown', bytes: 256 * 1024 * 1024, totalBytes: 10 * GiB, durationSeconds: 4.2, finishedAt: new Date() },
  });
  // Then a member fails and comes back through recovery.
  const faulty = { ...base, state: 'degraded' as const, events: 46, members: base.members.map((m, i) => (i === 1 ? { ...m, role: 'faulty' as const, errors: 3 } : m)) };
  await step(faulty);
  await step({ ...base, events: 48 });
  await reporter.close();
  assert.deepEqual(errors, [], 'no API call failed: the chart RBAC grants what the reporter needs');

  const rv = (await custom.getClusterCustomObject({ group: 'llraid.io', version: 'v1alpha1', plural: 'raidvolumes', name: pvName })) as {
    metadata: { labels: Record<string, string>; managedFields: Array<{ manager: string }> };
    spec: { level: string; members: unknown[]; claim: { name: string } };
    status: { state: string; events: number; lastSync: { bytes: number; summary: string }; bitmap: { clean: number }; conditions: Array<{ type: string; status: string }> };
  };
  assert.equal(rv.spec.level, 'raid1');
  assert.equal(rv.spec.members.length, 2);
  assert.equal(rv.spec.claim.name, 'data');
  assert.equal(rv.metadata.labels['llraid.io/node'], 'node-a');
  assert.ok(rv.metadata.managedFields.some((f) => f.manager === 'llraid-node'));
  assert.equal(rv.status.state, 'clean');
  assert.equal(rv.status.events, 48);
  assert.equal(rv.status.lastSync.bytes, 268435456);
  assert.equal(rv.status.lastSync.summary, '256 MiB of 10 GiB in 4.2s');
  assert.deepEqual(rv.status.conditions.map((c) => `${c.type}=${c.status}`), ['Ready=True', 'Degraded=False', 'Syncing=False']);

  const { core } = admin();
  const pvcEvents = (await core.listNamespacedEvent({ namespace: 'apps', fieldSelector: 'involvedObject.name=data' })).items;
  assert.deepEqual(pvcEvents.map((e) => e.reason).sort(), ['Degraded', 'MemberFailed', 'Recovered', 'ResyncCompleted', 'ResyncStarted']);
  const completed = pvcEvents.find((e) => e.reason === 'ResyncCompleted');
  assert.equal(completed?.message, 'resync completed (unclean shutdown): 256 MiB of 10 GiB resynced (268435456 of 10737418240 bytes) in 4.2s');
  const pvEvents = (await core.listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.kind=PersistentVolume,involvedObject.name=${pvName}` })).items;
  assert.equal(pvEvents.length, 5);

  const text = describe('raidvolume', pvName);
  for (const want of [
    /Level:\s+raid1/,
    /Node:\s+node-a/,
    /Disk:\s+disk-a/,
    /Path:\s+\/var\/lib\/llraid\/disk-b\/pvc-1\.img/,
    /State:\s+clean/,
    /Need Sync:\s+0/,
    /Summary:\s+256 MiB of 10 GiB in 4\.2s/,
    /Normal\s+ResyncCompleted\s+.*256 MiB of 10 GiB resynced/,
    /Warning\s+MemberFailed\s+.*member \/var\/lib\/llraid\/disk-b\/pvc-1\.img on disk disk-b failed after 3 I\/O errors/,
    /Normal\s+Recovered/,
  ]) {
    assert.match(text, want, `kubectl describe raidvolume lacks ${want}:\n${text}`);
  }
  const pvcText = describe('pvc', 'data', 'apps');
  assert.match(pvcText, /Normal\s+ResyncStarted\s+.*resync started \(unclean shutdown\): 256 MiB of 10 GiB marked by the bitmap/);

  const table = execFileSync(kubectl, ['--kubeconfig', adminKubeconfig!, 'get', 'raidvolumes', '-o', 'wide'], { encoding: 'utf8' });
  const [header, row] = table.trim().split('\n');
  assert.match(header ?? '', /^NAME\s+NODE\s+OWNER\s+EPOCH\s+LEVEL\s+SIZE\s+MEMBERS\s+STATE\s+DIRTY\s+NEEDSYNC\s+SYNC\s+OUT-OF-SYNC\s+LAST-SYNC\s+CLAIM\s+AGE/);
  // No sync running: an empty SYNC cell (the server's table leaves it blank; older ones said
  // <none>); no OWNER and EPOCH either, as the volume is not replicated; nothing out of sync.
  assert.match(row ?? '', new RegExp(`^${pvName}\\s+node-a\\s+(<none>\\s+){0,2}raid1\\s+10 GiB\\s+2/2\\s+clean\\s+0\\s+0\\s+(<none>\\s+)?0 B\\s+256 MiB of 10 GiB in 4.2s\\s+data\\s+`));
  process.stdout.write(`# kubectl get raidvolumes -o wide\n${table}# kubectl describe raidvolume\n${text}`);
});

test('remove deletes the RaidVolume from the cluster', { skip, timeout: 60_000 }, async () => {
  const reporter = new StatusReporter(new KubeClusterApi(kubeconfig), { node: 'node-a', minIntervalMs: 0 });
  const name = 'pvc-removal-check';
  reporter.update(snapshot({ name, claim: undefined, persistentVolume: undefined }));
  assert.equal(await reporter.flush(30_000), true);
  const { custom } = admin();
  await custom.getClusterCustomObject({ group: 'llraid.io', version: 'v1alpha1', plural: 'raidvolumes', name });
  reporter.remove(name);
  assert.equal(await reporter.flush(30_000), true);
  await reporter.close();
  await assert.rejects(custom.getClusterCustomObject({ group: 'llraid.io', version: 'v1alpha1', plural: 'raidvolumes', name }), (e: unknown) => (e as { code?: number }).code === 404);
});

test('an API error answer becomes a typed K8sError carrying the HTTP status', { skip, timeout: 60_000 }, async () => {
  const api = new KubeClusterApi(kubeconfig);
  await assert.rejects(
    api.applyRaidVolumeStatus('no-such-volume', { apiVersion: 'llraid.io/v1alpha1', kind: 'RaidVolume', metadata: { name: 'no-such-volume' }, status: { state: 'clean' } }),
    (e: unknown) => (e as { code?: string; status?: number }).code === 'EAPI' && (e as { status?: number }).status === 404,
  );
});
