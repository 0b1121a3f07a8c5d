// An application for the take-over scenarios: writes numbered 4 KiB records over a region of a
// block device, one at a time with O_DSYNC (a write returns once the volume acknowledged it
// durably), and appends "seq block ms" to a log on this machine after each return. The log is
// what the application was told: verifyAcked() then reads the device (on whichever node serves
// it now) and checks that every block holds its last acknowledged record or a later one that was
// in flight, never an older one — no acknowledged write lost — and no torn or foreign data.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodeNetwork } from './cluster-net.js';

export const RECORD = 4096;
const MAGIC = 'LLR19ACK';

/**
 * The record of `seq` for block `block`: magic, seq, block, then bytes derived from both. One
 * source for the writer (run as a script in the node's namespace) and the checks here.
 */
const RECORD_SOURCE = `(createHash) => function record(seq, block) {
  const b = Buffer.alloc(${RECORD});
  b.write('${MAGIC}', 0, 'latin1');
  b.writeBigUInt64LE(BigInt(seq), 8);
  b.writeUInt32LE(block, 16);
  let fill = createHash('sha256').update(seq + ':' + block).digest();
  for (let off = 32; off < ${RECORD}; off += fill.length) {
    fill.copy(b, off);
    fill = createHash('sha256').update(fill).digest();
  }
  return b;
}`;
// The writer script runs the same source (WRITER below), so both sides build identical records.
export const record = (new Function(`return ${RECORD_SOURCE}`)() as (h: typeof createHash) => (seq: number, block: number) => Buffer)(createHash);

/** The writer, run with `node -e` in the node's namespace (it dies with the node). */
const WRITER = `
const fs = require('node:fs');
const { createHash } = require('node:crypto');
const [device, log, blocksText, limitText] = process.argv.slice(1);
const blocks = Number(blocksText), limit = Number(limitText);
const record = (${RECORD_SOURCE})(createHash);
const RECORD = ${RECORD};
const fd = fs.openSync(device, fs.constants.O_WRONLY | fs.constants.O_DSYNC);
const out = fs.openSync(log, 'a');
let seq = 0;
(function next() {
  if (limit > 0 && seq >= limit) { fs.closeSync(fd); process.exit(0); }
  seq++;
  const block = (seq * 7919) % blocks;   // a prime stride: every block, in a scattered order
  fs.write(fd, record(seq, block), 0, RECORD, block * RECORD, (err) => {
    if (err) { process.stderr.write('write ' + seq + ': ' + err.message + '\\n'); process.exit(1); }
    fs.writeSync(out, seq + ' ' + block + ' ' + Date.now() + '\\n');
    setImmediate(next);
  });
})();
`;

export interface AckWriter {
  child: ChildProcess;
  log: string;
  /** Acknowledged writes so far. */
  acks(): Promise<Ack[]>;
  exited: Promise<number | null>;
}

export interface Ack {
  seq: number;
  block: number;
  ms: number;
}

/**
 * Starts the writer on `device` over `regionBytes` (a multiple of 4 KiB) in `network`'s namespace;
 * `limit` > 0 stops it after that many records.
 */
export function startAckWriter(network: NodeNetwork, device: string, regionBytes: number, dir: string, limit = 0): AckWriter {
  const log = join(dir, `acks-${Date.now()}.log`);
  const w = network.wrap(process.execPath, ['-e', WRITER, device, log, String(regionBytes / RECORD), String(limit)]);
  const child = spawn(w.command, w.args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, log, exited, acks: () => readAcks(log) };
}

export async function readAcks(log: string): Promise<Ack[]> {
  const text = await readFile(log, 'utf8').catch(() => '');
  return text.split('\n').filter((l) => /^\d+ \d+ \d+$/.test(l)).map((l) => {
    const [seq, block, ms] = l.split(' ').map(Number) as [number, number, number];
    return { seq, block, ms };
  });
}

/**
 * Reads every block of the region from `device` and checks it against the acks: a block written
 * and acknowledged holds its last acknowledged record or a later one (in flight at the cut);
 * never-acknowledged blocks hold a record or what was there before (`before`: zeroes by default).
 * Returns how many blocks hold an in-flight (newer than acknowledged) record.
 */
export async function verifyAcked(device: string, regionBytes: number, acks: Ack[]): Promise<{ blocks: number; inFlight: number }> {
  const last = new Map<number, number>();
  for (const a of acks) last.set(a.block, Math.max(last.get(a.block) ?? 0, a.seq));
  const maxSeq = acks.reduce((m, a) => Math.max(m, a.seq), 0);
  const fh = await open(device, 'r');
  let inFlight = 0;
  try {
    const buf = Buffer.alloc(RECORD);
    for (let block = 0; block < regionBytes / RECORD; block++) {
      await fh.read(buf, 0, RECORD, block * RECORD);
      const acked = last.get(block);
      if (buf.toString('latin1', 0, 8) !== MAGIC) {
        if (acked !== undefined) throw new Error(`block ${block}: expected record ${acked} (acknowledged) or later, found no record: an acknowledged write is lost`);
        continue;
      }
      const seq = Number(buf.readBigUInt64LE(8));
      if (!buf.equals(record(seq, block))) throw new Error(`block ${block}: record ${seq} is torn or foreign (its bytes are not record(${seq}, ${block}))`);
      if (acked !== undefined && seq < acked) throw new Error(`block ${block}: expected record ${acked} (acknowledged) or later, found ${seq}: an acknowledged write is lost`);
      if (seq > maxSeq + 1) throw new Error(`block ${block}: record ${seq} was never started (the writer had ${maxSeq} acknowledged, one in flight at most)`);
      if (acked === undefined || seq > acked) inFlight++;
    }
  } finally {
    await fh.close();
  }
  return { blocks: regionBytes / RECORD, inFlight };
}

/** Writes `bytes` of records at `offset` from this process (O_DSYNC), for rewriting a share of a volume. */
export async function writeRegion(device: string, offset: number, bytes: number, seqBase: number): Promise<void> {
  const fh = await open(device, 'r+');
  try {
    const chunk = 1024 * 1024;
    for (let off = 0; off < bytes; off += chunk) {
      const n = Math.min(chunk, bytes - off);
      const buf = Buffer.alloc(n);
      for (let r = 0; r < n; r += RECORD) record(seqBase + (off + r) / RECORD, (offset + off + r) / RECORD).copy(buf, r);
      await fh.write(buf, 0, n, offset + off);
    }
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/** sha256 of `bytes` of `device` from `offset`. */
export async function deviceHash(device: string, offset: number, bytes: number): Promise<string> {
  const fh = await open(device, 'r');
  const hash = createHash('sha256');
  try {
    const buf = Buffer.alloc(1024 * 1024);
    for (let off = 0; off < bytes; off += buf.length) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, bytes - off), offset + off);
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

/** Writes `text` to a file (for logs the tests print on failure). */
export async function note(file: string, text: string): Promise<void> {
  await writeFile(file, text, { flag: 'a' });
}
