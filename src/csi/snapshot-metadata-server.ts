// The CSI SnapshotMetadata service (changed-block tracking, KEP-3314): the ranges a snapshot holds
// data in, and the ranges that differ between two snapshots of one volume, streamed in pages of
// at most max_results ranges, in ascending order. The ranges come from the filesystem's extent
// maps of the snapshots' member files (md/snapshot-ranges.ts), so they are exact to the
// filesystem's block and cost nothing on the write path; the answers are VARIABLE_LENGTH
// (extents, merged where they touch). A snapshot another node holds is answered by that node,
// through `forwarding` (snapshot-metadata-forwarder.ts) when the plugin has it; the peer endpoint
// serves a server without it, so a forwarded call is never forwarded again.

import { allocatedRanges, changedRanges, type SnapshotMembers } from '../md/index.js';
import type { ByteRange } from '../block/file-extents.js';
import { CsiError, invalid, notFound } from './errors.js';
import type { CallContext } from './grpc-service.js';

/** A snapshot as the service needs it. */
export interface SnapshotSource {
  /** The volume the snapshot was taken of. */
  volumeId: string;
  /** The volume's size when the snapshot was taken. */
  capacityBytes: number;
  members: SnapshotMembers;
}

/** Finds a snapshot by its CSI id; undefined when there is none. */
export type SnapshotLookup = (snapshotId: string) => Promise<SnapshotSource | undefined>;

/** Ranges per response when the caller leaves max_results 0. */
export const DEFAULT_PAGE = 256;

export type MetadataMethod = 'GetMetadataAllocated' | 'GetMetadataDelta';

/** Another node that may hold a snapshot, and where its plugin's peer endpoint is. */
export interface PeerNode {
  node: string;
  address: string;
}

/** How calls for snapshots of other nodes are answered: by their holder, relayed. */
export interface SnapshotForwarding {
  /**
   * The nodes that may hold snapshot `id` (its node tag's; almost always one), none when the id
   * names this node or no node known. Throws UNAVAILABLE when the nodes cannot be listed.
   */
  route(id: string): Promise<PeerNode[]>;
  /** The call made to the first of `peers` that knows the snapshot, its answer stream as it comes. */
  relay(method: MetadataMethod, request: object, peers: PeerNode[], context: CallContext): AsyncIterable<MetadataResponse>;
}

/** A call made in-process (tests): never cancelled, no deadline. */
const NO_CALL: CallContext = { signal: new AbortController().signal, deadline: Infinity };

interface BlockMetadata {
  byte_offset: number;
  size_bytes: number;
}

export interface MetadataResponse {
  block_metadata_type: 'VARIABLE_LENGTH';
  volume_capacity_bytes: number;
  block_metadata: BlockMetadata[];
}

export interface GetMetadataAllocatedRequest {
  snapshot_id: string;
  starting_offset: number;
  max_results: number;
}

export interface GetMetadataDeltaRequest {
  base_snapshot_id: string;
  target_snapshot_id: string;
  starting_offset: number;
  max_results: number;
}

export class SnapshotMetadataServer {
  constructor(
    private readonly lookup: SnapshotLookup,
    private readonly forwarding?: SnapshotForwarding,
  ) {}

  async *GetMetadataAllocated(req: GetMetadataAllocatedRequest, context: CallContext = NO_CALL): AsyncGenerator<MetadataResponse> {
    const found = await this.lookupField(req.snapshot_id, 'snapshot_id');
    if (!found) {
      const peers = await this.peersFor(req.snapshot_id);
      if (peers.length > 0) {
        yield* this.forwarding!.relay('GetMetadataAllocated', req, peers, context);
        return;
      }
    }
    const snapshot = this.present(found, req.snapshot_id, 'snapshot_id');
    const page = pageSize(req.max_results);
    checkOffset(req.starting_offset, snapshot.capacityBytes);
    yield* pages(await allocatedRanges(snapshot.members), req.starting_offset, page, snapshot.capacityBytes);
  }

  async *GetMetadataDelta(req: GetMetadataDeltaRequest, context: CallContext = NO_CALL): AsyncGenerator<MetadataResponse> {
    const baseFound = await this.lookupField(req.base_snapshot_id, 'base_snapshot_id');
    const targetFound = await this.lookupField(req.target_snapshot_id, 'target_snapshot_id');
    // Both snapshots of one volume live on its node: neither here, the target's holder answers
    // (and refuses a base it lacks); one here, the other is missing, answered here.
    if (!baseFound && !targetFound) {
      const peers = await this.peersFor(req.target_snapshot_id);
      if (peers.length > 0) {
        yield* this.forwarding!.relay('GetMetadataDelta', req, peers, context);
        return;
      }
    }
    const base = this.present(baseFound, req.base_snapshot_id, 'base_snapshot_id');
    const target = this.present(targetFound, req.target_snapshot_id, 'target_snapshot_id');
    if (base.volumeId !== target.volumeId) {
      throw invalid(`base snapshot ${req.base_snapshot_id} is of volume ${base.volumeId} and target ${req.target_snapshot_id} of ${target.volumeId}: a delta needs two snapshots of one volume`);
    }
    const page = pageSize(req.max_results);
    checkOffset(req.starting_offset, target.capacityBytes);
    yield* pages(await changedRanges(base.members, target.members), req.starting_offset, page, target.capacityBytes);
  }

  private async lookupField(id: string, field: string): Promise<SnapshotSource | undefined> {
    if (typeof id !== 'string' || id === '') throw invalid(`${field} is required`);
    return this.lookup(id);
  }

  private present(found: SnapshotSource | undefined, id: string, field: string): SnapshotSource {
    if (!found) throw notFound(`no snapshot ${id} (${field})`);
    return found;
  }

  private async peersFor(id: string): Promise<PeerNode[]> {
    return this.forwarding ? this.forwarding.route(id) : [];
  }
}

function pageSize(maxResults: number): number {
  if (!Number.isInteger(maxResults) || maxResults < 0) throw invalid(`max_results must be 0 or more, found ${maxResults}`);
  return maxResults === 0 ? DEFAULT_PAGE : maxResults;
}

function checkOffset(offset: number, capacity: number): void {
  if (!Number.isInteger(offset) || offset < 0) throw invalid(`starting_offset must be 0 or more, found ${offset}`);
  if (offset >= capacity) throw new CsiError('OUT_OF_RANGE', `starting_offset ${offset} is past the end of the volume (${capacity} bytes)`);
}

/**
 * The ranges from the one holding `start` on (ranges that end before it left out, the first kept
 * whole), cut at the volume's end, in pages of `page`. No range, no response: the stream just ends.
 */
function* pages(ranges: readonly ByteRange[], start: number, page: number, capacity: number): Generator<MetadataResponse> {
  const wanted: BlockMetadata[] = [];
  for (const r of ranges) {
    const end = Math.min(r.offset + r.length, capacity);
    if (end <= start || r.offset >= capacity) continue;
    wanted.push({ byte_offset: r.offset, size_bytes: end - r.offset });
  }
  const response = (block_metadata: BlockMetadata[]): MetadataResponse => ({ block_metadata_type: 'VARIABLE_LENGTH', volume_capacity_bytes: capacity, block_metadata });
  for (let i = 0; i < wanted.length; i += page) yield response(wanted.slice(i, i + page));
}
