// kill -9 torture of `llraid serve` over raid1 and raid10: two libnbd writers (nbdsh) journal every
// write they issue, see acknowledged, see made durable (FUA, or a completed FLUSH); the server is
// SIGKILLed at a random moment and restarted. After each restart: the resync covered no more than
// the chunks the bitmap had marked, the mirrors are identical, and every durable write reads back.

import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createArray } from '../../src/md/index.js';
import { startServe, tempDir, tool, type ServeProcess } from './helpers.js';

const LOOPS = Number(process.env.NBD_TORTURE_LOOPS ?? 8);
const MEMBER_SIZE = 80 * 1024 * 1024;
const BLOCK = 4096;
/** Writers touch the first 16 MiB only, so overwrites and crashes mid-overwrite are common. */
const BLOCKS = 4096;
/** md 1.2 with llraid's layout: member data starts at sector 2048. */
const DATA_OFFSET = 1024 * 1024;

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

function pattern(block: number, gen: number): Buffer {
  return Buffer.from(`${block}:${gen};`.repeat(1024)).subarray(0, BLOCK);
}

/**
 * Per block: the last durable generation (0: never written, reads as zeroes) and the generations
 * issued after it, any of which may or may not have reached the disk when the server died.
 */
class JournalModel {
  readonly durable = new Map<number, number>();
  readonly since = new Map<number, number[]>();

  constructor(lines: string[]) {
    const acked = new Map<number, number>();
    for (const line of lines) {
      const [op, list, g] = line.split(' ');
      const blocks = list ? list.split(',').map(Number) : [];
      const gen = Number(g);
      if (op === 'W') for (const b of blocks) this.since.set(b, [...(this.since.get(b) ?? []), gen]);
      else if (op === 'A') for (const b of blocks) acked.set(b, gen);
      else if (op === 'D') for (const b of blocks) this.makeDurable(b, gen);
      else if (op === 'F') {
        for (const [b, g2] of acked) this.makeDurable(b, g2);
        acked.clear();
      }
    }
  }

  private makeDurable(block: number, gen: number): void {
    if ((this.durable.get(block) ?? 0) > gen) return;
    this.durable.set(block, gen);
    this.since.set(block, (this.since.get(block) ?? []).filter((g) => g > gen));
  }

  /** Checks one block's contents; returns a complaint or undefined. */
  check(block: number, data: Buffer): string | undefined {
    const d = this.durable.get(block) ?? 0;
    const allowed = [d, ...(this.since.get(block) ?? [])];
    for (const g of allowed) {
      if (g === 0 ? data.every((x) => x === 0) : data.equals(pattern(block, g))) return undefined;
    }
    return `block ${block}: durable generation ${d}, allowed ${allowed.join(',')}, found ${JSON.stringify(data.subarray(0, 24).toString('latin1'))}`;
  }
}

