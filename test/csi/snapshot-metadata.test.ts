// The SnapshotMetadata service over gRPC (a real grpc-js client on a unix socket) with snapshots
// that are reflink clones of a running raid1's members on XFS: allocated ranges of the first
// snapshot and the delta to the second, streamed in pages of max_results, resumed from a
// starting_offset, and the request errors the spec asks for.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { constants, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, Server, ServerCredentials, status, type Client, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { createArray, type SnapshotMembers } from '../../src/md/index.js';
import { serviceDefinition } from '../../src/csi/proto.js';
import { toGrpcImplementation, type CsiStreamHandler } from '../../src/csi/grpc-service.js';
import { SnapshotMetadataServer, type SnapshotSource } from '../../src/csi/snapshot-metadata-server.js';
import { DATA_OFFSET, memberFiles, pattern } from '../md/array-fixtures.js';
import { mountReflinkFs } from '../support/reflink-fs.js';
import { tempDir } from '../support/temp-dir.js';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Page {
  block_metadata_type: string;
  volume_capacity_bytes: number;
  block_metadata: { byte_offset: number; size_bytes: number }[];
}

function collect(stream: ClientReadableStream<unknown>): Promise<Page[]> {
  return new Promise((resolve, reject) => {
    const pages: Page[] = [];
    stream.on('data', (p: Page) => pages.push(p));
    stream.on('error', reject);
    stream.on('end', () => resolve(pages));
  });
}

test('SnapshotMetadata streams the allocated ranges and the delta of reflink snapshots, in pages', async (t: TestContext) => {
  const fs = await mountReflinkFs('snapshot-metadata');
  // One hook, so the order is sure: the client and the server let go of the socket, then unmount.
  const closers: (() => void)[] = [];
  t.after(async () => {
    for (const close of closers.reverse()) close();
    await fs.close();
  });
  const paths = memberFiles(fs.dir, 2, 17 * MiB, 'm');
  const array = await createArray({ name: 'cbt', level: 1, members: paths, assumeClean: true });
  const geometry = { level: 1, raidDisks: 2, layout: 0, chunkSize: 0, memberSize: array.memberSet.memberSize };
  const snapshots = new Map<string, SnapshotSource>();
  const snapshot = async (id: string): Promise<void> => {
    await array.flush();
    const clones = paths.map((_, i) => join(fs.dir, `${id}-${i}`));
    paths.forEach((p, i) => copyFileSync(p, clones[i]!, constants.COPYFILE_FICLONE_FORCE));
    const members: SnapshotMembers = { geometry, dataOffset: DATA_OFFSET, paths: clones };
    snapshots.set(id, { volumeId: 'vol-1', capacityBytes: array.size, members });
  };
  try {
    // Five separate written ranges, then a snapshot; two of them rewritten and one new, then another.
    for (const at of [0, 1, 3, 5, 8]) await array.write(at * MiB, pattern(at, 64 * KiB));
    await snapshot('snap-1');
    await array.write(1 * MiB + 8 * KiB, pattern(11, 4 * KiB));
    await array.write(5 * MiB, pattern(12, 8 * KiB));
    await array.write(12 * MiB, pattern(13, 4 * KiB));
    await snapshot('snap-2');
  } finally {
    await array.stop();
  }
  snapshots.set('other-volume', { ...snapshots.get('snap-2')!, volumeId: 'vol-2' });

  const socket = join(tempDir(t, 'snapshot-metadata-socket'), 'csi.sock');
  const server = new Server();
  const def = serviceDefinition('SnapshotMetadata');
  const service = new SnapshotMetadataServer((id) => Promise.resolve(snapshots.get(id)));
  server.addService(def, toGrpcImplementation(service as unknown as Record<string, CsiStreamHandler>, Object.keys(def), undefined, new Set(Object.keys(def))));
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  closers.push(() => server.forceShutdown());
  const Ctor = makeGenericClientConstructor(def, 'SnapshotMetadata');
  const client = new Ctor(`unix://${socket}`, credentials.createInsecure()) as Client & Record<string, (req: object) => ClientReadableStream<unknown>>;
  closers.push(() => client.close());
  const call = (method: string, request: object): Promise<Page[]> => collect(client[method]!.call(client, request));
  const flat = (pages: Page[]): [number, number][] => pages.flatMap((p) => p.block_metadata.map((b) => [b.byte_offset, b.size_bytes] as [number, number]));

  const allocated = await call('GetMetadataAllocated', { snapshot_id: 'snap-1', starting_offset: 0, max_results: 2 });
  assert.deepEqual(flat(allocated), [0, 1, 3, 5, 8].map((at) => [at * MiB, 64 * KiB]));
  assert.deepEqual(allocated.map((p) => p.block_metadata.length), [2, 2, 1], 'pages of max_results');
  assert.ok(allocated.every((p) => p.block_metadata_type === 'VARIABLE_LENGTH' && p.volume_capacity_bytes === 16 * MiB));

  const delta = await call('GetMetadataDelta', { base_snapshot_id: 'snap-1', target_snapshot_id: 'snap-2', starting_offset: 0, max_results: 0 });
  assert.deepEqual(flat(delta), [[1 * MiB + 8 * KiB, 4 * KiB], [5 * MiB, 8 * KiB], [12 * MiB, 4 * KiB]]);
  // Resumed inside the second range: it is kept whole, the first left out.
  const resumed = await call('GetMetadataDelta', { base_snapshot_id: 'snap-1', target_snapshot_id: 'snap-2', starting_offset: 5 * MiB + 4 * KiB, max_results: 0 });
  assert.deepEqual(flat(resumed), [[5 * MiB, 8 * KiB], [12 * MiB, 4 * KiB]]);
  assert.deepEqual(await call('GetMetadataDelta', { base_snapshot_id: 'snap-2', target_snapshot_id: 'snap-2', starting_offset: 0, max_results: 0 }), [], 'no change, no response');

  const refused = async (method: string, request: object, code: status, message: RegExp): Promise<void> => {
    await assert.rejects(call(method, request), (e: ServiceError) => e.code === code && message.test(e.details), `${method} ${JSON.stringify(request)}`);
  };
  await refused('GetMetadataAllocated', { snapshot_id: '', starting_offset: 0, max_results: 0 }, status.INVALID_ARGUMENT, /snapshot_id is required/);
  await refused('GetMetadataAllocated', { snapshot_id: 'nope', starting_offset: 0, max_results: 0 }, status.NOT_FOUND, /no snapshot nope/);
  await refused('GetMetadataAllocated', { snapshot_id: 'snap-1', starting_offset: 16 * MiB, max_results: 0 }, status.OUT_OF_RANGE, /past the end/);
  await refused('GetMetadataAllocated', { snapshot_id: 'snap-1', starting_offset: 0, max_results: -1 }, status.INVALID_ARGUMENT, /max_results/);
  await refused('GetMetadataDelta', { base_snapshot_id: 'snap-1', target_snapshot_id: 'other-volume', starting_offset: 0, max_results: 0 }, status.INVALID_ARGUMENT, /two snapshots of one volume/);
});
