// Issue 7, step 1: the chart against a real API server. `helm install` succeeds and every object
// passes strict server-side validation; `helm upgrade` with changed values adds and removes what
// the values say; `helm uninstall` leaves the API server as it found it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { added, inventory } from './api-inventory.js';
import { chartDir, DRIVER, NAMESPACE, RELEASE } from './chart.js';
import { clusterEnv, SKIP_REASON } from './cluster-env.js';
import { KubeTools, waitFor } from './kube-tools.js';

const env = clusterEnv();
const skip = env ? false : SKIP_REASON;

let kube: KubeTools;
let baseline: string[] = [];

before(async () => {
  if (!env) return;
  kube = new KubeTools(env);
  // The release namespace is the user's (helm uninstall never deletes it), so it is part of the baseline.
  await kube.kubectl(['create', 'namespace', NAMESPACE]);
  await waitFor('the default ServiceAccount of the release namespace', 30_000, async () =>
    (await kube.get(['serviceaccount', '-n', NAMESPACE, 'default'])) ? true : undefined);
  baseline = await inventory(kube);
});

after(async () => {
  if (!env) return;
  await kube.run('helm', ['uninstall', RELEASE, '-n', NAMESPACE, '--wait']);
  await kube.run('kubectl', ['delete', 'namespace', NAMESPACE, '--wait=true']);
});

test('helm install succeeds and every object passes strict server-side validation', { skip, timeout: 180_000 }, async () => {
  await kube.helm(['install', RELEASE, chartDir(env!), '-n', NAMESPACE]);
  const status = JSON.parse(await kube.helm(['status', RELEASE, '-n', NAMESPACE, '-o', 'json'])) as { info: { status: string } };
  assert.equal(status.info.status, 'deployed');

  // Server-side apply as a dry run with fieldValidation=Strict: an unknown or duplicate field in
  // any object is an error, not the warning a plain install gets.
  const manifest = await kube.helm(['get', 'manifest', RELEASE, '-n', NAMESPACE]);
  const check = await kube.run('kubectl', ['apply', '--server-side', '--dry-run=server', '--validate=strict', '--force-conflicts',
    '--field-manager=llraid-validation', '-f', '-'], manifest);
  assert.equal(check.code, 0, `expected strict validation to pass, found: ${check.stderr}`);
  assert.doesNotMatch(check.stderr, /Warning/, 'expected no warnings from the API server');

  // What the chart is for: the driver registered, its classes late-binding, the CRD served.
  const driver = await kube.get(['csidriver', DRIVER]);
  assert.ok(driver, `expected CSIDriver ${DRIVER}, found none`);
  assert.equal(driver.spec?.storageCapacity, true, 'capacity tracking needs CSIDriver.spec.storageCapacity');
  assert.equal(driver.spec?.attachRequired, false, 'node-local volumes need no ControllerPublish');
  const classes = (await kube.list(['storageclasses'])).filter((sc) => sc.provisioner === DRIVER);
  assert.ok(classes.length > 0, 'expected at least one llraid StorageClass');
  for (const sc of classes) assert.equal(sc.volumeBindingMode, 'WaitForFirstConsumer', `StorageClass ${sc.metadata.name}`);
  await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/raidvolumes.llraid.io']);
  await kube.kubectl(['get', 'raidvolumes']);
});

test('helm upgrade with changed values adds and removes objects as the values say', { skip, timeout: 180_000 }, async () => {
  const values = join(env!.stateDir, 'upgrade-values.yaml');
  await writeFile(values, [
    'storageClasses:',
    '  - name: llraid-raid5',
    '    reclaimPolicy: Retain',
    '    allowVolumeExpansion: false',
    '    parameters: {level: "5", members: "3", chunkSize: 64K, bitmap: llbitmap, fsType: xfs}',
    'metrics:',
    '  enabled: false',
    'sidecars:',
    '  resizer:',
    '    enabled: false',
    '',
  ].join('\n'));
  await kube.helm(['upgrade', RELEASE, chartDir(env!), '-n', NAMESPACE, '-f', values]);

  const classes = (await kube.list(['storageclasses'])).filter((sc) => sc.provisioner === DRIVER);
  assert.deepEqual(classes.map((sc) => sc.metadata.name), ['llraid-raid5']);
  assert.equal(classes[0]?.reclaimPolicy, 'Retain');
  assert.deepEqual(classes[0]?.parameters, { level: '5', members: '3', chunkSize: '64K', bitmap: 'llbitmap', fsType: 'xfs' });
  const services = await kube.list(['services', '-n', NAMESPACE, '-l', `app.kubernetes.io/instance=${RELEASE}`]);
  assert.deepEqual(services.map((s) => s.metadata.name), [], 'metrics disabled: no metrics Service');
  const ds = await kube.get(['daemonset', '-n', NAMESPACE, `${RELEASE}-node`]);
  const containers = ((ds?.spec?.template as { spec: { containers: { name: string }[] } }).spec.containers).map((c) => c.name);
  assert.ok(!containers.includes('csi-resizer'), `expected no csi-resizer container, found ${containers.join(', ')}`);
  const history = JSON.parse(await kube.helm(['history', RELEASE, '-n', NAMESPACE, '-o', 'json'])) as { revision: number; status: string }[];
  assert.deepEqual(history.map((h) => h.status), ['superseded', 'deployed']);
});

test('helm uninstall leaves nothing behind', { skip, timeout: 180_000 }, async () => {
  await kube.helm(['uninstall', RELEASE, '-n', NAMESPACE, '--wait']);
  // Garbage collection of dependents (the DaemonSet's ControllerRevisions) runs after the
  // uninstall returns: wait for the inventory to settle back to the baseline.
  let left: string[] = [];
  await waitFor('the API server to hold exactly what it held before the install', 60_000, async () => {
    left = added(baseline, await inventory(kube));
    return left.length === 0 ? true : undefined;
  }, async () => left.join('\n'));
});