async function waitFor(serve: ServeProcess, re: RegExp, ms: number): Promise<RegExpExecArray> {
  const end = Date.now() + ms;
  for (;;) {
    const m = re.exec(serve.stdout());
    if (m) return m;
    if (Date.now() > end) throw new Error(`expected ${re} in llraid serve output within ${ms} ms, found:\n${serve.stdout()}\n${serve.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function torture(level: 1 | 10, memberCount: number, mirrorPairs: number[][]): Promise<void> {
  const dir = tempDir(`nbd-kill9-raid${level}`, '/dev/shm');
  try {
    const members = Array.from({ length: memberCount }, (_, i) => join(dir.path, `m${i}.img`));
    for (const m of members) await tool('truncate', ['-s', String(MEMBER_SIZE), m]);
    const created = await createArray({ name: `torture${level}`, level, members, chunkSize: 64 * 1024 });
    const arraySize = created.size;
    await created.stop();
    const sock = join(dir.path, 'nbd.sock');
    const journals = [0, 1].map((p) => join(dir.path, `journal-${p}.txt`));
    for (const j of journals) writeFileSync(j, '');
    let totalSynced = 0;
    let totalMarked = 0;
    const perLoop: string[] = [];

    for (let loop = 0; loop <= LOOPS; loop++) {
      const serve = await startServe([...members, '--socket', sock, '--quiet']);
      const a = await waitFor(serve, /bitmap llbitmap: (\d+) marked chunks of (\d+) bytes/, 20_000);
      const markedBytes = Number(a[1]) * Number(a[2]);
      if (loop > 0) assert.match(serve.stdout(), /, unclean;/, 'a killed server leaves the array unclean');
      if (markedBytes > 0) {
        const s = await waitFor(serve, /resync complete: (\d+) bytes synced/, 60_000);
        const synced = Number(s[1]);
        assert.ok(synced <= markedBytes, `loop ${loop}: resync covered ${synced} bytes, more than the ${markedBytes} bitmap-marked`);
        // Writers only touch the first 16 MiB: a full resync would cover the whole array.
        assert.ok(synced < arraySize, `loop ${loop}: resync covered ${synced} bytes, the whole array is ${arraySize}`);
        perLoop.push(`${synced / 1048576}/${markedBytes / 1048576}`);
        totalSynced += synced;
        totalMarked += markedBytes;
      }

      // Mirrors identical, byte for byte, over the data area.
      const data = members.map((m) => readFileSync(m).subarray(DATA_OFFSET, DATA_OFFSET + (level === 1 ? arraySize : MEMBER_SIZE - 2 * DATA_OFFSET)));
      for (const [x, y] of mirrorPairs) assert.ok(data[x!]!.equals(data[y!]!), `loop ${loop}: members ${x} and ${y} differ after resync`);

      // Every durable write reads back through the array.
      const image = join(dir.path, 'image.raw');
      await tool('nbdcopy', [serve.uri, image]);
      const content = readFileSync(image);
      for (const [parity, j] of journals.entries()) {
        const model = new JournalModel(readFileSync(j, 'utf8').split('\n').filter((l) => l !== ''));
        for (let b = parity; b < BLOCKS; b += 2) {
          const complaint = model.check(b, content.subarray(b * BLOCK, (b + 1) * BLOCK));
          assert.equal(complaint, undefined, `loop ${loop}: ${complaint}`);
        }
      }
      if (loop === LOOPS) {
        assert.equal(await serve.stop('SIGTERM'), 0);
        break;
      }

      const before = journals.map((j) => statSync(j).size);
      const writers = [0, 1].map((parity) => {
        const script = join(dir.path, `writer-${parity}.py`);
        writeFileSync(script, `URI = ${JSON.stringify(serve.uri)}\nJOURNAL = ${JSON.stringify(journals[parity])}\nSEED = ${loop * 2 + parity}\nGEN0 = ${(loop + 1) * 1_000_000}\nPARITY = ${parity}\n${WRITER}`);
        return tool('nbdsh', ['-c', `exec(open(${JSON.stringify(script)}).read())`], { timeoutMs: 60_000 });
      });
      // Kill at a random moment once both writers are under way.
      for (let i = 0; i < 400 && journals.some((j, k) => statSync(j).size === before[k]); i++) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 1000));
      await serve.stop('SIGKILL');
      await Promise.all(writers);
    }
    const lines = journals.flatMap((j) => readFileSync(j, 'utf8').split('\n')).filter((l) => l !== '');
    console.log(
      `kill -9 torture raid${level}: ${LOOPS} kills, ${lines.filter((l) => l.startsWith('W')).length} writes issued, ` +
        `${lines.filter((l) => l.startsWith('D') || l === 'F').length} durability points; resync covered ${totalSynced} of ${totalMarked} marked bytes ` +
        `(MiB synced/marked per restart: ${perLoop.join(' ')}; array ${arraySize / 1048576} MiB)`,
    );
  } finally {
    dir.cleanup();
  }
}

describe('llraid serve survives kill -9', () => {

  test('raid1: resync covers only marked chunks, mirrors agree, durable writes survive', async () => {
    await torture(1, 2, [[0, 1]]);
  });

  test('raid10 (4 members, near 2): resync covers only marked chunks, mirrors agree, durable writes survive', async () => {
    await torture(10, 4, [[0, 1], [2, 3]]);
  });
});
