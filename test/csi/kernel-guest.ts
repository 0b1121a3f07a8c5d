// Runs inside /work/shared/tools/kernel-vm (a kernel with the nbd driver): the kernel attach
// scenario of issue 5 on the real plugin, with its engines in an engine host as the chart runs
// them — stage a volume through /dev/nbdX, write files, unstage, stage again, read them back —
// and whether the engine and its nbd-client carry PR_SET_IO_FLUSHER on every thread. Prints one `RESULT {json}` line (and writes the JSON to argv[2] if given); kernel-attach.test.ts
// boots the guest and checks it. Not a test file itself: the host has no nbd driver.

import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import { mountAt } from '../../src/csi/mounts.js';
import { hostRequest } from '../../src/csi/engine-host-client.js';
import { findProcesses } from '../../src/engine/processes.js';
import { ioFlusherThreads } from '../../src/engine/io-flusher.js';
import { blockCap, cliPath, mountCap, startPlugin } from './plugin-harness.js';

const MiB = 1024 * 1024;
const hostDir = mkdtempSync(path.join(os.tmpdir(), 'llraid-guest-host-'));
const runDir = path.join(hostDir, 'run');
const hostSocket = path.join(runDir, 'engine-host.sock');
const host = spawn(process.execPath, [cliPath, 'engine-host', '--run-dir', runDir, '--attach', 'kernel'], { stdio: ['ignore', 'inherit', 'inherit'] });
// Generous bounds: under the emulated kernel-vm, with the host busy, node has taken over two
// minutes to load the plugin over 9p (a CI run failed with a plugin that had not yet logged a line).
const LISTEN_MS = 600_000;
for (const deadline = Date.now() + LISTEN_MS; !existsSync(hostSocket) && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 50));
const plugin = await startPlugin({ attach: 'kernel', engineHost: hostSocket, runDir, listenTimeoutMs: LISTEN_MS });
const result: Record<string, unknown> = {};
try {
  const created = await plugin.controller.CreateVolume({
    name: 'kernel-1',
    capacity_range: { required_bytes: 64 * MiB },
    volume_capabilities: [mountCap()],
    parameters: { level: '1', members: '2' },
  });
  const id = (created.volume as { volume_id: string }).volume_id;
  const staging = path.join(plugin.kubeletDir, 'staging');
  const target = path.join(plugin.kubeletDir, 'target');
  const up = async () => {
    await plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: mountCap() });
    await plugin.node.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: mountCap() });
  };
  const down = async () => {
    await plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: target });
    await plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  };
  await up();
  result.device = (await mountAt(staging))?.source;
  // Every thread of the engine and of its nbd-client inherited the flag from the engine host.
  const engine = (await hostRequest(hostSocket, { op: 'engine.find', volumeId: id })) as { pid: number };
  const client = (await findProcesses(path.join(runDir, id, 'engine.sock'))).find((p) => p.argv.some((a) => a.endsWith('nbd-client')));
  result.ioFlusher = { engine: ioFlusherThreads(engine.pid), nbdClient: client ? ioFlusherThreads(client.pid) : null };
  const sums: Record<string, string> = {};
  for (let i = 0; i < 4; i++) {
    const data = randomBytes(MiB + i * 4096);
    await fs.writeFile(path.join(target, `f${i}`), data);
    sums[`f${i}`] = createHash('sha256').update(data).digest('hex');
  }

  // Online expansion while published: the engine grows the array, NBD_SET_SIZE grows /dev/nbdX,
  // resize2fs grows the mounted ext4.
  const caps = (await plugin.identity.GetPluginCapabilities({})) as { capabilities: { volume_expansion?: { type: string } }[] };
  result.expansion = caps.capabilities.find((c) => c.volume_expansion)?.volume_expansion?.type;
  const fsBefore = (await fs.statfs(target)).blocks * (await fs.statfs(target)).bsize;
  const grown = (await plugin.controller.ControllerExpandVolume({ volume_id: id, capacity_range: { required_bytes: 160 * MiB }, volume_capability: mountCap() })) as { capacity_bytes: string };
  const expanded = (await plugin.node.NodeExpandVolume({ volume_id: id, volume_path: target, staging_target_path: staging, capacity_range: { required_bytes: 160 * MiB }, volume_capability: mountCap() })) as { capacity_bytes: string };
  const st = await fs.statfs(target);
  result.onlineGrowth = { array: Number(grown.capacity_bytes), device: Number(expanded.capacity_bytes), fsBefore, fsAfter: st.blocks * st.bsize };
  await fs.writeFile(path.join(target, 'after-growth'), randomBytes(96 * MiB));
  await down();
  result.detached = (await fs.readFile(`/sys/block/${String(result.device).slice(5)}/size`, 'utf8')).trim() === '0';
  await up();
  result.restagedDevice = (await mountAt(staging))?.source;
  let intact = 0;
  for (const [name, sum] of Object.entries(sums)) {
    if (createHash('sha256').update(await fs.readFile(path.join(target, name))).digest('hex') === sum) intact++;
  }
  result.filesIntact = `${intact}/${Object.keys(sums).length}`;
  await down();

  // Raw block through the kernel client: the device node itself is published at a file.
  const blockVol = await plugin.controller.CreateVolume({ name: 'kernel-block', capacity_range: { required_bytes: 16 * MiB }, volume_capabilities: [blockCap()] });
  const bid = (blockVol.volume as { volume_id: string }).volume_id;
  const btarget = path.join(plugin.kubeletDir, 'block-target');
  await plugin.node.NodeStageVolume({ volume_id: bid, staging_target_path: staging, volume_capability: blockCap() });
  await plugin.node.NodePublishVolume({ volume_id: bid, staging_target_path: staging, target_path: btarget, volume_capability: blockCap() });
  const pattern = randomBytes(65536);
  const h = await fs.open(btarget, 'r+');
  await h.write(pattern, 0, pattern.length, 5 * MiB);
  await h.sync();
  const back = Buffer.alloc(pattern.length);
  await h.read(back, 0, back.length, 5 * MiB);
  await h.close();
  result.blockReadBack = back.equals(pattern);
  await plugin.node.NodeUnpublishVolume({ volume_id: bid, target_path: btarget });
  await plugin.node.NodeUnstageVolume({ volume_id: bid, staging_target_path: staging });
  await plugin.controller.DeleteVolume({ volume_id: bid });
  await plugin.controller.DeleteVolume({ volume_id: id });
  result.ok = true;
} catch (err) {
  result.error = (err as Error).message;
  result.log = (await fs.readFile(plugin.logFile, 'utf8')).split('\n').slice(-15);
} finally {
  await plugin.close();
  host.kill('SIGTERM');
  await new Promise((r) => host.once('exit', r));
}
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
// Also into the host directory shared read-write, when given: kernel-vm prints the guest console
// only from a firmware line that does not always make it through, while a file always does.
if (process.argv[2] !== undefined) await fs.writeFile(process.argv[2], JSON.stringify(result));
