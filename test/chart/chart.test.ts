// Renders charts/llraid with the real helm (scripts/ensure-helm.sh; the plain test pass skips it
// when no helm is built yet — scripts/test.d/60-chart.sh builds it and runs this file with
// LLRAID_HELM, and there a missing helm fails) and checks what a
// cluster would get: driver, DaemonSets with their sidecars, RBAC, StorageClasses, metrics.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync } from 'node:fs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

const root = path.resolve(import.meta.dirname, '../..');
const chart = path.join(root, 'charts/llraid');
const cache = process.env.LLRAID_CACHE ?? path.join(process.env.HOME ?? '/root', '.cache/llraid');
const given = process.env.LLRAID_HELM;
const helm = given ?? path.join(cache, 'helm/v3.22.0/helm');
const skip = given === undefined && !existsSync(helm) ? `no helm at ${helm}: scripts/test.d/60-chart.sh builds it` : false;

type Obj = { kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: unknown };
type Container = { name: string; image: string; args?: string[]; env?: Array<{ name: string; value?: string }>; ports?: Array<{ name: string; containerPort: number }>; securityContext?: Record<string, unknown>; volumeMounts?: Array<{ name: string; mountPath: string; mountPropagation?: string }> };
type DaemonSet = Obj & { spec: { template: { spec: { containers: Container[]; nodeSelector?: Record<string, string>; affinity?: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: Array<{ matchExpressions: Array<{ key: string; operator: string; values: string[] }> }> } } }; volumes: Array<{ name: string; hostPath?: { path: string } }> } } } };

