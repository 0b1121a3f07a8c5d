// The TakeOver Event on a PVC: written with the claim's uid, a Warning naming both nodes and the
// epoch; nothing when the claim is gone.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CoreV1Event } from '@kubernetes/client-node';
import { writeTakeOverEvent } from '../../src/k8s/takeover-event.js';

test('a TakeOver Event goes on the PVC, by its uid; a missing PVC gets none', async () => {
  const written: CoreV1Event[] = [];
  const api = {
    uidOf: async (_kind: string, name: string) => (name === 'data' ? 'uid-1' : undefined),
    createEvent: async (e: CoreV1Event) => void written.push(e),
  };
  assert.equal(await writeTakeOverEvent(api, 'node-b', { namespace: 'app', name: 'data' }, 'node-b took over from node-a (lease expired), epoch 4'), true);
  assert.equal(await writeTakeOverEvent(api, 'node-b', { namespace: 'app', name: 'gone' }, 'x'), false);
  assert.equal(written.length, 1);
  const e = written[0]!;
  assert.deepEqual([e.reason, e.type, e.message, e.involvedObject.kind, e.involvedObject.uid, e.metadata.namespace], [
    'TakeOver', 'Warning', 'node-b took over from node-a (lease expired), epoch 4', 'PersistentVolumeClaim', 'uid-1', 'app',
  ]);
});
