// A replicated volume as a RaidVolume object and back (replicated-volume.ts), and the mapping of
// API answers to K8sError codes (api-call.ts): 409 Conflict is CONFLICT, 409 AlreadyExists is not.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiException } from '@kubernetes/client-node';
import { mapApiError } from '../../src/k8s/api-call.js';
import { K8sError } from '../../src/k8s/errors.js';
import { memberFinalizer, memberLabel, ownerPatch, parseReplicatedVolume, replicatedVolumeObject, finalizersPatch } from '../../src/k8s/replicated-volume.js';
import type { NewReplicatedVolume } from '../../src/k8s/replication.js';

const id = '0123456789abcdef0123456789abcdef';
const raid10: NewReplicatedVolume = {
  id,
  creator: 'node-a',
  level: 10,
  members: 4,
  chunkSize: 512 * 1024,
  replicas: 2,
  disklessAttach: false,
  memberBytes: 1 << 30,
  fsType: 'xfs',
  setName: 'pvc-1',
  recoverySpeed: { minKiB: 1000, maxKiB: 50_000 },
  claim: { namespace: 'apps', name: 'data' },
  // Slot i on node (i mod replicas): given out of order on purpose.
  placement: [
    { slot: 1, node: 'node-b', disk: 'disk0', file: `llraid-${id}-1.img` },
    { slot: 0, node: 'node-a', disk: 'disk0', file: `llraid-${id}-0.img` },
    { slot: 2, node: 'node-a', disk: 'disk1', file: `llraid-${id}-2.img` },
    { slot: 3, node: 'node-b', disk: 'disk1', file: `llraid-${id}-3.img` },
  ],
};
const now = new Date('2025-01-02T03:04:05.000Z');

test('the object CreateVolume posts: labels, one finalizer per member node, placement by slot, owner released at epoch 0', () => {
  const o = replicatedVolumeObject(raid10, now) as { metadata: Record<string, unknown>; spec: Record<string, unknown> };
  assert.deepEqual(o.metadata, {
    name: id,
    labels: { 'llraid.io/node': 'node-a', 'llraid.io/replicated': 'true', 'member.llraid.io/node-a': 'true', 'member.llraid.io/node-b': 'true' },
    finalizers: ['llraid.io/member-node-a', 'llraid.io/member-node-b'],
  });
  assert.equal(o.spec.level, 'raid10');
  assert.equal(o.spec.node, 'node-a');
  assert.deepEqual(o.spec.owner, { node: '', epoch: 0, since: '2025-01-02T03:04:05.000Z' });
  assert.deepEqual((o.spec.placement as Array<{ slot: number }>).map((p) => p.slot), [0, 1, 2, 3]);
  assert.equal(o.spec.members, undefined, 'spec.members is the status reporter\'s list of member files, not a count');
});

test('parse gives back what was created, with the server\'s version, deletion mark and finalizers', () => {
  const o = replicatedVolumeObject(raid10, now) as { metadata: Record<string, unknown> };
  const fromServer = { ...o, metadata: { ...o.metadata, resourceVersion: '42', deletionTimestamp: '2025-01-02T04:00:00Z' } };
  const v = parseReplicatedVolume(fromServer);
  const { creator: _creator, ...rest } = raid10;
  assert.deepEqual(v, {
    ...rest,
    placement: [...raid10.placement].sort((a, b) => a.slot - b.slot),
    resourceVersion: '42',
    owner: { node: '', epoch: 0, since: '2025-01-02T03:04:05.000Z' },
    deleting: true,
    finalizers: ['llraid.io/member-node-a', 'llraid.io/member-node-b'],
  });
  // The status reporter's fields beside ours change nothing of the parse.
  const reported = { ...fromServer, spec: { ...(fromServer as unknown as { spec: object }).spec, sizeBytes: 5, members: [{ disk: 'd', path: '/p', role: 'active' }] } };
  assert.equal(parseReplicatedVolume(reported).members, 4);
});

