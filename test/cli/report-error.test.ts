// The CLI's one mapping from an error to a line on stderr and an exit code
// (src/cli/report-error.ts): every code of every error family has an exit code, usage is 2.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError } from '../../src/block/errors.js';
import { SocketPathError } from '../../src/block/socket-file.js';
import { CLI_ERROR_FAMILIES, EXIT_STATUS, reportError, UsageError } from '../../src/cli/report-error.js';
import type { LlraidError } from '../../src/common/llraid-error.js';
import { CommandError, CsiError } from '../../src/csi/errors.js';
import { UnresolvablePathError } from '../../src/csi/kubelet-paths.js';
import { EngineError } from '../../src/engine/control/client.js';
import { SupervisorError } from '../../src/engine/errors.js';
import { K8sError } from '../../src/k8s/errors.js';
import { MdError } from '../../src/md/errors.js';
import { NbdError } from '../../src/nbd/errors.js';
import { SizeError } from '../../src/units/byte-sizes.js';

type Family = keyof typeof CLI_ERROR_FAMILIES;

/** An error of each family with the given code (the classes whose code is fixed ignore it). */
const make: Record<Family, (code: string) => LlraidError> = {
  block: (c) => new BlockError(c as never, 'm'),
  socketPath: (c) => new SocketPathError(c as never, 'm'),
  md: (c) => new MdError(c as never, 'm'),
  engine: (c) => new EngineError(c as never, 'm'),
  supervisor: (c) => new SupervisorError(c as never, 'm'),
  nbd: (c) => new NbdError(c as never, 'm'),
  csi: (c) => new CsiError(c as never, 'm'),
  command: () => new CommandError('m', 1, ''),
  path: () => new UnresolvablePathError('m'),
  k8s: (c) => new K8sError(c as never, 'm'),
  size: () => new SizeError('m'),
  usage: () => new UsageError('m'),
};

function report(err: unknown): { code: number; text: string } {
  let text = '';
  const code = reportError(err, (t) => void (text += t));
  return { code, text };
}

test('every code of every error family has an exit code, and no table holds a code its family lacks', () => {
  for (const [family, codes] of Object.entries(CLI_ERROR_FAMILIES) as [Family, readonly string[]][]) {
    assert.deepEqual(Object.keys(EXIT_STATUS[family]).sort(), [...codes].sort(), family);
  }
});

test('reportError exits with the family table\'s code, printing the code unless it is usage', () => {
  for (const [family, codes] of Object.entries(CLI_ERROR_FAMILIES) as [Family, readonly string[]][]) {
    for (const code of codes) {
      const expected = (EXIT_STATUS[family] as Record<string, number>)[code]!;
      assert.deepEqual(report(make[family](code)), { code: expected, text: expected === 2 ? 'llraid: m\n' : `llraid: m (${code})\n` }, `${family} ${code}`);
    }
  }
});

test('usage is 2 (a bad command line, a size that is not one), an array\'s EINVAL is 1', () => {
  assert.deepEqual(report(new UsageError('expected --level')), { code: 2, text: 'llraid: expected --level\n' });
  assert.deepEqual(report(new SizeError('--size: expected a positive size, found "lots"')), { code: 2, text: 'llraid: --size: expected a positive size, found "lots"\n' });
  assert.deepEqual(report(new MdError('EINVAL', 'raid10: near copies')), { code: 1, text: 'llraid: raid10: near copies (EINVAL)\n' });
  assert.deepEqual(report(new EngineError('EBUSY', 'member b: already rebuilding')), { code: 1, text: 'llraid: member b: already rebuilding (EBUSY)\n' });
});

test('a system error exits 1 as it is; anything else is a bug, 70, with its stack', () => {
  assert.deepEqual(report(Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' })), { code: 1, text: 'llraid: EACCES: permission denied\n' });
  const bug = report(new TypeError('x is undefined'));
  assert.equal(bug.code, 70);
  assert.match(bug.text, /^llraid: internal error: TypeError: x is undefined\n\s+at /);
});
