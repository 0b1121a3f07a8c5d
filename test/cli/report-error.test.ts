// The CLI's one mapping from an error to a line on stderr and an exit code
// (src/cli/report-error.ts): every code of every error family has an exit code, usage is 2.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK_ERROR_CODES, BlockError } from '../../src/block/errors.js';
import { SOCKET_PATH_ERROR_CODES, SocketPathError } from '../../src/block/socket-file.js';
import { CLI_ERROR_CODES, EXIT_STATUS, reportError, UsageError } from '../../src/cli/report-error.js';
import { CommandError, CSI_ERROR_CODES, CsiError } from '../../src/csi/errors.js';
import { UnresolvablePathError } from '../../src/csi/kubelet-paths.js';
import { K8S_ERROR_CODES, K8sError } from '../../src/k8s/errors.js';
import { EngineError } from '../../src/engine/control/client.js';
import { CONTROL_ERROR_CODES } from '../../src/engine/control/protocol.js';
import { SUPERVISOR_ERROR_CODES, SupervisorError } from '../../src/engine/errors.js';
import { MD_ERROR_CODES, MdError } from '../../src/md/errors.js';
import { NBD_ERROR_CODES, NbdError } from '../../src/nbd/errors.js';
import type { LlraidError } from '../../src/common/llraid-error.js';

const families: [string, readonly string[], (code: string) => LlraidError][] = [
  ['block', BLOCK_ERROR_CODES, (c) => new BlockError(c as never, 'm')],
  ['socket path', SOCKET_PATH_ERROR_CODES, (c) => new SocketPathError(c as never, 'm')],
  ['md', MD_ERROR_CODES, (c) => new MdError(c as never, 'm')],
  ['engine', CONTROL_ERROR_CODES, (c) => new EngineError(c as never, 'm')],
  ['supervisor', SUPERVISOR_ERROR_CODES, (c) => new SupervisorError(c as never, 'm')],
  ['nbd', NBD_ERROR_CODES, (c) => new NbdError(c as never, 'm')],
  ['csi', CSI_ERROR_CODES, (c) => new CsiError(c as never, 'm')],
  ['k8s', K8S_ERROR_CODES, (c) => new K8sError(c as never, 'm')],
];

function report(err: unknown): { code: number; text: string } {
  let text = '';
  const code = reportError(err, (t) => void (text += t));
  return { code, text };
}

test('every code of every error family has an exit code, and CLI_ERROR_CODES lists them all once', () => {
  const all = new Set([...families.flatMap(([, codes]) => codes), 'ECOMMAND', 'EUNRESOLVABLE', 'EUSAGE']);
  assert.deepEqual([...CLI_ERROR_CODES].sort(), [...all].sort());
  assert.deepEqual(Object.keys(EXIT_STATUS).sort(), [...all].sort());
});

test('an error of any family exits 1 with its message and code on one line', () => {
  for (const [name, codes, make] of families) {
    for (const code of codes) assert.deepEqual(report(make(code)), { code: 1, text: `llraid: m (${code})\n` }, `${name} ${code}`);
  }
  assert.deepEqual(report(new CommandError('mkfs: exit 1', 1, '')), { code: 1, text: 'llraid: mkfs: exit 1 (ECOMMAND)\n' });
  assert.deepEqual(report(new UnresolvablePathError('/a/..: loop')), { code: 1, text: 'llraid: /a/..: loop (EUNRESOLVABLE)\n' });
});

test('usage exits 2 without a code; a system error 1; anything else is a bug, 70, with its stack', () => {
  assert.deepEqual(report(new UsageError('expected --level')), { code: 2, text: 'llraid: expected --level\n' });
  assert.deepEqual(report(Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' })), { code: 1, text: 'llraid: EACCES: permission denied\n' });
  const bug = report(new TypeError('x is undefined'));
  assert.equal(bug.code, 70);
  assert.match(bug.text, /^llraid: internal error: TypeError: x is undefined\n\s+at /);
});
