// Member faults on raid1, raid10 and raid5, each made real: a member that returns EIO (a FUSE
// file from nbdfuse over nbdkit's error filter), one that runs out of space (a file on a small
// tmpfs), one whose file is deleted while in use, and one that stops answering (nbdfuse over
// nbdkit's pause filter). In every case the member is failed, the array serves every byte
// correctly while degraded, the member comes back (re-added: only what the bitmap marks is
// recovered; a deleted one is replaced: every written chunk), and a check finds 0 mismatches.

import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createArray, type MdArray } from '../../src/md/index.js';
import { defaultDeadline, setDefaultDeadline } from '../../src/block/deadline-io.js';
import { seededRandom } from '../../src/block/fault-device.js';
import { writeChunks } from './array-fixtures.js';
import { scaled } from '../support/long-mode.js';

const MiB = 1024 * 1024;
const MEMBER = 256 * MiB;
const CHUNK = 64 * 1024;
const LEVELS = [
  { level: 1 as const, members: 2 },
  { level: 10 as const, members: 4 },
  { level: 5 as const, members: 4 },
];
/** Rounds of write-fault-heal per case (long mode repeats the whole cycle). */
const ROUNDS = scaled(1, 5, 'LLRAID_FAULT_ROUNDS');
/**
 * A replaced member runs two rounds even in the short mode: the second starts by waiting for the
 * daemon to clean what the first wrote while degraded, which once waited forever on raid10 (the
 * daemon stopped while degraded and nothing woke it when the array was whole again).
 */
const roundsOf = (fault: { replaced: boolean }): number => Math.max(ROUNDS, fault.replaced ? 2 : 1);

