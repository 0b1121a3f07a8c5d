// kill -9 torture of `llraid serve` over raid1, raid10 and raid5: two libnbd writers (nbdsh) journal
// every write they issue, see acknowledged, and see made durable (FUA, or a completed FLUSH); the
// server is SIGKILLed at a random moment and restarted over the same member files. A kill -9 ends
// the process, not the machine: whatever the engine wrote is in the files, so every acknowledged
// write, FUA or not, must survive. After every restart:
//   - the resync covered no more than the bitmap marked at assembly (0 bytes when nothing was
//     marked), the array ends in sync, and `llraid check` (over the control socket) counts 0
//     mismatched sectors;
//   - the written region, read through NBD, holds per block the last acknowledged write or one
//     issued after it (in flight at the kill), and never anything else;
//   - every copy of every block in the member files (mapped by md's own raid10/parity layout code)
//     holds exactly what NBD returned; mirrors are identical over their whole data area, and raid5
//     parity, recomputed here independently, matches the data of every written row.
// At the end the server stops cleanly, `llraid check` reassembles the members offline and counts 0
// mismatches, and the member files are checked again (raid5: every row's parity).
// NBD_TORTURE_LOOPS sets the kills per level: 8 (70 in long mode, test/support/long-mode.ts).

import { closeSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createArray, examineMember } from '../../src/md/index.js';
import { Raid10 } from '../../src/md/raid10.js';
import { ParityLayout } from '../../src/md/parity/layout.js';
import { roleOf } from '../../src/md/superblock.js';
import { controlRequest } from '../../src/engine/control/client.js';
import type { ArrayStatus } from '../../src/md/array-status.js';
import type { SyncSummary } from '../../src/md/sync-thread.js';
import { inconsistentRows } from '../md/raid5-fixture.js';
import { scaled } from '../support/long-mode.js';
import { CLI, startServe, tool } from './helpers.js';
import { tempDir } from '../support/temp-dir.js';

const LOOPS = scaled(8, 70, 'NBD_TORTURE_LOOPS');
const MEMBER_SIZE = 80 * 1024 * 1024;
const CHUNK = 64 * 1024;
const BLOCK = 4096;
/** Writers touch the first 16 MiB only, so overwrites and crashes mid-overwrite are common. */
const BLOCKS = 4096;
const WRITTEN = BLOCKS * BLOCK;

const WRITER = `
import random
def pattern(block, gen):
    return (("%d:%d;" % (block, gen)) * 1024).encode()[:${BLOCK}]
rnd = random.Random(SEED)
j = open(JOURNAL, "a", buffering=1)
gen = GEN0
try:
    h = nbd.NBD()
    h.connect_uri(URI)
    while True:
        gen += 1
        b = rnd.randrange(${BLOCKS} // 2) * 2 + PARITY
        n = min(rnd.choice([1, 1, 1, 2, 4, 8]), (${BLOCKS} - b + 1) // 2)
        blocks = [b + 2 * i for i in range(n)]
        fua = rnd.random() < 0.2
        j.write("W %s %d\\n" % (",".join(map(str, blocks)), gen))
        for blk in blocks:
            h.pwrite(pattern(blk, gen), blk * ${BLOCK}, nbd.CMD_FLAG_FUA if fua else 0)
        j.write("%s %s %d\\n" % ("D" if fua else "A", ",".join(map(str, blocks)), gen))
        if rnd.random() < 0.05:
            h.flush()
            j.write("F\\n")
except nbd.Error:
    pass
`;

/** Reads [0, length) of the export through libnbd into `path`, 1 MiB per request. */
const READER = `
out = open(PATH, "wb")
for off in range(0, LENGTH, 1 << 20):
    out.write(h.pread(min(1 << 20, LENGTH - off), off))
out.close()
`;

function pattern(block: number, gen: number): Buffer {
  return Buffer.from(`${block}:${gen};`.repeat(1024)).subarray(0, BLOCK);
}

/**
 * Per block: the generation of the last acknowledged write (0: never written, reads as zeroes)
 * and the generations issued after it, any of which may or may not have reached the members when
 * the server died. Generations only grow per block: each writer owns every other block, and each
 * cycle's writers start above the last cycle's.
 */
