// The NBD layer's one mapping from a failed request to an NBD error number
// (src/nbd/error-numbers.ts): every block code has one, md errors reach it as block errors, and
// anything else is EIO and traced, never silent.

import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK_ERROR_CODES, BlockError } from '../../src/block/errors.js';
import { configureTrace } from '../../src/common/trace.js';
import { asBlockError, MD_AS_BLOCK_CODE, MD_ERROR_CODES, MdError } from '../../src/md/errors.js';
import { nbdErrorNumber } from '../../src/nbd/error-numbers.js';
import * as protocol from '../../src/nbd/protocol.js';

const NBD_ERRNOS = new Set(Object.entries(protocol).filter(([k, v]) => /^NBD_E[A-Z]+$/.test(k) && typeof v === 'number').map(([, v]) => v));

afterEach(() => configureTrace({ write: (line) => void process.stderr.write(line) }));

test('every block code has an NBD error number; the ones the protocol names keep their meaning', () => {
  for (const code of BLOCK_ERROR_CODES) {
    const n = nbdErrorNumber(new BlockError(code, 'm'));
    assert.ok(NBD_ERRNOS.has(n), `${code}: ${n} is an NBD error number`);
  }
  assert.equal(nbdErrorNumber(new BlockError('EIO', 'm')), protocol.NBD_EIO);
  assert.equal(nbdErrorNumber(new BlockError('EROFS', 'm')), protocol.NBD_EPERM);
  assert.equal(nbdErrorNumber(new BlockError('ENOSPC', 'm')), protocol.NBD_ENOSPC);
  assert.equal(nbdErrorNumber(new BlockError('ENOTSUP', 'm')), protocol.NBD_ENOTSUP);
  assert.equal(nbdErrorNumber(new BlockError('ESHUTDOWN', 'm')), protocol.NBD_ESHUTDOWN);
});

test('every md code has a block code at the array boundary, and so an NBD error number', () => {
  assert.deepEqual(Object.keys(MD_AS_BLOCK_CODE).sort(), [...MD_ERROR_CODES].sort());
  for (const code of MD_ERROR_CODES) {
    const b = asBlockError(new MdError(code, 'no complete copy'), 'array vol');
    assert.ok(b instanceof BlockError);
    assert.equal(b.message, 'array vol: no complete copy');
    assert.ok((BLOCK_ERROR_CODES as readonly string[]).includes(b.code), `${code} → ${b.code}`);
    assert.equal(nbdErrorNumber(b), nbdErrorNumber(new BlockError(b.code, 'm')));
  }
  assert.equal(nbdErrorNumber(asBlockError(new MdError('EINVAL', 'm'), 'a')), protocol.NBD_EINVAL);
  assert.equal(nbdErrorNumber(asBlockError(new MdError('ENOSPC', 'm'), 'a')), protocol.NBD_ENOSPC);
});

test('an error that is no block error is EIO, and the nbd trace says so', () => {
  const lines: string[] = [];
  configureTrace({ trace: 'nbd', write: (l) => void lines.push(l) });
  assert.equal(nbdErrorNumber(new TypeError('device bug')), protocol.NBD_EIO);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, / ERROR llraid\[\d+\] nbd: a device failed a request with something other than a block error, answered EIO: TypeError: device bug/);
  configureTrace({ write: (l) => void lines.push(l) });
  assert.equal(nbdErrorNumber(new TypeError('device bug')), protocol.NBD_EIO);
  assert.equal(lines.length, 1, 'nothing while nbd is not traced');
});
