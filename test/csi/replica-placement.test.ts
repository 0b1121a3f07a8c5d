// Placement of a replicated volume's members: one copy per node, this node first, the roomiest
// live nodes in the accessibility requirements next, raid10 slot i on copy i mod replicas, and
// RESOURCE_EXHAUSTED naming each node left out and why.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CsiError } from '../../src/csi/errors.js';
import { allowedNodesFor, candidateNodes, placeReplicas, type NodeCandidate, type PlacementRequest } from '../../src/csi/replica-placement.js';
import { nodeTopology } from '../../src/csi/topology.js';

const GiB = 1024 ** 3;
const id = 'ab'.repeat(16);

function request(candidates: NodeCandidate[], over: Partial<PlacementRequest> = {}): PlacementRequest {
  return { volumeId: id, members: 2, replicas: 2, capacity: GiB, localNode: 'a', candidates, requisite: [], ...over };
}

function exhausted(r: PlacementRequest): string {
  try {
    placeReplicas(r);
  } catch (err) {
    assert.ok(err instanceof CsiError && err.code === 'RESOURCE_EXHAUSTED', String(err));
    return err.message;
  }
  throw new Error('expected RESOURCE_EXHAUSTED');
}

test('raid1: this node first, then the live node with the most room', () => {
  const p = placeReplicas(request([
    { node: 'a', live: true, room: 1 * GiB },
    { node: 'b', live: true, room: 5 * GiB },
    { node: 'c', live: true, room: 9 * GiB },
  ]));
  assert.deepEqual(p.nodes, ['a', 'c']);
  assert.deepEqual(p.slots, [
    { slot: 0, node: 'a', file: `llraid-${id}-0.img` },
    { slot: 1, node: 'c', file: `llraid-${id}-1.img` },
  ]);
});

test('raid10: slot i on the node of copy i mod replicas, so each copy of a chunk is on another node', () => {
  const p = placeReplicas(request([
    { node: 'b', live: true, room: 2 * GiB },
    { node: 'c', live: true, room: 2 * GiB },
  ], { members: 6, replicas: 3 }));
  assert.deepEqual(p.nodes, ['a', 'b', 'c']); // equal room: by name
  assert.deepEqual(p.slots.map((s) => s.node), ['a', 'b', 'c', 'a', 'b', 'c']);
  // Near layout with 3 copies: chunk copies sit on members d, d+1, d+2 (mod 6): three nodes.
  for (let d = 0; d < 6; d++) {
    const nodes = new Set([0, 1, 2].map((k) => p.slots[(d + k) % 6]!.node));
    assert.equal(nodes.size, 3);
  }
  const two = placeReplicas(request([{ node: 'b', live: true, room: GiB }], { members: 4 }));
  assert.deepEqual(two.slots.map((s) => s.node), ['a', 'b', 'a', 'b']);
});

test('this node must be in the requisite; the other copies go to the allowed nodes only', () => {
  const cands = [
    { node: 'b', live: true, room: 9 * GiB },
    { node: 'c', live: true, room: 2 * GiB },
  ];
  assert.deepEqual(placeReplicas(request(cands, { requisite: [nodeTopology('a')], others: ['c'] })).nodes, ['a', 'c']);
  assert.deepEqual(placeReplicas(request(cands, { requisite: [{ segments: {} }] })).nodes, ['a', 'b']);
});

test('allowed nodes: the class\'s allowedTopologies; else the other nodes the requisite names; else any', () => {
  // A --strict-topology provisioner narrows the requisite to its own node: that says nothing of the others.
  assert.equal(allowedNodesFor(undefined, [nodeTopology('a')], 'a'), undefined);
  assert.deepEqual(allowedNodesFor(['c', 'b'], [nodeTopology('a')], 'a'), ['c', 'b']);
  assert.deepEqual(allowedNodesFor(undefined, [nodeTopology('a'), nodeTopology('c'), nodeTopology('b')], 'a'), ['b', 'c']);
  assert.equal(allowedNodesFor(undefined, [nodeTopology('a'), { segments: {} }], 'a'), undefined);
  assert.equal(allowedNodesFor(undefined, [], 'a'), undefined);
});

test('too few usable nodes: RESOURCE_EXHAUSTED names each node considered and why it was left out', () => {
  const msg = exhausted(request([
    { node: 'b', live: false, room: 9 * GiB },
    { node: 'c', live: true, room: undefined },
    { node: 'd', live: true, room: GiB / 2 },
    { node: 'e', live: true, room: 9 * GiB },
  ], { replicas: 3, members: 3, requisite: [nodeTopology('a')], others: ['b', 'c', 'd'] }));
  assert.match(msg, /3 replicas need 3 nodes with room \(this node first\), found 1 of the 5 considered/);
  assert.match(msg, /b: its llraid node lease is not live/);
  assert.match(msg, /c: reports no capacity for this storage class/);
  assert.match(msg, /d: room for 512 MiB, needs 1 GiB/);
  assert.match(msg, /e: not in the allowed topologies/);
});

test('this node without room, or outside the requirements, fails even when others have room', () => {
  const cands = [{ node: 'b', live: true, room: 9 * GiB }, { node: 'c', live: true, room: 9 * GiB }];
  assert.match(exhausted(request(cands, { localProblem: 'no disk with 1 GiB free' })), /a \(this node\): no disk with 1 GiB free/);
  assert.match(exhausted(request(cands, { requisite: [nodeTopology('b')] })), /a \(this node\): not in the accessibility requirements/);
});

test('candidates: live nodes, nodes reporting room and nodes the allowed list names, each once', async () => {
  const liveness = { liveNodes: async () => [{ node: 'a', memberService: '10.0.0.1:10809' }, { node: 'b', memberService: '10.0.0.2:10809' }] };
  const reports = { forClaim: async () => ({ room: new Map([['b', 5 * GiB], ['c', 7 * GiB]]), allowedNodes: ['b', 'c', 'd'] }) };
  const got = await candidateNodes(liveness, reports, undefined, [nodeTopology('a')], 'a');
  assert.deepEqual(got.others, ['b', 'c', 'd']);
  assert.deepEqual(got.candidates, [
    { node: 'a', live: true, room: undefined },
    { node: 'b', live: true, room: 5 * GiB },
    { node: 'c', live: false, room: 7 * GiB },
    { node: 'd', live: false, room: undefined },
  ]);
  const unreported = await candidateNodes(liveness, { forClaim: async () => ({ room: undefined, allowedNodes: undefined }) }, undefined, [], 'a');
  assert.deepEqual(unreported, { others: undefined, candidates: [{ node: 'a', live: true, room: Infinity }, { node: 'b', live: true, room: Infinity }] });
});
