// The control protocol's error replies (src/engine/control/server.ts → client.ts): an md or block
// error an engine meets reaches the command as an EngineError with the same code and message;
// anything else is EIO, and replies outside the protocol are EPROTO, never a crash.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLOCK_ERROR_CODES, BlockError } from '../../src/block/errors.js';
import type { MdArray } from '../../src/md/index.js';
import { controlRequest, EngineError } from '../../src/engine/control/client.js';
import { ControlServer } from '../../src/engine/control/server.js';
import { MD_ERROR_CODES, MdError } from '../../src/md/errors.js';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'llraid-control-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An engine whose array answers every status with `fail()`'s error. */
async function refusingEngine(path: string, fail: () => unknown): Promise<ControlServer> {
  const array = { status: () => { throw fail(); } } as unknown as MdArray;
  return ControlServer.listen(path, { array, onStop: () => undefined });
}

async function refusal(path: string): Promise<EngineError> {
  const err = await controlRequest(path, { op: 'status' }).then(() => assert.fail('expected a refusal'), (e: unknown) => e);
  assert.ok(err instanceof EngineError, `expected an EngineError, found ${String(err)}`);
  return err;
}

test('every md and block code crosses the control socket as it was thrown', async (t) => {
  const path = join(tempDir(t), 'control.sock');
  let next: Error = new Error('unset');
  const server = await refusingEngine(path, () => next);
  t.after(() => server.close());
  for (const [family, codes, make] of [
    ['md', MD_ERROR_CODES, (c: string) => new MdError(c as never, `md says ${c}`)],
    ['block', BLOCK_ERROR_CODES, (c: string) => new BlockError(c as never, `block says ${c}`)],
  ] as const) {
    for (const code of codes) {
      next = make(code);
      const e = await refusal(path);
      assert.equal(e.code, code, `${family} ${code}`);
      assert.equal(e.message, next.message);
    }
  }
});

test('an error that is no md or block error is EIO with its message', async (t) => {
  const path = join(tempDir(t), 'control.sock');
  const server = await refusingEngine(path, () => new TypeError('a bug in the engine'));
  t.after(() => server.close());
  const e = await refusal(path);
  assert.equal(e.code, 'EIO');
  assert.equal(e.message, 'a bug in the engine');
});

test('replies outside the protocol are EPROTO; no engine is ECONNREFUSED', async (t) => {
  const dir = tempDir(t);
  for (const [line, message] of [
    ['{"ok":false,"error":{"code":"EWHATEVER","message":"from a newer engine"}}', /^from a newer engine \(engine code EWHATEVER\)$/],
    ['not json', /expected a JSON reply, found "not json"/],
  ] as const) {
    const path = join(dir, `raw-${line.length}.sock`);
    const raw = createServer((s) => s.once('data', () => s.end(`${line}\n`)));
    await new Promise<void>((resolve) => raw.listen(path, resolve));
    const e = await refusal(path);
    raw.close();
    assert.equal(e.code, 'EPROTO');
    assert.match(e.message, message);
  }
  const gone = await refusal(join(dir, 'nobody.sock'));
  assert.equal(gone.code, 'ECONNREFUSED');
});