function render(...extra: string[]): Obj[] {
  const out = execFileSync(helm, ['template', 'llraid', chart, '--namespace', 'llraid', ...extra], { encoding: 'utf8' });
  return parseAllDocuments(out)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

function renderFails(values: string, ...extra: string[]): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'llraid-chart-'));
  try {
    const file = path.join(dir, 'values.yaml');
    writeFileSync(file, values);
    const r = spawnSync(helm, ['template', 'llraid', chart, '-f', file, ...extra], { encoding: 'utf8' });
    assert.notEqual(r.status, 0, `expected the render to fail for:\n${values}`);
    return r.stderr;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const byKind = (objs: Obj[], kind: string) => objs.filter((o) => o.kind === kind);
const env = (c: Container, name: string) => c.env?.find((e) => e.name === name)?.value;

test('default install: CSIDriver for node-local volumes with capacity tracking', { skip }, () => {
  const [driver] = byKind(render(), 'CSIDriver') as Array<Obj & { spec: Record<string, unknown> }>;
  assert.equal(driver?.metadata.name, 'csi.llraid.io');
  assert.deepEqual(
    { a: driver?.spec.attachRequired, p: driver?.spec.podInfoOnMount, s: driver?.spec.storageCapacity, f: driver?.spec.fsGroupPolicy },
    { a: false, p: true, s: true, f: 'File' },
  );
});

test('default install: one DaemonSet, only the plugin privileged, provisioner per node with capacity', { skip }, () => {
  const sets = (byKind(render(), 'DaemonSet') as DaemonSet[]).filter((d) => d.metadata.name === 'llraid-node');
  assert.equal(sets.length, 1);
  const pod = sets[0]!.spec.template.spec;
  assert.deepEqual(pod.containers.map((c) => c.name), ['llraid', 'node-driver-registrar', 'csi-provisioner', 'csi-resizer', 'liveness-probe']);
  for (const c of pod.containers) assert.equal(c.securityContext?.privileged === true, c.name === 'llraid', `privileged ${c.name}`);
  const plugin = pod.containers[0]!;
  assert.equal(env(plugin, 'LLRAID_DISKS'), '/pool/disk-a,/pool/disk-b');
  assert.equal(env(plugin, 'LLRAID_ATTACH'), 'auto');
  assert.equal(env(plugin, 'LLRAID_KUBELET_DIR'), '/var/lib/kubelet', 'the plugin confines Node call paths to the kubelet dir');
  assert.equal(plugin.volumeMounts?.find((m) => m.name === 'kubelet-dir')?.mountPath, '/var/lib/kubelet', 'mounted where LLRAID_KUBELET_DIR says');
  assert.equal(plugin.volumeMounts?.find((m) => m.name === 'kubelet-dir')?.mountPropagation, 'Bidirectional');
  assert.deepEqual(pod.volumes.filter((v) => v.name.startsWith('disk-')).map((v) => v.hostPath?.path), ['/var/lib/llraid/disk-a', '/var/lib/llraid/disk-b']);
  const prov = pod.containers.find((c) => c.name === 'csi-provisioner')!;
  for (const a of ['--node-deployment=true', '--enable-capacity=true', '--capacity-ownerref-level=1', '--extra-create-metadata=true']) assert.ok(prov.args?.includes(a), a);
  assert.deepEqual(prov.env?.map((e) => e.name), ['NODE_NAME', 'NAMESPACE', 'POD_NAME']);
  const registrar = pod.containers.find((c) => c.name === 'node-driver-registrar')!;
  assert.ok(registrar.args?.includes('--kubelet-registration-path=/var/lib/kubelet/plugins/csi.llraid.io/csi.sock'));
  assert.equal(pod.affinity, undefined, 'no node pools: the default pool runs everywhere');
  assert.equal(env(plugin, 'LLRAID_ENGINE_HOST'), '/run/llraid/engine-host.sock', 'engines run in the engine host');
});

test('default install: an engine host DaemonSet beside the plugin, replaced only on delete, sharing run dir and disks', { skip }, () => {
  type EngineSet = DaemonSet & { spec: { updateStrategy: { type: string }; selector: { matchLabels: Record<string, string> } } };
  const sets = byKind(render(), 'DaemonSet') as EngineSet[];
  assert.deepEqual(sets.map((d) => d.metadata.name), ['llraid-node', 'llraid-engines']);
  const [node, engines] = sets as [EngineSet, EngineSet];
  assert.equal(engines.spec.updateStrategy.type, 'OnDelete', 'a chart upgrade never restarts the engines');
  assert.equal(engines.spec.selector.matchLabels['app.kubernetes.io/component'], 'engines');
  assert.equal(node.spec.selector.matchLabels['app.kubernetes.io/component'], 'node', 'the two selectors never match each other\'s pods');
  const host = engines.spec.template.spec.containers[0]!;
  assert.deepEqual(host.args, ['engine-host']);
  assert.equal(host.securityContext?.privileged, true);
  assert.equal(env(host, 'LLRAID_RUN_DIR'), '/run/llraid');
  assert.equal(host.volumeMounts?.find((m) => m.name === 'run-dir')?.mountPropagation, 'Bidirectional');
  const mounts = (c: Container) => (c.volumeMounts ?? []).filter((m) => m.name.startsWith('disk-')).map((m) => m.mountPath);
  assert.deepEqual(mounts(host), mounts(node.spec.template.spec.containers[0]!), 'member paths are the same in both containers');
  const off = byKind(render('--set', 'engineHost.enabled=false'), 'DaemonSet') as DaemonSet[];
  assert.deepEqual(off.map((d) => d.metadata.name), ['llraid-node']);
  assert.equal(env(off[0]!.spec.template.spec.containers[0]!, 'LLRAID_ENGINE_HOST'), undefined);
});

test('default install: the member service on the node IP with one CA and certificate for llraid-member, mounted in plugin and engine host', { skip }, () => {
  const objs = render();
  type Pod = { hostNetwork?: boolean; dnsPolicy?: string; containers: Array<Omit<Container, 'env'> & { ports?: Array<{ name: string; containerPort: number }>; env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }> }>; volumes: Array<{ name: string; secret?: { secretName: string } }> };
  const secrets = byKind(objs, 'Secret') as Array<Obj & { type: string; data: Record<string, string> }>;
  assert.deepEqual(secrets.map((s) => [s.metadata.name, s.type, Object.keys(s.data).sort()]), [['llraid-member-tls', 'kubernetes.io/tls', ['ca.crt', 'tls.crt', 'tls.key']]]);
  const pem = (k: string) => Buffer.from(secrets[0]!.data[k]!, 'base64').toString();
  assert.match(pem('ca.crt'), /BEGIN CERTIFICATE/);
  assert.match(pem('tls.key'), /PRIVATE KEY/);
  const sets = byKind(objs, 'DaemonSet') as Array<Obj & { spec: { template: { spec: Pod } } }>;
  for (const ds of sets) {
    const pod = ds.spec.template.spec;
    assert.equal(pod.hostNetwork, true, `${ds.metadata.name}: members are reached at the node IP`);
    assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet', `${ds.metadata.name}: cluster DNS still resolves`);
    assert.deepEqual(pod.volumes.find((v) => v.name === 'member-tls')?.secret?.secretName, 'llraid-member-tls');
    const c = pod.containers[0]!;
    const names = (c.env ?? []).map((e) => e.name);
    assert.equal(c.env?.find((e) => e.name === 'HOST_IP')?.valueFrom?.fieldRef?.fieldPath, 'status.hostIP');
    assert.ok(names.indexOf('HOST_IP') < names.indexOf('LLRAID_MEMBER_SERVICE_LISTEN'), '$(HOST_IP) expands only when defined before');
    assert.equal(env(c, 'LLRAID_MEMBER_SERVICE_LISTEN'), '$(HOST_IP):10809');
    assert.equal(env(c, 'LLRAID_TLS_DIR'), '/etc/llraid/member-tls');
    const mount = c.volumeMounts?.find((m) => m.name === 'member-tls') as { mountPath: string; readOnly?: boolean } | undefined;
    assert.deepEqual(mount, { name: 'member-tls', mountPath: '/etc/llraid/member-tls', readOnly: true });
  }
  const ports = (name: string) => sets.find((d) => d.metadata.name === name)!.spec.template.spec.containers[0]!.ports?.map((p) => p.containerPort) ?? [];
  assert.deepEqual(ports('llraid-engines'), [10809], 'the engine host runs the member service');
  const containerOf = (name: string) => sets.find((d) => d.metadata.name === name)!.spec.template.spec.containers[0]!;
  assert.equal(env(containerOf('llraid-engines'), 'LLRAID_DISKS'), env(containerOf('llraid-node'), 'LLRAID_DISKS'), 'over the disks the plugin names');
  assert.ok(!ports('llraid-node').includes(10809));
  const own = byKind(render('--set', 'engineHost.enabled=false'), 'DaemonSet') as Array<Obj & { spec: { template: { spec: Pod } } }>;
  assert.ok(own[0]!.spec.template.spec.containers[0]!.ports?.some((p) => p.containerPort === 10809), 'without an engine host the plugin runs it');
  const off = render('--set', 'memberService.enabled=false');
  assert.deepEqual(byKind(off, 'Secret'), []);
  for (const ds of byKind(off, 'DaemonSet') as Array<Obj & { spec: { template: { spec: Pod } } }>) {
    assert.equal(ds.spec.template.spec.hostNetwork, undefined, `${ds.metadata.name}: no member service, no host network`);
    assert.equal(env(ds.spec.template.spec.containers[0]!, 'LLRAID_MEMBER_SERVICE_LISTEN'), undefined);
  }
  const mine = render('-f', path.join(root, 'test/chart/values-all.yaml'));
  assert.deepEqual(byKind(mine, 'Secret'), [], 'an existing Secret is used, none made');
  const nvme = (byKind(mine, 'DaemonSet') as Array<Obj & { spec: { template: { spec: Pod } } }>).find((d) => d.metadata.name === 'llraid-engines-nvme')!;
  assert.equal(nvme.spec.template.spec.volumes.find((v) => v.name === 'member-tls')?.secret?.secretName, 'my-member-tls');
  assert.equal(env(nvme.spec.template.spec.containers[0]!, 'LLRAID_MEMBER_SERVICE_LISTEN'), '$(HOST_IP):11809');
});

