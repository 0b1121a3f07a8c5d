// The engine of a replicated volume: its arguments (epoch, lease, force, TLS only with remote
// members, the volume's recovery speeds, this node's files and nbds URIs of the others' member
// services), what the engine host accepts of them, and the leases passed to running engines —
// after a lapse only once the volume's owner was read back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequest } from '../../src/csi/engine-host.js';
import { CsiError } from '../../src/csi/errors.js';
import { EngineLeases } from '../../src/csi/engine-leases.js';
import { memberNodeOf, memberUri, replicatedEngineArgs, replicatedRecord } from '../../src/csi/replicated-stage.js';
import { tlsFilesIn } from '../../src/csi/member-tls.js';
import type { ReplicatedVolume } from '../../src/k8s/replication.js';
import { memberFileBytes } from '../../src/md/index.js';
import { parseNbdUri } from '../../src/nbd/index.js';
import { FakeLeaseKeeper, FakeReplicationStore } from '../support/fake-replication.js';

const id = '0f'.repeat(16);

function volume(over: Partial<ReplicatedVolume> = {}): ReplicatedVolume {
  return {
    id, resourceVersion: '1', level: 1, members: 2, chunkSize: 0, replicas: 2, disklessAttach: false, memberBytes: memberFileBytes(64 << 20),
    fsType: 'ext4', setName: 'ext4:pvc-a', placement: [
      { slot: 0, node: 'a', disk: 'disk0', file: `llraid-${id}-0.img` },
      { slot: 1, node: 'b', disk: 'disk0', file: `llraid-${id}-1.img` },
    ],
    owner: { node: 'a', epoch: 4, since: '' }, deleting: false, finalizers: [], ...over,
  };
}

const tls = tlsFilesIn('/etc/llraid/tls');
const services: Record<string, string> = { a: '10.0.0.1:10809', b: '10.0.0.2:10809', c: '[fd00::3]:10809' };

test('members in slot order: files here, nbds URIs with the member name elsewhere; TLS, epoch, lease, force', async () => {
  const { args, missing } = await replicatedEngineArgs({
    volume: volume({ recoverySpeed: { minKiB: 1000, maxKiB: 20000 } }), node: 'a', epoch: 4, leaseMs: 14_999.7, tls,
    localPath: async (e) => `/disks/${e.disk}/${e.file}`, memberService: async (n) => services[n],
  });
  assert.deepEqual(missing, []);
  assert.deepEqual(args, [
    '--epoch', '4', '--lease-ms', '14999', '--force',
    '--tls-cert', '/etc/llraid/tls/tls.crt', '--tls-key', '/etc/llraid/tls/tls.key', '--tls-ca', '/etc/llraid/tls/ca.crt',
    '--sync-speed-min', '1000', '--sync-speed-max', '20000',
    `/disks/disk0/llraid-${id}-0.img`,
    `nbds://10.0.0.2:10809/file:llraid-${id}-1.img?tls-hostname=llraid-member`,
  ]);
  const t = parseNbdUri(memberUri('[fd00::3]:10809', `llraid-${id}-1.img`).replace(/\?.*$/, ''));
  assert.deepEqual([t.address, t.exportName], [{ transport: 'tcp', host: 'fd00::3', port: 10809 }, `file:llraid-${id}-1.img`]);
});

test('a diskless node names every member remotely; a member that cannot be named is left out and said', async () => {
  const all = await replicatedEngineArgs({
    volume: volume(), node: 'c', epoch: 5, leaseMs: 1, tls, localPath: async () => undefined, memberService: async (n) => services[n],
  });
  assert.equal(all.args.filter((a) => a.startsWith('nbds://10.0.0.')).length, 2);
  const some = await replicatedEngineArgs({
    volume: volume(), node: 'a', epoch: 5, leaseMs: 1, tls, localPath: async () => undefined, memberService: async () => undefined,
  });
  assert.deepEqual(some.missing, [`slot 0: llraid-${id}-0.img is not on this node's disks`, 'slot 1: node b has no member service address']);
  assert.ok(!some.args.includes('--tls-cert'), 'no TLS options without a remote member: serve refuses them');
});