test('a RaidVolume that is not a replicated one, or is malformed, is refused with EAPI naming the field', () => {
  const o = replicatedVolumeObject(raid10, now) as { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> };
  const withRv = (x: object) => ({ ...o, ...x, metadata: { ...o.metadata, resourceVersion: '1', ...((x as { metadata?: object }).metadata ?? {}) } });
  const fails = (x: unknown, re: RegExp) => assert.throws(() => parseReplicatedVolume(x), (e: unknown) => e instanceof K8sError && e.code === 'EAPI' && re.test(e.message));
  fails(withRv({ metadata: { labels: { 'llraid.io/node': 'node-a' } } }), /expected the label llraid.io\/replicated=true/);
  fails(withRv({ spec: { ...o.spec, level: 'raid5' } }), /spec.level: expected raid1 or raid10, found "raid5"/);
  fails(withRv({ spec: { ...o.spec, owner: undefined } }), /spec.owner/);
  fails(withRv({ spec: { ...o.spec, memberBytes: -1 } }), /spec.memberBytes: expected an integer ≥ 1, found -1/);
});

test('what the RaidVolume could not record faithfully is refused before anything is written', () => {
  const fails = (v: Partial<NewReplicatedVolume>, re: RegExp) =>
    assert.throws(() => replicatedVolumeObject({ ...raid10, ...v }, now), (e: unknown) => e instanceof K8sError && e.code === 'EINVAL' && re.test(e.message));
  fails({ members: 6 }, /expected one placement entry per member \(6\), found 4/);
  fails({ placement: raid10.placement.map((p) => ({ ...p, slot: p.slot === 3 ? 0 : p.slot })) }, /slots: expected 0..3 once each, found 0,0,1,2/);
  fails({ id: 'Not_A_Name' }, /id: expected a DNS-1123 subdomain/);
  fails({ level: 5 as never }, /level: expected 1 or 10/);
  fails({ recoverySpeed: { minKiB: 10, maxKiB: 5 } }, /recoverySpeed/);
  fails({ creator: '' }, /creator/);
});

test('member finalizers and labels are valid names for any node name, one per node', () => {
  assert.equal(memberFinalizer('node-a'), 'llraid.io/member-node-a');
  const long = `ip-10-0-0-1.${'x'.repeat(80)}.compute.internal`;
  const f = memberFinalizer(long);
  const name = f.slice('llraid.io/'.length);
  assert.ok(name.length <= 63, `${name} has ${name.length} characters`);
  assert.match(name, /^[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]$/);
  assert.notEqual(memberFinalizer(`${long}-2`), f, 'another long name gets another finalizer');
  const label = memberLabel(long).slice('member.llraid.io/'.length);
  assert.ok(label.length <= 63 && /^[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]$/.test(label), label);
  assert.equal(memberLabel('node-a'), 'member.llraid.io/node-a');
});

test('owner and finalizer writes carry the version read: the server refuses them when it moved', () => {
  assert.deepEqual(ownerPatch('7', { node: 'node-b', epoch: 4, since: 't' }), { metadata: { resourceVersion: '7' }, spec: { owner: { node: 'node-b', epoch: 4, since: 't' } } });
  assert.deepEqual(finalizersPatch('8', ['llraid.io/member-node-b']), { metadata: { resourceVersion: '8', finalizers: ['llraid.io/member-node-b'] } });
});

test('409 Conflict maps to CONFLICT; 409 AlreadyExists and other answers stay EAPI with the status; no answer is EUNREACHABLE', () => {
  const answer = (code: number, reason: string) => new ApiException(code, 'HTTP', { kind: 'Status', reason, message: `the server says ${reason}` }, {});
  const conflict = mapApiError('set owner', answer(409, 'Conflict'));
  assert.equal(conflict.code, 'CONFLICT');
  assert.equal(conflict.status, 409);
  assert.match(conflict.message, /set owner: API server answered 409: the server says Conflict/);
  const exists = mapApiError('create', answer(409, 'AlreadyExists'));
  assert.deepEqual([exists.code, exists.status], ['EAPI', 409]);
  assert.deepEqual([mapApiError('get', answer(404, 'NotFound')).code, mapApiError('get', answer(404, 'NotFound')).status], ['EAPI', 404]);
  const textBody = mapApiError('get', new ApiException(500, 'HTTP', 'plain text', {}));
  assert.match(textBody.message, /500: plain text/);
  assert.equal(mapApiError('get', new Error('connect ECONNREFUSED')).code, 'EUNREACHABLE');
});