test('default install: raid1 and raid10 StorageClasses wait for the first consumer and can grow', { skip }, () => {
  const classes = byKind(render(), 'StorageClass') as Array<Obj & { provisioner: string; volumeBindingMode: string; allowVolumeExpansion: boolean; parameters: Record<string, string> }>;
  assert.deepEqual(classes.map((c) => [c.metadata.name, c.provisioner, c.volumeBindingMode, c.allowVolumeExpansion, c.parameters.level]), [
    ['llraid-raid1', 'csi.llraid.io', 'WaitForFirstConsumer', true, '1'],
    ['llraid-raid10', 'csi.llraid.io', 'WaitForFirstConsumer', true, '10'],
  ]);
});

test('default install: RBAC grants RaidVolume status and capacity objects, and no wildcards', { skip }, () => {
  const objs = render();
  type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
  const rules = [...byKind(objs, 'ClusterRole'), ...byKind(objs, 'Role')].flatMap((r) => (r as unknown as { rules: Rule[] }).rules);
  const grants = (res: string, verb: string) => rules.some((r) => r.resources.includes(res) && r.verbs.includes(verb));
  assert.ok(grants('raidvolumes/status', 'patch'));
  assert.ok(grants('csistoragecapacities', 'create'));
  assert.ok(grants('persistentvolumes', 'create'));
  assert.ok(!rules.some((r) => r.resources.includes('*') || r.verbs.includes('*') || r.apiGroups.includes('*')));
  assert.ok(!grants('secrets', 'get'));
  assert.equal(byKind(objs, 'ServiceMonitor').length, 0);
  assert.equal(byKind(objs, 'Service')[0]?.metadata.name, 'llraid-metrics');
});