test('the engine host accepts these arguments and refuses other URIs and relative files', async () => {
  const { args } = await replicatedEngineArgs({
    volume: volume(), node: 'a', epoch: 4, leaseMs: 1000, tls, localPath: async (e) => `/disks/${e.file}`, memberService: async (n) => services[n],
  });
  const request = (a: string[]): string => JSON.stringify({ op: 'engine.start', volumeId: id, args: a });
  assert.deepEqual(parseRequest(request(args)), { op: 'engine.start', volumeId: id, args });
  const refused = (a: string[]): boolean => {
    try {
      parseRequest(request(a));
      return false;
    } catch (err) {
      return err instanceof CsiError && err.code === 'INVALID_ARGUMENT';
    }
  };
  assert.ok(refused(['nbd://10.0.0.2:10809/x']));
  assert.ok(refused(['nbd+unix:///x?socket=/run/x.sock']));
  assert.ok(refused(['--tls-ca', 'ca.crt', '/disks/m']));
  assert.ok(refused(['--epoch', 'x', '/disks/m']));
  assert.ok(refused(['--lease-ms']));
});

test('a replicated volume as the Node service shows it: geometry from its RaidVolume', () => {
  const r = replicatedRecord(volume());
  assert.deepEqual([r.id, r.fsType, r.level, r.raidDisks, r.capacity, r.nameKey], [id, 'ext4', 1, 2, 64 << 20, 'pvc-a']);
  const r10 = replicatedRecord(volume({ level: 10, members: 6, replicas: 3, chunkSize: 65536 }));
  assert.equal(r10.capacity, 2 * (64 << 20)); // six members of 64 MiB, three copies of each chunk
});

test('leases reach every engine; after a lapse only those still owned with their epoch, the others stop', async () => {
  const store = new FakeReplicationStore();
  const keeper = new FakeLeaseKeeper(10_000);
  const sent: string[] = [];
  const stopped: string[] = [];
  const leases = new EngineLeases({
    node: 'a', keeper, fresh: (i) => store.get(i), log: () => undefined,
    engines: {
      control: async (i, req) => {
        sent.push(`${i.slice(0, 2)} ${JSON.stringify(req)}`);
        return { ok: true };
      },
      stop: async (i) => void stopped.push(i.slice(0, 2)),
    },
  });
  const mine = 'aa'.repeat(16);
  const taken = 'bb'.repeat(16);
  for (const [v, epoch] of [[mine, 3], [taken, 7]] as const) {
    await store.create({ ...volume(), id: v, creator: 'a' });
    store.touch(v, { owner: { node: 'a', epoch, since: '' } });
    leases.add(v, epoch);
  }
  keeper.renew(10_000);
  await leases.settled();
  assert.deepEqual(sent.sort(), ['aa {"op":"lease","ms":10000}', 'bb {"op":"lease","ms":10000}']);
  sent.length = 0;
  keeper.lapse();
  store.touch(taken, { owner: { node: 'b', epoch: 8, since: '' } });
  const get = store.get.bind(store);
  let failReads = true;
  store.get = async (i) => {
    if (failReads) throw new Error('API server unreachable');
    return get(i);
  };
  keeper.renew(9_000); // after the lapse, the owner cannot be read: nothing is extended
  await leases.settled();
  assert.deepEqual(sent, []);
  failReads = false;
  keeper.renew(8_000); // an ordinary renewal still checks first, then extends only what is owned
  await leases.settled();
  assert.deepEqual(sent.sort(), ['aa {"op":"lease","ms":8000}', 'bb {"op":"lease","ms":0}']);
  assert.deepEqual(stopped, ['bb']);
  assert.deepEqual(leases.ids(), [mine]);
});

test('each member of an engine is placed on its node, whether a file here or a URI of another node', () => {
  const nodeOf = memberNodeOf(volume());
  assert.equal(nodeOf(`/disks/disk0/llraid-${id}-0.img`), 'a');
  assert.equal(nodeOf(memberUri('10.0.0.2:10809', `llraid-${id}-1.img`)), 'b');
  assert.equal(nodeOf('/disks/disk0/other.img'), undefined);
});
