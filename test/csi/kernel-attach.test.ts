// Kernel attach mode, for real: boots ../shared/tools/kernel-vm (a kernel with the nbd
// driver, this checkout shared read-only) and runs kernel-guest.ts there: a volume staged through
// nbd-client on /dev/nbdX, files written, grown online while published (ControllerExpandVolume
// through the engine, NodeExpandVolume: NBD_SET_SIZE and resize2fs), unstaged, staged again and
// read back; and a raw block volume published as its device node. Engines run in an engine host,
// as the chart runs them, and carry PR_SET_IO_FLUSHER on every thread. Slow (emulated). No other suite
// runs it, so without kernel-vm it fails (set KERNEL_VM), as scripts/test.d/40-nbd-kernel.sh does.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

// Beside the checkout, as CI has it, or beside the one this was cloned from (KERNEL_VM overrides):
// scripts/kernel-vm-path.sh, as in scripts/test.d.
const vm = execFileSync('bash', ['scripts/kernel-vm-path.sh'], { encoding: 'utf8' }).trim();

test('kernel attach: stage, write, unstage, stage again, read back through /dev/nbdX', { timeout: 30 * 60_000 }, () => {
  assert.ok(existsSync(vm), `${vm} is not on this machine: set KERNEL_VM to the kernel-vm tool`);
  // The guest writes its result into a host directory it shares read-write (outside /tmp, which
  // the guest replaces with its own).
  const shared = mkdtempSync('/var/tmp/llraid-kernel-attach-');
  const resultFile = path.join(shared, 'result.json');
  let result: Record<string, unknown>;
  try {
    const r = spawnSync(vm, ['--mem', '2048', '--cpus', '2', '--timeout', '1500', '--rw', shared, '--', 'sh', '-c',
      `modprobe nbd nbds_max=8 && cd ${process.cwd()} && node --import tsx test/csi/kernel-guest.ts ${resultFile}`], { encoding: 'utf8' });
    assert.ok(existsSync(resultFile), `the guest wrote no result (exit ${r.status}): ${r.stdout.slice(-2000)} ${r.stderr.slice(-2000)}`);
    result = JSON.parse(readFileSync(resultFile, 'utf8')) as Record<string, unknown>;
  } finally {
    rmSync(shared, { recursive: true, force: true });
  }
  process.stdout.write(`kernel-vm: ${JSON.stringify(result)}\n`);
  assert.equal(result.error, undefined, `guest failed: ${String(result.error)} ${JSON.stringify(result.log ?? [])}`);
  assert.match(String(result.device), /^\/dev\/nbd\d+$/);
  assert.match(String(result.restagedDevice), /^\/dev\/nbd\d+$/);
  assert.equal(result.detached, true, 'unstage disconnects the nbd device');
  assert.equal(result.expansion, 'ONLINE', 'kernel attach grows volumes in use');
  const g = result.onlineGrowth as { array: number; device: number; fsBefore: number; fsAfter: number };
  assert.ok(g.array >= 160 * 1024 * 1024 && g.device === g.array, `the array and /dev/nbdX grew live: ${JSON.stringify(g)}`);
  assert.ok(g.fsAfter > 2 * g.fsBefore, `the mounted ext4 grew: ${JSON.stringify(g)}`);
  assert.equal(result.filesIntact, '4/4');
  assert.equal(result.blockReadBack, true);
  // The guest runs as root with every capability: the engine host sets PR_SET_IO_FLUSHER and
  // every thread of what it starts has it (PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE in /proc stat).
  const flusher = result.ioFlusher as { engine: { flagged: number; threads: number }; nbdClient: { flagged: number; threads: number } | null };
  assert.ok(flusher.engine.threads > 1 && flusher.engine.flagged === flusher.engine.threads, `engine threads with the flag: ${JSON.stringify(flusher.engine)}`);
  assert.ok(flusher.nbdClient !== null && flusher.nbdClient.flagged === flusher.nbdClient.threads, `nbd-client: ${JSON.stringify(flusher.nbdClient)}`);
  assert.equal(result.ok, true);
});