interface FaultyMember {
  /** The path the array opens. */
  path: string;
  /** Makes the member fail (or hang). */
  fault(): Promise<void>;
  /** Undoes the fault so the member can come back. */
  heal(): Promise<void>;
  /** True when the member comes back as a new file (re-add impossible: add). */
  replaced: boolean;
  close(): Promise<void>;
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** nbdkit's error filter logs every error it injects: its stderr is not shown. */
function spawnQuiet(cmd: string, args: string[]): ChildProcess {
  return spawn(cmd, args, { stdio: ['ignore', 'ignore', 'ignore'] });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/**
 * A member file served by nbdfuse from nbdkit's `file` plugin with one filter: `error` (every
 * request fails with EIO while a trigger file exists) or `pause` (requests wait while paused).
 */
async function nbdkitMember(dir: string, filter: 'error' | 'pause'): Promise<FaultyMember> {
  const backing = join(dir, 'backing.img');
  writeFileSync(backing, '');
  truncateSync(backing, MEMBER);
  const sock = join(dir, 'nbdkit.sock');
  const trigger = join(dir, 'fail-now');
  const ctl = join(dir, 'pause.ctl');
  const mnt = join(dir, 'fuse');
  mkdirSync(mnt);
  const filterArgs = filter === 'error'
    ? ['--filter=error', 'file', `file=${backing}`, 'error=EIO', 'error-rate=100%', `error-file=${trigger}`]
    : ['--filter=pause', 'file', `file=${backing}`, `pause-control=${ctl}`];
  const nbdkit = spawnQuiet('nbdkit', ['--foreground', '--unix', sock, ...filterArgs]);
  await waitFor('nbdkit', () => existsSync(sock));
  const file = join(mnt, 'member');
  const fuse = spawnQuiet('nbdfuse', [file, '--unix', sock]);
  await waitFor('nbdfuse', () => existsSync(file));
  const pause = async (cmd: 'p' | 'r'): Promise<void> => {
    await new Promise<void>((resolve, reject) => {
      const s = connect(ctl);
      s.on('connect', () => s.write(cmd));
      s.on('data', () => s.end());
      s.on('close', () => resolve());
      s.on('error', reject);
    });
  };
  return {
    path: file,
    replaced: false,
    fault: () => (filter === 'error' ? Promise.resolve(writeFileSync(trigger, '')) : pause('p')),
    heal: () => (filter === 'error' ? Promise.resolve(rmSync(trigger, { force: true })) : pause('r')),
    async close() {
      rmSync(trigger, { force: true });
      if (filter === 'pause') await pause('r').catch(() => undefined);
      execFileSync('fusermount3', ['-u', mnt], { stdio: 'ignore' });
      await stopChild(fuse);
      await stopChild(nbdkit);
    },
  };
}

/** A member on its own small tmpfs: it fails with ENOSPC once the array writes past the room. */
function tinyTmpfsMember(dir: string): FaultyMember {
  const mnt = join(dir, 'tmpfs');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${2 * MEMBER}`, 'tmpfs', mnt]);
  const file = join(mnt, 'member');
  writeFileSync(file, '');
  truncateSync(file, MEMBER);
  return {
    path: file,
    replaced: false,
    // What the member holds stays; the filesystem cannot take another block.
    fault: async () => {
      const used = Number(execFileSync('du', ['-B1', '--summarize', file], { encoding: 'utf8' }).split('\t')[0]);
      execFileSync('mount', ['-o', `remount,size=${Math.max(used, 4096)}`, mnt]);
    },
    heal: async () => void execFileSync('mount', ['-o', `remount,size=${2 * MEMBER}`, mnt]),
    close: async () => void execFileSync('umount', ['-l', mnt]),
  };
}

/** A plain member file that is deleted while the array uses it; it comes back as a new file. */
function deletedMember(dir: string): FaultyMember {
  const file = join(dir, 'member');
  writeFileSync(file, '');
  truncateSync(file, MEMBER);
  return {
    path: file,
    replaced: true,
    fault: async () => rmSync(file),
    heal: async () => {
      writeFileSync(file, '');
      truncateSync(file, MEMBER);
    },
    close: async () => undefined,
  };
}

const FAULTS: { name: string; make: (dir: string) => Promise<FaultyMember> | FaultyMember }[] = [
  { name: 'EIO', make: (dir) => nbdkitMember(dir, 'error') },
  { name: 'ENOSPC', make: tinyTmpfsMember },
  { name: 'a deleted member file', make: deletedMember },
  { name: 'a member that stops answering', make: (dir) => nbdkitMember(dir, 'pause') },
];

async function checkAll(array: MdArray, truth: Map<number, Buffer>, when: string): Promise<void> {
  for (const [c, data] of truth) assert.ok((await array.read(c * CHUNK, CHUNK)).equals(data), `${when}: chunk ${c} reads back as written`);
}

/** `n` distinct chunk numbers below `limit`, the same for the same seed. */
function spread(n: number, seed: number, limit: number): number[] {
  assert.ok(n <= limit);
  const random = seededRandom(seed);
  const out = new Set<number>();
  while (out.size < n) out.add(Math.floor(random() * limit));
  return [...out];
}

const figures: string[] = [];
let savedDeadline: number;
before(() => {
  savedDeadline = defaultDeadline();
  // A member that stops answering is failed after 2 s here (30 s by default).
  setDefaultDeadline(2000);
});
after(() => {
  setDefaultDeadline(savedDeadline);
  process.stdout.write(`member faults:\n${figures.map((f) => `  ${f}`).join('\n')}\n`);
});

for (const { level, members } of LEVELS) {
  describe(`raid${level} over ${members} members`, () => {
    for (const fault of FAULTS) {
      test(`${fault.name}: the member is failed, the array serves every byte degraded, it comes back and checks clean`, async (t: TestContext) => {
        const dir = mkdtempSync(join(tmpdir(), 'llraid-fault-'));
        const faulty = await fault.make(mkdtempSync(join(dir, 'f-')));
        const locals = Array.from({ length: members - 1 }, (_, i) => {
          const p = join(dir, `m${i}.img`);
          writeFileSync(p, '');
          truncateSync(p, MEMBER);
          return p;
        });
        const paths = [...locals, faulty.path];
        const array = await createArray({ name: 'faults', level, members: paths, bitmapChunkSize: CHUNK, daemonSleep: 1, barrierIdle: 0 });
        t.after(async () => {
          await array.stop().catch(() => array.abandon());
          await faulty.close();
          rmSync(dir, { recursive: true, force: true });
        });
        const dataChunks = Math.floor(array.size / CHUNK);
        const truth = new Map<number, Buffer>();
        await writeChunks(array, spread(64, level, dataChunks), 1, truth);
        await array.waitSync();
        // The daemon cleans what was written: from here on the bitmap marks only what the
        // member misses while it is away.
        const clean = (): boolean => {
          const c = array.status().bitmap.counts;
          return c.dirty + c.needSync + c.syncing === 0;
        };
        for (let round = 0; round < roundsOf(faulty); round++) {
          await waitFor('the bitmap daemon to clean the written chunks', clean).catch((err: Error) => {
            throw new Error(`${err.message} (round ${round + 1}; bitmap ${JSON.stringify(array.status().bitmap.counts)}, state ${array.status().state}, members ${array.status().members.map((m) => `${m.name}:${m.state}`).join(' ')})`);
          });
          await faulty.fault();
          // Writes go on while the member fails under them; every one must succeed. Each round
          // writes 8 MiB of its own 40 MiB of the array, so the bitmap marks a small part of it for the
          // member, and a member that fails by running out of room meets blocks it has not
          // allocated in an earlier round.
          const window = (c: number): number => round * 640 + c;
          const away = spread(48, 100 * round + level + 7, 128).map(window);
          await writeChunks(array, away, 2 + round, truth);
          await waitFor('the member to be failed', () => array.status().members.some((m) => m.name === faulty.path && m.state === 'faulty'));
          assert.equal(array.status().state, 'degraded');
          await writeChunks(array, spread(16, 300 + round, 128).map(window), 50 + round, truth);
          await checkAll(array, truth, 'degraded');
          const marked = (() => {
            const c = array.status().bitmap.counts;
            return (c.needSync + c.dirty + c.syncing) * CHUNK;
          })();
          await faulty.heal();
          await array.remove(faulty.path);
          let recovered: number;
          if (faulty.replaced) {
            await array.add(faulty.path);
            const r = await array.waitSync();
            assert.equal(r?.complete, true);
            recovered = r?.bytesSynced ?? 0;
          } else {
            assert.equal(await array.reAdd(faulty.path), 'bitmap', 're-added with bitmap-guided recovery');
            const r = await array.waitSync();
            assert.equal(r?.complete, true);
            recovered = r?.bytesSynced ?? 0;
            // Both in sync-space bytes: array bytes for raid1/10, per-member bytes for raid5.
            assert.ok(recovered > 0 && recovered <= marked, `recovered ${recovered} bytes, the bitmap marked ${marked}`);
          }
          assert.equal(array.status().state, 'active');
          array.startSync('check');
          const check = await array.waitSync();
          assert.equal(check?.complete, true);
          assert.equal(check?.mismatches, 0, 'copies and parity agree after the member came back');
          await checkAll(array, truth, 'after recovery');
          figures.push(`raid${level}, ${fault.name}, round ${round + 1}: member failed, ${truth.size} chunks read back degraded, ` +
            `${faulty.replaced ? 'replaced' : 're-added'}: ${recovered} bytes recovered of ${marked} marked, check 0 mismatches`);
        }
      });
    }
  });
}
