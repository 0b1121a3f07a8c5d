// An engine runs with the memory settings every engine needs (ENGINE_NODE_FLAGS on node's command
// line, ENGINE_ENV in its environment: glibc and V8 read both before anything could set them
// later). Checked on a real engine the supervisor starts: its /proc command line and environment,
// and that it serves (a flag node or V8 refused would have ended it before its socket came).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENGINE_NODE_FLAGS } from '../../src/cli/engine-command.js';
import { ENGINE_ENV, EngineSupervisor } from '../../src/engine/supervisor.js';
import { buildCli, runCli } from '../support/cli.js';

const nulSeparated = async (file: string): Promise<string[]> => (await readFile(file, 'utf8')).split('\0').filter((s) => s !== '');

test('an engine started by the supervisor has the engine flags and environment, and serves', { timeout: 60_000 }, async () => {
  const cli = await buildCli();
  const dir = await mkdtemp(join(tmpdir(), 'llraid-engine-env-'));
  const engines = new EngineSupervisor({ command: [process.execPath, ...ENGINE_NODE_FLAGS, cli], runDir: join(dir, 'run') });
  try {
    const members = [0, 1].map((i) => join(dir, `member-${i}.img`));
    const created = await runCli(['create', '--level', '1', '--name', 'env', '--size', '32M', ...members]);
    assert.equal(created.code, 0, created.stderr);
    await engines.start('vol-env', members);
    const proc = await engines.find('vol-env');
    assert.ok(proc, 'the engine runs');
    const argv = await nulSeparated(`/proc/${proc.pid}/cmdline`);
    for (const flag of ENGINE_NODE_FLAGS) assert.ok(argv.includes(flag), `${flag} on the engine's command line`);
    const environment = await nulSeparated(`/proc/${proc.pid}/environ`);
    for (const [name, value] of Object.entries(ENGINE_ENV)) assert.ok(environment.includes(`${name}=${value}`), `${name}=${value} in the engine's environment`);
    const status = await engines.control('vol-env', { op: 'status' });
    assert.equal(status.ok, true);
  } finally {
    await engines.stopAll();
    engines.close();
    await rm(dir, { recursive: true, force: true });
  }
});