test('default install: RBAC grants only the verbs the sidecars and llraid call', { skip }, () => {
  type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
  const objs = render();
  const cluster = byKind(objs, 'ClusterRole').flatMap((r) => (r as unknown as { rules: Rule[] }).rules);
  const verbs = (res: string) => [...new Set(cluster.filter((r) => r.resources.includes(res)).flatMap((r) => r.verbs))].sort();
  assert.deepEqual(verbs('volumeattachments'), [], 'llraid has no PUBLISH_UNPUBLISH_VOLUME: the provisioner never watches them');
  assert.deepEqual(verbs('events'), ['create', 'patch'], 'event recorders create and patch, they never list or watch');
  // The reporter's apply and delete, and replicated volumes: the member reconciler's watch,
  // CreateVolume, ownership and finalizer patches, DeleteVolume.
  assert.deepEqual(verbs('raidvolumes'), ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch']);
  assert.deepEqual(verbs('raidvolumes/finalizers'), ['update']);
  assert.deepEqual(verbs('raidvolumes/status'), ['patch']);
  assert.deepEqual(verbs('leases'), [], 'Leases only in the release namespace (a Role)');
  assert.deepEqual(verbs('persistentvolumeclaims'), ['get', 'list', 'update', 'watch']);
  // What remains: RBAC cannot scope PVs to one driver or node (docs/kubernetes.md says so).
  assert.deepEqual(verbs('persistentvolumes'), ['create', 'delete', 'get', 'list', 'patch', 'watch']);
  assert.deepEqual(verbs('secrets'), []);
});

test('default install: node Leases in the release namespace, their timing passed to the plugin', { skip }, () => {
  type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
  type RoleObj = Obj & { rules: Rule[] };
  const objs = render();
  const role = (byKind(objs, 'Role') as RoleObj[]).find((r) => r.metadata.name === 'llraid-leases');
  assert.equal(role?.metadata.namespace, 'llraid');
  assert.deepEqual(role?.rules, [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch'] }]);
  const binding = byKind(objs, 'RoleBinding').find((b) => b.metadata.name === 'llraid-leases') as Obj & { subjects: Array<{ name: string; namespace: string }>; roleRef: { name: string } };
  assert.deepEqual([binding.subjects[0]?.name, binding.subjects[0]?.namespace, binding.roleRef.name], ['llraid', 'llraid', 'llraid-leases']);
  const cluster = byKind(objs, 'ClusterRole').flatMap((r) => (r as RoleObj).rules);
  assert.ok(cluster.some((r) => r.resources.includes('nodes') && r.verbs.includes('get') && r.verbs.includes('list')), 'nodes get/list: the out-of-service taint');
  const plugin = (byKind(objs, 'DaemonSet') as DaemonSet[])[0]!.spec.template.spec.containers[0]!;
  assert.equal(env(plugin, 'LLRAID_NODE_LEASE_DURATION_SECONDS'), '20');
  assert.equal(env(plugin, 'LLRAID_NODE_LEASE_RENEW_SECONDS'), '5');
  const ns = plugin.env?.find((e) => e.name === 'LLRAID_NAMESPACE') as { valueFrom?: { fieldRef?: { fieldPath: string } } } | undefined;
  assert.equal(ns?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace');
  const short = (byKind(render('--set', 'nodeLease.durationSeconds=3', '--set', 'nodeLease.renewSeconds=0.5'), 'DaemonSet') as DaemonSet[])[0]!.spec.template.spec.containers[0]!;
  assert.deepEqual([env(short, 'LLRAID_NODE_LEASE_DURATION_SECONDS'), env(short, 'LLRAID_NODE_LEASE_RENEW_SECONDS')], ['3', '0.5']);
});

test('the RaidVolume CRD records placement and ownership, guarded by the API server', { skip }, () => {
  type Crd = Obj & { spec: { versions: Array<{ additionalPrinterColumns: Array<{ name: string; jsonPath: string }>; schema: { openAPIV3Schema: { properties: { spec: { required: string[]; properties: Record<string, { 'x-kubernetes-validations'?: Array<{ rule: string }> }> } } } } }> } };
  const [crd] = byKind(render(), 'CustomResourceDefinition') as Crd[];
  const v = crd!.spec.versions[0]!;
  assert.deepEqual(v.additionalPrinterColumns.filter((c) => ['Owner', 'Epoch'].includes(c.name)).map((c) => c.jsonPath), ['.spec.owner.node', '.spec.owner.epoch']);
  const spec = v.schema.openAPIV3Schema.properties.spec;
  assert.deepEqual(spec.required, ['level', 'node'], 'a replicated volume\'s RaidVolume exists before its superblocks');
  for (const f of ['replicas', 'disklessAttach', 'memberBytes', 'recoverySpeed', 'placement', 'owner', 'fsType', 'setName']) assert.ok(spec.properties[f], f);
  assert.deepEqual(spec.properties.placement!['x-kubernetes-validations']?.map((r) => r.rule), ['self == oldSelf']);
  assert.deepEqual(spec.properties.owner!['x-kubernetes-validations']?.map((r) => r.rule), ['self.epoch >= oldSelf.epoch']);
});

test('every option: node pools get their own DaemonSets and the default pool avoids their nodes', { skip }, () => {
  const objs = render('-f', path.join(root, 'test/chart/values-all.yaml'));
  const sets = byKind(objs, 'DaemonSet') as DaemonSet[];
  assert.deepEqual(sets.map((d) => d.metadata.name), ['llraid-node', 'llraid-engines', 'llraid-node-nvme', 'llraid-engines-nvme', 'llraid-node-big', 'llraid-engines-big']);
  const [def, , nvme] = sets;
  const terms = def!.spec.template.spec.affinity!.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
  assert.deepEqual(terms, [{ matchExpressions: [
    { key: 'llraid.io/pool', operator: 'NotIn', values: ['nvme'] },
    { key: 'node.example.com/storage', operator: 'NotIn', values: ['big'] },
  ] }]);
  assert.deepEqual(nvme!.spec.template.spec.nodeSelector, { 'kubernetes.io/os': 'linux', 'llraid.io/pool': 'nvme' });
  const plugin = nvme!.spec.template.spec.containers[0]!;
  assert.equal(plugin.image, 'registry.example.com/storage/llraid:0.1.0-test');
  assert.equal(env(plugin, 'LLRAID_DISKS'), '/pool/nvme0,/pool/nvme1,/pool/nvme2,/pool/nvme3');
  assert.equal(env(plugin, 'LLRAID_ATTACH'), 'fuse');
  assert.equal(env(plugin, 'LLRAID_KUBELET_DIR'), '/var/lib/k0s/kubelet');
  assert.equal(env(plugin, 'LLRAID_SYNC_SPEED_MAX'), '500000');
  assert.equal(env(plugin, 'LLRAID_BITMAP_DAEMON_SLEEP'), '5');
  assert.equal(env(plugin, 'LLRAID_METRICS_ADDRESS'), ':9999');
  assert.equal(env(plugin, 'LLRAID_LOG'), 'debug');
  assert.deepEqual([env(plugin, 'LLRAID_NODE_LEASE_DURATION_SECONDS'), env(plugin, 'LLRAID_NODE_LEASE_RENEW_SECONDS')], ['30', '7']);
  assert.ok(!nvme!.spec.template.spec.containers.some((c) => c.name === 'csi-resizer'), 'resizer disabled');
  const reg = nvme!.spec.template.spec.containers.find((c) => c.name === 'node-driver-registrar')!;
  assert.ok(reg.args?.includes('--kubelet-registration-path=/var/lib/k0s/kubelet/plugins/csi.llraid.io/csi.sock'));
  const [mon] = byKind(objs, 'ServiceMonitor');
  assert.equal(mon?.metadata.labels?.release, 'kube-prometheus');
  const classes = byKind(objs, 'StorageClass') as Array<Obj & { reclaimPolicy: string; allowVolumeExpansion: boolean; mountOptions?: string[] }>;
  assert.deepEqual(classes.map((c) => [c.metadata.name, c.reclaimPolicy, c.allowVolumeExpansion, c.metadata.annotations?.['storageclass.kubernetes.io/is-default-class']]), [
    ['fast-mirror', 'Retain', false, 'true'],
    ['parity', 'Delete', true, undefined],
  ]);
  const rules = byKind(objs, 'ClusterRole').flatMap((r) => (r as unknown as { rules: Array<{ resources: string[] }> }).rules);
  assert.ok(!rules.some((r) => r.resources.includes('raidvolumes/status')), 'status off: no RaidVolume status rights');
  assert.ok(rules.some((r) => r.resources.includes('raidvolumes')), 'replicated volumes need their RaidVolumes whether or not status is reported');
  assert.ok(!rules.some((r) => r.resources.includes('persistentvolumeclaims/status')), 'resizer off: no PVC status rights');
});

test('unusable values fail the render with a message naming the field', { skip }, () => {
  assert.match(renderFails('diskPool:\n  disks:\n    - {name: a, path: /x}\n    - {name: a, path: /y}\n'), /diskPool.disks: disk name "a" appears twice/);
  assert.match(renderFails('diskPool:\n  disks:\n    - {name: a, path: relative/dir}\n'), /disk a path "relative\/dir": expected an absolute path/);
  assert.match(renderFails('diskPool:\n  nodePools:\n    - {name: p, disks: [{name: a, path: /a}]}\n'), /nodePools\[0\] p: expected nodeLabel \{key, value\}/);
  assert.match(renderFails('diskPool:\n  disks: []\n'), /expected disks for the default pool or at least one entry in nodePools/);
  assert.match(renderFails('storageClasses:\n  - {name: x, reclaimPolicy: Recycle}\n'), /reclaimPolicy: expected Delete or Retain, found Recycle/);
  assert.match(renderFails('nodeLease:\n  durationSeconds: 20\n  renewSeconds: 15\n'), /nodeLease.renewSeconds: expected more than 0 and less than durationSeconds - max\(2, durationSeconds\/4\) = 15, found 15/);
  assert.match(renderFails('nodeLease:\n  durationSeconds: 0.5\n'), /nodeLease.durationSeconds: expected an integer ≥ 1, found 0.5/);
});

test('the RaidVolume CRD is part of the release (uninstall removes it) unless kept or left out', { skip }, () => {
  const crds = byKind(render(), 'CustomResourceDefinition');
  assert.deepEqual(crds.map((c) => c.metadata.name), ['raidvolumes.llraid.io']);
  assert.equal(crds[0]?.metadata.annotations?.['helm.sh/resource-policy'], undefined, 'removed on uninstall by default');
  const kept = byKind(render('-f', path.join(root, 'test/chart/values-all.yaml')), 'CustomResourceDefinition');
  assert.equal(kept[0]?.metadata.annotations?.['helm.sh/resource-policy'], 'keep');
  assert.deepEqual(byKind(render('--set', 'crd.install=false'), 'CustomResourceDefinition'), []);
});

// ---- snapshots: rendered only when the cluster serves the snapshot APIs (the CRDs are the admin's)

const snapshotApis = ['--api-versions', 'snapshot.storage.k8s.io/v1'];
const cbtApis = [...snapshotApis, '--api-versions', 'cbt.storage.k8s.io/v1alpha1'];
const nodeSet = (objs: Obj[]) => (byKind(objs, 'DaemonSet') as DaemonSet[]).find((d) => d.metadata.name === 'llraid-node')!;
/**
 * The chart's NOTES.txt as an install prints it, with `helm template`'s --api-versions (an install
 * needs a cluster; template leaves NOTES out): a copy of the chart that also renders NOTES.txt
 * through `tpl` into a ConfigMap.
 */
function notes(...extra: string[]): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'llraid-notes-'));
  try {
    const copy = path.join(dir, 'llraid');
    cpSync(chart, copy, { recursive: true });
    cpSync(path.join(chart, 'templates/NOTES.txt'), path.join(copy, 'notes.txt'));
    writeFileSync(path.join(copy, 'templates/zz-notes.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rendered-notes}\ndata:\n  notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n');
    const out = execFileSync(helm, ['template', 'llraid', copy, '--namespace', 'llraid', '--show-only', 'templates/zz-notes.yaml', ...extra], { encoding: 'utf8' });
    const [cm] = parseAllDocuments(out).map((d) => d.toJS() as { data: { notes: string } });
    return cm!.data.notes;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('snapshots: without the snapshot CRDs no class, no sidecar, no snapshot RBAC, and a note says why', { skip }, () => {
  const objs = render();
  assert.deepEqual(byKind(objs, 'VolumeSnapshotClass'), []);
  assert.deepEqual(byKind(objs, 'SnapshotMetadataService'), []);
  assert.ok(!objs.some((o) => o.metadata.name.includes('snapshot')), `no snapshot object: ${objs.filter((o) => o.metadata.name.includes('snapshot')).map((o) => o.metadata.name).join(', ')}`);
  const names = nodeSet(objs).spec.template.spec.containers.map((c) => c.name);
  assert.ok(!names.includes('csi-snapshotter') && !names.includes('csi-snapshot-metadata'), names.join(', '));
  assert.match(notes(), /Snapshots are off: the cluster does not serve snapshot\.storage\.k8s\.io\/v1/);
  assert.match(notes('--set', 'snapshots.enabled=false'), /Snapshots are off: snapshots\.enabled is false/);
});

test('snapshots: with the snapshot CRDs a class of the driver, the per-node csi-snapshotter and its RBAC', { skip }, () => {
  const objs = render(...snapshotApis);
  const [cls] = byKind(objs, 'VolumeSnapshotClass') as Array<Obj & { driver: string; deletionPolicy: string }>;
  assert.deepEqual({ name: cls?.metadata.name, driver: cls?.driver, policy: cls?.deletionPolicy }, { name: 'llraid', driver: 'csi.llraid.io', policy: 'Delete' });
  const pod = nodeSet(objs).spec.template.spec;
  const snap = pod.containers.find((c) => c.name === 'csi-snapshotter');
  assert.ok(snap, pod.containers.map((c) => c.name).join(', '));
  for (const a of ['--csi-address=/csi/csi.sock', '--node-deployment=true', '--leader-election=false', '--timeout=120s']) assert.ok(snap.args?.includes(a), a);
  assert.deepEqual(snap.env?.map((e) => e.name), ['NODE_NAME'], 'node deployment takes the node from NODE_NAME');
  assert.ok(!snap.securityContext?.privileged);
  const role = byKind(objs, 'ClusterRole').find((r) => r.metadata.name === 'llraid-snapshots') as (Obj & { rules: Array<{ resources: string[]; verbs: string[] }> }) | undefined;
  assert.ok(role?.rules.some((r) => r.resources.includes('volumesnapshotcontents/status') && r.verbs.includes('patch')));
  assert.ok(!role?.rules.some((r) => r.resources.includes('tokenreviews')), 'no changed-block tracking without its CRD');
  // No cbt API: the metadata sidecar stays off and the note says why.
  assert.ok(!pod.containers.some((c) => c.name === 'csi-snapshot-metadata'));
  assert.match(notes(...snapshotApis), /Changed-block tracking is off: the cluster does not serve cbt\.storage\.k8s\.io\/v1alpha1/);
  assert.match(notes(...snapshotApis), /--enable-distributed-snapshotting/);
});

test('snapshots: with the cbt CRD the metadata sidecar serves TLS, and the SnapshotMetadataService names its Service, CA and audience', { skip }, () => {
  const objs = render(...cbtApis);
  const pod = nodeSet(objs).spec.template.spec;
  const meta = pod.containers.find((c) => c.name === 'csi-snapshot-metadata');
  assert.ok(meta, pod.containers.map((c) => c.name).join(', '));
  for (const a of ['--csi-address=/csi/csi.sock', '--port=50051', '--tls-cert=/tls/tls.crt', '--tls-key=/tls/tls.key', '--audience=llraid-snapshot-metadata']) assert.ok(meta.args?.includes(a), a);
  assert.ok(meta.volumeMounts?.some((m) => m.name === 'snapshot-metadata-tls' && m.mountPath === '/tls'));
  // The plugin's peer endpoint: calls for its snapshots forwarded by other nodes' plugins.
  const plugin = pod.containers.find((c) => c.name === 'llraid')!;
  assert.equal(plugin.env?.find((e) => e.name === 'LLRAID_SNAPSHOT_METADATA_PEER_PORT')?.value, '10810');
  assert.ok(plugin.ports?.some((p) => p.name === 'snapshot-peer' && p.containerPort === 10810), 'the peer port is declared');
  assert.match(notes(...cbtApis), /forwarded to the node\nthat does \(port 10810/);
  // Without the member service (no TLS Secret, no node IP): no peer endpoint, and the note warns.
  const alone = nodeSet(render(...cbtApis, '--set', 'memberService.enabled=false')).spec.template.spec.containers.find((c) => c.name === 'llraid')!;
  assert.ok(!alone.env?.some((e) => e.name === 'LLRAID_SNAPSHOT_METADATA_PEER_PORT'));
  assert.ok(!alone.ports?.some((p) => p.name === 'snapshot-peer'));
  assert.match(notes(...cbtApis, '--set', 'memberService.enabled=false'), /which answers NOT_FOUND/);
  const tlsVolume = pod.volumes.find((v) => v.name === 'snapshot-metadata-tls') as { secret?: { secretName: string } } | undefined;
  assert.equal(tlsVolume?.secret?.secretName, 'llraid-snapshot-metadata-tls');
  const secret = byKind(objs, 'Secret').find((s) => s.metadata.name === 'llraid-snapshot-metadata-tls') as (Obj & { data: Record<string, string> }) | undefined;
  assert.ok(secret, 'the chart makes the TLS Secret');
  const [sms] = byKind(objs, 'SnapshotMetadataService') as Array<Obj & { apiVersion: string; spec: { address: string; audience: string; caCert: string } }>;
  assert.equal(sms?.metadata.name, 'csi.llraid.io', 'clients find it by the driver name');
  assert.equal(sms?.apiVersion, 'cbt.storage.k8s.io/v1alpha1');
  assert.deepEqual({ address: sms?.spec.address, audience: sms?.spec.audience }, { address: 'llraid-snapshot-metadata.llraid:6443', audience: 'llraid-snapshot-metadata' });
  assert.equal(sms?.spec.caCert, secret.data['ca.crt'], 'the CA that signed the sidecar certificate');
  // The certificate names the Service as clients dial it.
  const pem = Buffer.from(secret.data['tls.crt']!, 'base64').toString();
  const san = execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName'], { input: pem, encoding: 'utf8' });
  assert.match(san, /DNS:llraid-snapshot-metadata\.llraid\.svc/);
  const svc = byKind(objs, 'Service').find((s) => s.metadata.name === 'llraid-snapshot-metadata') as (Obj & { spec: { ports: Array<{ port: number; targetPort: string }>; selector: Record<string, string> } }) | undefined;
  assert.deepEqual(svc?.spec.ports.map((p) => [p.port, p.targetPort]), [[6443, 'snapshot-meta']]);
  assert.equal(svc?.spec.selector['app.kubernetes.io/component'], 'node');
  const role = byKind(objs, 'ClusterRole').find((r) => r.metadata.name === 'llraid-snapshots') as (Obj & { rules: Array<{ resources: string[]; verbs: string[] }> }) | undefined;
  for (const res of ['tokenreviews', 'subjectaccessreviews', 'snapshotmetadataservices']) assert.ok(role?.rules.some((r) => r.resources.includes(res)), res);
  assert.ok(byKind(objs, 'ClusterRole').some((r) => r.metadata.name === 'llraid-snapshot-metadata-client'), 'a role for backup applications');
  // An address and a Secret of one's own: no Secret made, the given CA in the CR.
  const own = render(...cbtApis, '--set', 'snapshots.metadata.address=10.1.2.3:7000', '--set', 'snapshots.metadata.tls.existingSecret=mine', '--set', 'snapshots.metadata.tls.caCert=Q0E=');
  const [ownSms] = byKind(own, 'SnapshotMetadataService') as Array<Obj & { spec: { address: string; caCert: string } }>;
  assert.deepEqual({ a: ownSms?.spec.address, c: ownSms?.spec.caCert }, { a: '10.1.2.3:7000', c: 'Q0E=' });
  assert.ok(!byKind(own, 'Secret').some((s) => s.metadata.name === 'llraid-snapshot-metadata-tls'));
  const ownVolume = nodeSet(own).spec.template.spec.volumes.find((v) => v.name === 'snapshot-metadata-tls') as { secret?: { secretName: string } } | undefined;
  assert.equal(ownVolume?.secret?.secretName, 'mine');
});

test('snapshots: values are checked, with a message naming the field', { skip }, () => {
  const fails = renderFails;

  assert.match(fails('snapshots: {enabled: true}\n'), /snapshots\.enabled: true, but the cluster does not serve snapshot\.storage\.k8s\.io\/v1/);
  assert.match(fails('snapshots: {enabled: maybe}\n'), /snapshots\.enabled: expected auto, true or false, found "maybe"/);
  assert.match(fails('snapshots: {volumeSnapshotClass: {deletionPolicy: Keep}}\n', ...snapshotApis), /snapshots\.volumeSnapshotClass\.deletionPolicy: expected Delete or Retain, found "Keep"/);
  assert.match(fails('snapshots: {metadata: {enabled: true}}\n', ...snapshotApis), /snapshots\.metadata\.enabled: true, but the cluster does not serve cbt\.storage\.k8s\.io\/v1alpha1/);
  assert.match(fails('snapshots: {enabled: false, metadata: {enabled: true}}\n', ...cbtApis), /snapshots\.metadata\.enabled: true needs snapshots/);
  assert.match(fails('snapshots: {metadata: {port: 70000}}\n', ...cbtApis), /snapshots\.metadata\.port: expected a port number 1-65535, found 70000/);
  assert.match(fails('snapshots: {metadata: {tls: {existingSecret: mine}}}\n', ...cbtApis), /snapshots\.metadata\.tls\.caCert: expected/);
  assert.match(fails('snapshots: {metadata: {peerPort: 0}}\n', ...cbtApis), /snapshots\.metadata\.peerPort: expected a port number 1-65535, found 0/);
  assert.match(fails('snapshots: {metadata: {peerPort: x}}\n', ...cbtApis), /snapshots\.metadata\.peerPort: expected a port number 1-65535, found x/);
  assert.match(fails('snapshots: {metadata: {peerPort: 10809}}\n', ...cbtApis), /snapshots\.metadata\.peerPort: expected another port than memberService\.port \(10809\), found 10809/);
  // Off by choice: nothing of snapshots even with the CRDs.
  assert.deepEqual(byKind(render(...cbtApis, '--set', 'snapshots.enabled=false'), 'VolumeSnapshotClass'), []);
});

test('snapshots: every option of values-all.yaml reaches the render', { skip }, () => {
  const objs = render('-f', path.join(root, 'test/chart/values-all.yaml'), ...cbtApis);
  const [cls] = byKind(objs, 'VolumeSnapshotClass') as Array<Obj & { deletionPolicy: string }>;
  assert.deepEqual({ n: cls?.metadata.name, p: cls?.deletionPolicy, d: cls?.metadata.annotations?.['snapshot.storage.kubernetes.io/is-default-class'] }, { n: 'llraid-snap', p: 'Retain', d: 'true' });
  const pod = (byKind(objs, 'DaemonSet') as DaemonSet[]).find((d) => d.spec.template.spec.containers.some((c) => c.name === 'csi-snapshotter'))!.spec.template.spec;
  const snap = pod.containers.find((c) => c.name === 'csi-snapshotter')!;
  assert.equal(snap.image, 'mirror.example.com/csi-snapshotter:v8.7.0');
  for (const a of ['--timeout=300s', '--worker-threads=4', '--v=5']) assert.ok(snap.args?.includes(a), a);
  const meta = pod.containers.find((c) => c.name === 'csi-snapshot-metadata')!;
  for (const a of ['--port=50052', '--audience=example-backup', '--timeout=2m', '--max-streaming-duration-min=20']) assert.ok(meta.args?.includes(a), a);
  assert.equal(pod.containers.find((c) => c.name === 'llraid')!.env?.find((e) => e.name === 'LLRAID_SNAPSHOT_METADATA_PEER_PORT')?.value, '10820');
  const [sms] = byKind(objs, 'SnapshotMetadataService') as Array<Obj & { spec: { address: string; audience: string } }>;
  assert.deepEqual(sms?.spec && { a: sms.spec.address, u: sms.spec.audience }, { a: 'snapshots.example.com:7443', u: 'example-backup' });
  const secret = byKind(objs, 'Secret').find((s) => s.metadata.name.endsWith('-snapshot-metadata-tls')) as (Obj & { data: Record<string, string> }) | undefined;
  const san = execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName'], { input: Buffer.from(secret!.data['tls.crt']!, 'base64').toString(), encoding: 'utf8' });
  assert.match(san, /DNS:snapshots\.example\.com/);
  assert.match(san, /IP Address:10\.0\.0\.53/);
});
