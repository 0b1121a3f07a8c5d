// bench:csi — how long the CSI node plugin takes for a 10 GiB raid1 volume: CreateVolume,
// NodeStage (assemble + attach + mkfs + mount), NodeUnstage, NodeStage after a clean stop, and
// NodeStage after a crash with ~1% of the chunks dirty (until its bitmap-guided resync ends).
// Real plugin, engines, nbdfuse, loop and ext4; ratios are against the clean NodeStage.

import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { findProcesses } from '../src/engine/processes.js';
import { mountCap, startPlugin } from '../test/csi/plugin-harness.js';

const GiB = 1024 ** 3;
const size = Number(process.env.BENCH_CSI_GIB ?? 10) * GiB;

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = process.hrtime.bigint();
  const r = await fn();
  return [r, Number(process.hrtime.bigint() - t) / 1e6];
}

async function engineLog(runDir: string, id: string): Promise<string> {
  const log = await fs.readFile(path.join(runDir, id, 'engine.log'), 'utf8');
  return log.slice(log.lastIndexOf('assembled '));
}

const plugin = await startPlugin({ disks: 2 });
const rows: Array<[string, number, string]> = [];
try {
  const [created, tCreate] = await timed(() =>
    plugin.controller.CreateVolume({ name: 'bench', capacity_range: { required_bytes: size }, volume_capabilities: [mountCap()], parameters: { level: '1' } }),
  );
  const id = (created.volume as { volume_id: string }).volume_id;
  const staging = path.join(plugin.dir, 'staging');
  const stage = () => plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: mountCap() });
  const unstage = () => plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });

  const [, tFirst] = await timed(stage);
  const [, tUnstage] = await timed(unstage);
  const [, tClean] = await timed(stage);
  const cleanLog = await engineLog(plugin.runDir, id);

  // Dirty ~1% of the volume, then crash engine and plugin before the bitmap cleans the chunks.
  const dirtyMiB = Math.round(size / 100 / 1024 / 1024);
  spawnSync('dd', ['if=/dev/urandom', `of=${path.join(staging, 'dirty')}`, 'bs=1M', `count=${dirtyMiB}`, 'oflag=direct'], { stdio: 'ignore' });
  const engine = (await findProcesses(path.join(plugin.runDir, id, 'engine.sock'))).find((p) => p.argv.includes('serve'));
  if (!engine) throw new Error('engine not found');
  process.kill(engine.pid, 'SIGKILL');
  await plugin.kill();
  const [, tRestart] = await timed(() => plugin.start());
  const [, tCrash] = await timed(async () => {
    await stage();
    while (!/resync (complete|stopped)/.test(await engineLog(plugin.runDir, id))) await new Promise((r) => setTimeout(r, 50));
  });
  const crashLog = await engineLog(plugin.runDir, id);
  const m = /resync \w+: (\d+) bytes synced, (\d+) skipped/.exec(crashLog);
  const synced = Number(m?.[1] ?? 0);
  const total = synced + Number(m?.[2] ?? 0);
  await unstage();
  const [, tDelete] = await timed(() => plugin.controller.DeleteVolume({ volume_id: id }));

  const ratio = (ms: number): string => `${(ms / tClean).toFixed(2)}×`;
  rows.push(
    [`CreateVolume (${size / GiB} GiB raid1, 2 members preallocated)`, tCreate, ratio(tCreate)],
    ['NodeStage, first (assemble + attach + mkfs.ext4 + mount)', tFirst, ratio(tFirst)],
    ['NodeUnstage (unmount + detach + clean stop)', tUnstage, ratio(tUnstage)],
    ['NodeStage after a clean stop (baseline)', tClean, '1.00×'],
    ['plugin restart after kill -9', tRestart, ratio(tRestart)],
    [`NodeStage after a crash, ~1% dirty (${dirtyMiB} MiB written), resync included`, tCrash, ratio(tCrash)],
    ['DeleteVolume', tDelete, ratio(tDelete)],
  );
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`${'operation'.padEnd(w)}  ${'ms'.padStart(9)}  vs clean stage`);
  for (const [name, ms, r] of rows) console.log(`${name.padEnd(w)}  ${ms.toFixed(0).padStart(9)}  ${r.padStart(8)}`);
  console.log(`\nclean restage: ${cleanLog.split('\n')[0]}`);
  console.log(`after the crash: ${crashLog.split('\n')[0]}`);
  console.log(`resync after the crash: ${synced} of ${total} bytes (${((100 * synced) / Math.max(1, total)).toFixed(2)}% of the array)`);
} finally {
  await plugin.close();
}
