// An engine (`llraid serve`, one process per staged volume) loads only what it uses: the CLI
// imports the running command's module alone (src/cli/main.ts), so none of the CSI plugin's
// packages (gRPC, protobufjs, the Kubernetes client, prom-client) and none of its code is in an
// engine's memory. Checked on the built CLI with a module-loading hook that records every ES
// module and every CommonJS file the process loads.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildCli } from '../support/cli.js';

const run = promisify(execFile);

// The ES module hook (module.register) records ES imports; the CommonJS require of a package is
// recorded by wrapping Module._load in the same preload.
const PRELOAD = `
const { appendFileSync } = require('node:fs');
const { register } = require('node:module');
const Module = require('node:module');
const log = process.env.MODULE_LOG;
register('data:text/javascript,' + encodeURIComponent(
  'import { appendFileSync } from "node:fs";' +
  'export async function load(url, ctx, next) { appendFileSync(' + JSON.stringify(log) + ', url + "\\\\n"); return next(url, ctx); }'));
const load = Module._load;
Module._load = function (request, parent, isMain) {
  try { appendFileSync(log, Module._resolveFilename(request, parent, isMain) + '\\n'); } catch {}
  return load.apply(this, arguments);
};
`;

test('llraid serve loads no CSI, Kubernetes, gRPC or metrics code', async () => {
  const cli = await buildCli();
  const dir = await mkdtemp(join(tmpdir(), 'llraid-engine-modules-'));
  try {
    const preload = join(dir, 'preload.cjs');
    const log = join(dir, 'modules.log');
    await writeFile(preload, PRELOAD);
    // --help loads the command's module and everything it imports, and runs nothing.
    await run(process.execPath, ['-r', preload, cli, 'serve', '--help'], { env: { ...process.env, MODULE_LOG: log } });
    const loaded = (await readFile(log, 'utf8')).split('\n').filter((l) => l !== '');
    assert.ok(loaded.some((l) => l.includes('/commands/serve.js')), `expected the serve command among ${loaded.length} modules`);
    const packages = loaded.filter((l) => /node_modules\/(@grpc|@kubernetes|protobufjs|prom-client|yaml)\//.test(l));
    assert.deepEqual(packages, [], 'packages an engine does not use');
    const commands = loaded.filter((l) => /\/cli\/commands\//.test(l) && !l.includes('/commands/serve.js'));
    assert.deepEqual(commands, [], 'other commands\' modules');
    // report-error.ts maps the CSI layer's error types, so their two small modules load.
    const csi = loaded.filter((l) => /\/dist\/src\/(csi|k8s)\//.test(l) && !/\/(csi|k8s)\/errors\.js$|\/csi\/kubelet-paths\.js$/.test(l));
    assert.deepEqual(csi, [], 'CSI or Kubernetes code');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