class JournalModel {
  readonly acked = new Map<number, number>();
  readonly since = new Map<number, number[]>();
  /** Journal lines: writes issued, acknowledged (with or without FUA), FUA writes, flushes. */
  readonly counts = { issued: 0, acknowledged: 0, fua: 0, flushes: 0 };

  constructor(lines: string[]) {
    for (const line of lines) {
      const [op, list, g] = line.split(' ');
      const blocks = list ? list.split(',').map(Number) : [];
      const gen = Number(g);
      if (op === 'W') {
        this.counts.issued++;
        for (const b of blocks) this.since.set(b, [...(this.since.get(b) ?? []), gen]);
      } else if (op === 'A' || op === 'D') {
        this.counts.acknowledged++;
        if (op === 'D') this.counts.fua++;
        for (const b of blocks) this.acknowledge(b, gen);
      } else if (op === 'F') {
        this.counts.flushes++;
      } else {
        throw new Error(`journal: unexpected line ${JSON.stringify(line)}`);
      }
    }
  }

  private acknowledge(block: number, gen: number): void {
    if ((this.acked.get(block) ?? 0) > gen) throw new Error(`journal: block ${block} acknowledged generation ${gen} after a later one`);
    this.acked.set(block, gen);
    this.since.set(block, (this.since.get(block) ?? []).filter((g) => g > gen));
  }

  /** Checks one block's contents; returns a complaint or undefined. */
  check(block: number, data: Buffer): string | undefined {
    const last = this.acked.get(block) ?? 0;
    const allowed = [last, ...(this.since.get(block) ?? [])];
    for (const g of allowed) {
      if (g === 0 ? data.every((x) => x === 0) : data.equals(pattern(block, g))) return undefined;
    }
    return `block ${block}: last acknowledged generation ${last}, allowed ${allowed.join(',')}, found ${JSON.stringify(data.subarray(0, 24).toString('latin1'))}`;
  }
}

interface Level {
  level: 1 | 10 | 5;
  members: number;
}

/** Where the array's bytes live in the member files, from their superblocks and md's layout code. */
class MemberMap {
  private constructor(
    readonly paths: string[],
    /** Member file index of each role. */
    readonly fileOfRole: number[],
    readonly dataOffset: number,
    /** Bytes of each member's data area the array uses. */
    readonly dataBytes: number,
    private readonly raid10: Raid10 | undefined,
    readonly parity: ParityLayout | undefined,
  ) {}

  static async read(level: Level, paths: string[]): Promise<MemberMap> {
    const sbs = await Promise.all(paths.map((p) => examineMember(p)));
    const sb = sbs[0]!;
    assert.equal(sb.level, level.level);
    const fileOfRole: number[] = [];
    sbs.forEach((s, i) => {
      const role = roleOf(s);
      assert.ok(role !== undefined, `member ${paths[i]} has no role`);
      fileOfRole[role] = i;
    });
    assert.equal(fileOfRole.length, sb.raidDisks);
    for (const s of sbs) assert.equal(s.dataOffset, sb.dataOffset, 'every member has its data at the same offset');
    const chunk = sb.chunkSize * 512;
    return new MemberMap(
      paths,
      fileOfRole,
      sb.dataOffset * 512,
      sb.size * 512,
      sb.level === 10 ? new Raid10(sb.raidDisks, sb.layout, chunk, sb.size * 512) : undefined,
      sb.level === 5 ? new ParityLayout({ level: 5, raidDisks: sb.raidDisks, chunkSize: chunk, algorithm: sb.layout }) : undefined,
    );
  }

  /** Every stored copy of array bytes [offset, offset + BLOCK): member file and file offset. */
  copies(offset: number): { file: number; at: number }[] {
    if (this.raid10 !== undefined) {
      const c = this.raid10.chunkSize;
      return this.raid10.copiesOf(Math.floor(offset / c), offset % c).map((x) => ({ file: this.fileOfRole[x.role]!, at: this.dataOffset + x.offset }));
    }
    if (this.parity !== undefined) {
      const l = this.parity.locate(offset);
      return [{ file: this.fileOfRole[l.member]!, at: this.dataOffset + l.memberOffset }];
    }
    return this.paths.map((_, file) => ({ file, at: this.dataOffset + offset }));
  }

