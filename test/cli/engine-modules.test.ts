// An engine (`llraid serve`, one process per staged volume) loads only what it uses: bin.cjs
// runs `serve` from one bundled file (dist/src/bundle/serve.cjs, made by scripts/build.mjs from
// src/cli/serve-main.ts), which holds the serve command alone, so none of the CSI plugin's
// packages (gRPC, protobufjs, the Kubernetes client, prom-client) and none of its code is in an
// engine's memory. Checked on the built CLI: a module-loading hook records every ES module and
// every CommonJS file the process loads, the bundle's source map says which sources it holds,
// and a running engine's list of Node's own modules shows what it never needed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { buildCli } from '../support/cli.js';

const run = promisify(execFile);

// The ES module hook (module.register) records ES imports; the CommonJS require of a package is
// recorded by wrapping Module._load in the same preload. At exit, Node's own modules loaded.
const PRELOAD = `
const { appendFileSync, writeFileSync } = require('node:fs');
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
process.on('exit', () => writeFileSync(log + '.builtins', process.moduleLoadList.join('\\n')));
`;

async function withPreload(body: (preload: string, log: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'llraid-engine-modules-'));
  try {
    const preload = join(dir, 'preload.cjs');
    await writeFile(preload, PRELOAD);
    await body(preload, join(dir, 'modules.log'), dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const lines = async (file: string): Promise<string[]> => (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '');

test('llraid serve runs from the bundle, which holds no CSI, Kubernetes, gRPC or metrics code', async () => {
  const cli = await buildCli();
  await withPreload(async (preload, log) => {
    // --help loads the command's code and everything it imports, and runs nothing.
    await run(process.execPath, ['-r', preload, cli, 'serve', '--help'], { env: { ...process.env, MODULE_LOG: log } });
    const loaded = await lines(log);
    const own = [...new Set(loaded)].filter((l) => !l.startsWith('node:') && !/^[a-z_/]+$/.test(l) && !l.startsWith('data:'));
    assert.deepEqual(own.map((l) => l.replace(/^file:\/\//, '').replace(/^.*\/dist\//, 'dist/')), ['dist/src/cli/bin.cjs', 'dist/src/block/filesystem-kind.cjs', 'dist/src/bundle/serve.cjs'],
      'bin.cjs, the file it reads to size the pool, and the bundle: no other module and no package');

    const bundle = join(dirname(cli), '../bundle/serve.cjs');
    const sources = (JSON.parse(await readFile(`${bundle}.map`, 'utf8')) as { sources: string[] }).sources;
    assert.ok(sources.some((s) => s.endsWith('src/cli/commands/serve.ts')), `expected the serve command among the bundle's ${sources.length} sources`);
    assert.ok(sources.every((s) => !s.includes('/dist/')), 'the source map leads to src/*.ts, through tsc\'s');
    const packages = sources.filter((s) => s.includes('node_modules/')).map((s) => s.replace(/^.*node_modules\/((?:@[^/]+\/)?[^/]+)\/.*$/, '$1'));
    assert.deepEqual([...new Set(packages)], ['commander'], 'packages in an engine');
    const commands = sources.filter((s) => /\/cli\/commands\//.test(s) && !s.endsWith('/commands/serve.ts'));
    assert.deepEqual(commands, [], 'other commands\' modules');
    // report-error.ts maps the CSI layer's error types, so their two small modules are in.
    const csi = sources.filter((s) => /\/src\/(csi|k8s)\//.test(s) && !/\/(csi|k8s)\/errors\.ts$|\/csi\/kubelet-paths\.ts$/.test(s));
    assert.deepEqual(csi, [], 'CSI or Kubernetes code');
  });
});

for (const kind of ['file', 'raid1'] as const) {
  test(`an engine serving a ${kind === 'file' ? 'file' : 'raid1 array'} loads neither TLS, crypto, DNS, fs/promises nor koffi's index.js (its installer's https and zlib)`, async () => {
    const cli = await buildCli();
    await withPreload(async (preload, log, dir) => {
      const images = (kind === 'file' ? ['disk.img'] : ['a.img', 'b.img']).map((n) => join(dir, n));
      for (const image of images) await run('truncate', ['-s', '16M', image]);
      if (kind === 'raid1') await run(process.execPath, [cli, 'create', '--level', '1', '--name', 'mods', ...images]);
      const socket = join(dir, 'nbd.sock');
      const target = kind === 'file' ? ['--file', images[0]!] : images;
      const engine = spawn(process.execPath, ['-r', preload, cli, 'serve', ...target, '--socket', socket, '--quiet'], {
        env: { ...process.env, MODULE_LOG: log },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      engine.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => engine.once('exit', resolve));
      const deadline = Date.now() + 20_000;
      while (!existsSync(socket)) {
        if (engine.exitCode !== null) throw new Error(`llraid serve exited with ${engine.exitCode}: ${stderr}`);
        if (Date.now() > deadline) throw new Error(`llraid serve made no socket within 20 s: ${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      engine.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
      const builtins = (await lines(`${log}.builtins`)).filter((l) => l.startsWith('NativeModule ')).map((l) => l.slice('NativeModule '.length));
      assert.ok(builtins.includes('net'), `expected node:net among ${builtins.length} builtins`);
      const unneeded = builtins.filter((m) => /^(tls|_tls_wrap|crypto|dns|dns\/promises|https|http|zlib)$/.test(m));
      assert.deepEqual(unneeded, [], 'builtins an engine with local members never needs');
      // The bundle is CommonJS and required (scripts/build.mjs): Node's ES module loader never runs
      // a module, and nothing loads fs/promises, which loads readline's modules (an engine's file
      // calls are callback-fs.ts's); its performance.now() is process.hrtime()'s
      // (scripts/engine-clock.mjs), not perf_hooks'.
      const esm = builtins.filter((m) => /^(fs\/promises|internal\/fs\/promises|internal\/readline\/interface|internal\/modules\/esm\/module_job|perf_hooks)$/.test(m));
      assert.deepEqual(esm, [], 'the ES module loader, fs/promises and perf_hooks');
      const koffiIndex = (await lines(log)).filter((l) => /node_modules\/koffi\/index\.js$/.test(l));
      assert.deepEqual(koffiIndex, [], 'koffi through its index.js');
    });
  });
}
