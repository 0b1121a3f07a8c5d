// The CSI layer's one mapping from errors to gRPC statuses (src/csi/errors.ts): every code of
// every error family has a status, each family is looked up in its own table, and the details
// keep the code of the layer that failed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { BLOCK_ERROR_CODES, BlockError } from '../../src/block/errors.js';
import { SOCKET_PATH_ERROR_CODES, SocketPathError } from '../../src/block/socket-file.js';
import type { LlraidError } from '../../src/common/llraid-error.js';
import {
  BLOCK_STATUS, CommandError, CSI_ERROR_CODES, CsiError, ENGINE_STATUS, K8S_STATUS, MD_STATUS, NBD_STATUS, SIZE_STATUS, SOCKET_PATH_STATUS, SUPERVISOR_STATUS,
  type CsiErrorCode,
} from '../../src/csi/errors.js';
import { toStatus } from '../../src/csi/grpc-service.js';
import { K8S_ERROR_CODES, K8sError } from '../../src/k8s/errors.js';
import { EngineError } from '../../src/engine/control/client.js';
import { CONTROL_ERROR_CODES } from '../../src/engine/control/protocol.js';
import { SUPERVISOR_ERROR_CODES, SupervisorError } from '../../src/engine/errors.js';
import { MD_ERROR_CODES, MdError } from '../../src/md/errors.js';
import { NBD_ERROR_CODES, NbdError } from '../../src/nbd/errors.js';
import { SIZE_ERROR_CODES, SizeError } from '../../src/units/byte-sizes.js';

interface Family {
  name: string;
  codes: readonly string[];
  table: Record<string, CsiErrorCode>;
  make: (code: string) => LlraidError;
}

const families: Family[] = [
  { name: 'block', codes: BLOCK_ERROR_CODES, table: BLOCK_STATUS, make: (c) => new BlockError(c as never, 'm') },
  { name: 'socket path', codes: SOCKET_PATH_ERROR_CODES, table: SOCKET_PATH_STATUS, make: (c) => new SocketPathError(c as never, 'm') },
  { name: 'md', codes: MD_ERROR_CODES, table: MD_STATUS, make: (c) => new MdError(c as never, 'm') },
  { name: 'engine', codes: CONTROL_ERROR_CODES, table: ENGINE_STATUS, make: (c) => new EngineError(c as never, 'm') },
  { name: 'supervisor', codes: SUPERVISOR_ERROR_CODES, table: SUPERVISOR_STATUS, make: (c) => new SupervisorError(c as never, 'm') },
  { name: 'nbd', codes: NBD_ERROR_CODES, table: NBD_STATUS, make: (c) => new NbdError(c as never, 'm') },
  { name: 'k8s', codes: K8S_ERROR_CODES, table: K8S_STATUS, make: (c) => new K8sError(c as never, 'm') },
  { name: 'size', codes: SIZE_ERROR_CODES, table: SIZE_STATUS, make: () => new SizeError('m') },
];

test('every code of every error family has a CSI status, and no table holds a code its family lacks', () => {
  for (const f of families) {
    assert.deepEqual(Object.keys(f.table).sort(), [...f.codes].sort(), `${f.name}: table keys are the family's codes`);
    for (const code of f.codes) assert.ok(CSI_ERROR_CODES.includes(f.table[code]!), `${f.name} ${code}: ${f.table[code]} is a CSI code`);
  }
});

test('toStatus looks each family up in its own table and keeps the code in the details', () => {
  for (const f of families) {
    for (const code of f.codes) {
      const s = toStatus(f.make(code));
      assert.equal(s.code, GrpcStatus[f.table[code]!], `${f.name} ${code}`);
      assert.equal(s.details, `m (${code})`, `${f.name} ${code}`);
    }
  }
  // The same code means different things in different families.
  assert.equal(toStatus(new MdError('ENOTSUP', 'm')).code, GrpcStatus.INVALID_ARGUMENT);
  assert.equal(toStatus(new BlockError('ENOTSUP', 'm')).code, GrpcStatus.INTERNAL);
});

test('an engine that refuses with EBUSY is ABORTED (the CO retries), not INTERNAL; an engine that is gone is UNAVAILABLE', () => {
  assert.deepEqual(toStatus(new EngineError('EBUSY', 'member /d/b.img: already rebuilding')), {
    code: GrpcStatus.ABORTED,
    details: 'member /d/b.img: already rebuilding (EBUSY)',
  });
  assert.equal(toStatus(new EngineError('ECONNREFUSED', 'control socket /run/x: connect ENOENT')).code, GrpcStatus.UNAVAILABLE);
  assert.equal(toStatus(new EngineError('ENOSPC', 'm')).code, GrpcStatus.RESOURCE_EXHAUSTED);
});

test('CSI errors keep their own code, commands and unknown errors are INTERNAL', () => {
  for (const code of CSI_ERROR_CODES) assert.deepEqual(toStatus(new CsiError(code, 'm')), { code: GrpcStatus[code], details: 'm' });
  assert.deepEqual(toStatus(new CommandError('mount: exit 32: wrong fs type', 32, '')), { code: GrpcStatus.INTERNAL, details: 'mount: exit 32: wrong fs type' });
  assert.equal(toStatus(new Error('a bug')).code, GrpcStatus.INTERNAL);
  assert.equal(toStatus(Object.assign(new Error('no room'), { code: 'ENOSPC' })).code, GrpcStatus.RESOURCE_EXHAUSTED);
});