  /** Member data areas by role, for the independent parity check. */
  roleAreas(fds: number[]): { read(off: number, len: number): Promise<Buffer> }[] {
    return this.fileOfRole.map((file) => ({ read: async (off: number, len: number) => pread(fds[file]!, this.dataOffset + off, len) }));
  }
}

function pread(fd: number, at: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, out, done, length - done, at + done);
    if (n === 0) throw new Error(`short read at ${at + done}: the member file ends before ${at + length}`);
    done += n;
  }
  return out;
}

/**
 * The member files against `image` (the written region as NBD returned it) and the model: every
 * copy of every block equals what NBD returned; then the level's redundancy, checked without the
 * engine: mirrors (pairs of roles) byte-identical over the data area, or raid5 parity matching
 * its rows (`rows`).
 * Returns how many block copies were compared.
 */
async function checkMembers(map: MemberMap, image: Buffer, mirrorPairs: number[][], rows: number[], where: string): Promise<number> {
  const fds = map.paths.map((p) => openSync(p, 'r'));
  try {
    let copies = 0;
    const wrong: string[] = [];
    for (let b = 0; b < BLOCKS; b++) {
      const expected = image.subarray(b * BLOCK, (b + 1) * BLOCK);
      for (const c of map.copies(b * BLOCK)) {
        copies++;
        if (!pread(fds[c.file]!, c.at, BLOCK).equals(expected)) wrong.push(`block ${b}: member ${c.file} at ${c.at} differs from what NBD read`);
      }
    }
    assert.deepEqual(wrong.slice(0, 20), [], `${where}: ${wrong.length} block copies in the member files differ from the array`);
    for (const [rx, ry] of mirrorPairs) {
      const x = map.fileOfRole[rx!]!;
      const y = map.fileOfRole[ry!]!;
      for (let off = 0; off < map.dataBytes; off += 4 << 20) {
        const n = Math.min(4 << 20, map.dataBytes - off);
        assert.ok(pread(fds[x]!, map.dataOffset + off, n).equals(pread(fds[y]!, map.dataOffset + off, n)), `${where}: roles ${rx} and ${ry} differ in data bytes [${off}, ${off + n})`);
      }
    }
    if (map.parity !== undefined) {
      assert.deepEqual(await inconsistentRows(map.roleAreas(fds), map.parity, rows), [], `${where}: raid5 rows whose parity does not match their data`);
    }
    return copies;
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/** Waits for the array's own sync pass (the resync after an unclean stop) to end; returns the status. */
async function settled(control: string, ms: number): Promise<ArrayStatus> {
  const end = Date.now() + ms;
  for (;;) {
    const { status } = await controlRequest(control, { op: 'status' });
    if (status !== undefined && status.sync === null && status.resyncPending === null) return status;
    if (Date.now() > end) throw new Error(`expected the array in sync within ${ms} ms, found ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface CheckResult {
  summary: SyncSummary | null;
  mismatchCount: number;
}

/** `llraid check` (over the control socket, or assembling the members itself), as JSON. */
async function llraidCheck(target: string[]): Promise<CheckResult> {
  const out = await tool(process.execPath, [CLI, 'check', ...target, '--json']);
  return JSON.parse(out) as CheckResult;
}

async function torture(t: TestContext, level: Level, mirrorPairs: number[][]): Promise<void> {
  const started = Date.now();
  const label = `raid${level.level} (${level.members} members)`;
  const dir = tempDir(t, `nbd-kill9-raid${level.level}`, '/dev/shm');
  const members = Array.from({ length: level.members }, (_, i) => join(dir, `m${i}.img`));
  for (const m of members) await tool('truncate', ['-s', String(MEMBER_SIZE), m]);
  const created = await createArray({ name: `torture${level.level}`, level: level.level, members, chunkSize: CHUNK });
  const arraySize = created.size;
  await created.stop();
  const map = await MemberMap.read(level, members);
  const rowsWritten = map.parity === undefined ? [] : Array.from({ length: Math.ceil(WRITTEN / map.parity.rowBytes) }, (_, r) => r);
  const sock = join(dir, 'nbd.sock');
  const control = join(dir, 'control.sock');
  const journals = [0, 1].map((p) => join(dir, `journal-${p}.txt`));
  for (const j of journals) writeFileSync(j, '');
  const totals = { synced: 0, marked: 0, cyclesMarked: 0, blocksChecked: 0, copiesChecked: 0, checkedBytes: 0 };
  const perLoop: string[] = [];
  let image = Buffer.alloc(0);
  let model = new JournalModel([]);

  for (let loop = 0; loop <= LOOPS; loop++) {
    const where = `${label} loop ${loop}`;
    const serve = await startServe([...members, '--socket', sock, '--control', control, '--quiet']);
    try {
      const a = await serve.waitForEvent('assembled');
      assert.equal(a.bitmap.kind, 'llbitmap');
      const markedBytes = a.bitmap.markedChunks * a.bitmap.chunkSize;
      // Loop 0 serves the array createArray stopped cleanly; every later one follows a kill.
      assert.equal(a.unclean, loop !== 0, `${where}: assembly found the array ${a.unclean ? 'unclean' : 'clean'}`);
      const status = await settled(control, 120_000);
      const synced = status.bytesSyncedTotal;
      assert.ok(synced <= markedBytes, `${where}: resync covered ${synced} bytes, more than the ${markedBytes} bitmap-marked`);
      // Writers only touch the first 16 MiB: a full resync would cover the whole array.
      assert.ok(synced < arraySize, `${where}: resync covered ${synced} bytes, the whole array is ${arraySize}`);
      assert.equal(status.working, level.members, `${where}: every member in sync`);
      if (status.lastSync !== null) assert.ok(status.lastSync.complete, `${where}: resync did not complete: ${JSON.stringify(status.lastSync)}`);
      if (loop > 0) perLoop.push(`${(synced / 1048576).toFixed(2)}/${(markedBytes / 1048576).toFixed(2)}`);
      totals.synced += synced;
      totals.marked += markedBytes;
      if (markedBytes > 0) totals.cyclesMarked++;

      // md's check pass over every written chunk: copies (or data and parity) agree.
      const check = await llraidCheck(['--control', control]);
      assert.equal(check.mismatchCount, 0, `${where}: llraid check found mismatched sectors: ${JSON.stringify(check)}`);
      if (loop > 0) {
        assert.ok(check.summary !== null && check.summary.complete, `${where}: llraid check did not run to the end: ${JSON.stringify(check)}`);
        assert.ok(check.summary.bytesSynced > 0, `${where}: llraid check read nothing, yet the writers wrote: ${JSON.stringify(check)}`);
        totals.checkedBytes += check.summary.bytesSynced;
      }

      // Every acknowledged write reads back through NBD.
      const imagePath = join(dir, 'image.raw');
      await tool('nbdsh', ['-u', serve.uri, '-c', `PATH = ${JSON.stringify(imagePath)}\nLENGTH = ${WRITTEN}\n${READER}`]);
      image = readFileSync(imagePath);
      assert.equal(image.length, WRITTEN);
      model = new JournalModel(journals.flatMap((j) => readFileSync(j, 'utf8').split('\n')).filter((l) => l !== ''));
      const lost: string[] = [];
      for (let b = 0; b < BLOCKS; b++) {
        const complaint = model.check(b, image.subarray(b * BLOCK, (b + 1) * BLOCK));
        if (complaint !== undefined) lost.push(complaint);
      }
      totals.blocksChecked += BLOCKS;
      assert.deepEqual(lost.slice(0, 20), [], `${where}: ${lost.length} blocks lost an acknowledged write`);
      if (loop > 0) assert.ok(model.acked.size > 0, `${where}: no write was ever acknowledged`);

      // The same data in the member files, in every copy; redundancy checked without the engine.
      totals.copiesChecked += await checkMembers(map, image, mirrorPairs, rowsWritten, where);

      if (loop === LOOPS) {
        assert.equal(await serve.stop('SIGTERM'), 0, `${where}: llraid serve did not stop cleanly: ${serve.stderr()}`);
        break;
      }

      const before = journals.map((j) => statSync(j).size);
      const writers = [0, 1].map((parity) => {
        const script = join(dir, `writer-${parity}.py`);
        writeFileSync(
          script,
          `URI = ${JSON.stringify(serve.uri)}\nJOURNAL = ${JSON.stringify(journals[parity])}\nSEED = ${loop * 2 + parity}\n` +
            `GEN0 = ${(loop + 1) * 1_000_000}\nPARITY = ${parity}\n${WRITER}`,
        );
        return tool('nbdsh', ['-c', `exec(open(${JSON.stringify(script)}).read())`], { timeoutMs: 60_000 });
      });
      // Kill at a random moment once both writers are under way.
      for (let i = 0; i < 400 && journals.some((j, k) => statSync(j).size === before[k]); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(journals.every((j, k) => statSync(j).size > before[k]!), `${where}: the writers did not start within 20 s`);
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 1000));
      await serve.stop('SIGKILL');
      await Promise.all(writers);
    } finally {
      await serve.stop('SIGKILL');
    }
  }

  // The final reassembly: offline, by `llraid check` itself, after the clean stop above.
  const final = await llraidCheck(members);
  assert.equal(final.mismatchCount, 0, `${label}: llraid check of the stopped members found mismatched sectors: ${JSON.stringify(final)}`);
  assert.ok(final.summary !== null && final.summary.complete && final.summary.bytesSynced > 0, `${label}: offline llraid check did not check the written chunks: ${JSON.stringify(final)}`);
  const allRows = map.parity === undefined ? [] : Array.from({ length: arraySize / map.parity.rowBytes }, (_, r) => r);
  totals.copiesChecked += await checkMembers(map, image, mirrorPairs, allRows, `${label} after the final clean stop`);

  assert.ok(totals.cyclesMarked > 0, `${label}: no restart found bitmap-marked chunks to resync (${totals.cyclesMarked} of ${LOOPS + 1})`);
  assert.ok(model.counts.fua > 0 && model.counts.flushes > 0, `${label}: the writers made no durability point: ${JSON.stringify(model.counts)}`);
  console.log(
    `kill -9 torture ${label}: ${LOOPS} kill/restart cycles, ${model.counts.issued} writes issued, ${model.counts.acknowledged} acknowledged, ` +
      `${model.counts.fua + model.counts.flushes} durability points (${model.counts.fua} FUA writes, ${model.counts.flushes} flushes); ` +
      `0 lost acknowledged writes (${totals.blocksChecked} blocks read through NBD, ${totals.copiesChecked} block copies in member files); ` +
      `0 mismatches (llraid check after each restart, ${(totals.checkedBytes / 1048576).toFixed(0)} MiB, and offline at the end); ` +
      `resync covered ${totals.synced} of ${totals.marked} marked bytes, ${totals.cyclesMarked} restarts with marked chunks ` +
      `(MiB synced/marked per restart: ${perLoop.join(' ')}; array ${arraySize / 1048576} MiB); ${((Date.now() - started) / 1000).toFixed(0)} s`,
  );
}

describe('llraid serve survives kill -9', () => {
  test('raid1: resync covers only marked chunks, mirrors agree, acknowledged writes survive in every copy', async (t) => {
    await torture(t, { level: 1, members: 2 }, [[0, 1]]);
  });

  test('raid10 (4 members, near 2): resync covers only marked chunks, mirrors agree, acknowledged writes survive in every copy', async (t) => {
    await torture(t, { level: 10, members: 4 }, [[0, 1], [2, 3]]);
  });

  test('raid5 (4 members): resync covers only marked chunks, parity matches, acknowledged writes survive on the members', async (t) => {
    await torture(t, { level: 5, members: 4 }, []);
  });
});
