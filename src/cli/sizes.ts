// Byte sizes on the command line: "4096", "512K", "64M", "10G", "1T", "2P" (powers of 1024, as
// mdadm). Sizes are JavaScript numbers from here to the file I/O, so the largest is 2^53 - 1
// bytes (8 PiB less one byte); a larger one is refused here, saying so, not misread later.

import { UsageError } from './report-error.js';

const UNITS: Record<string, bigint> = { '': 1n, K: 1n << 10n, M: 1n << 20n, G: 1n << 30n, T: 1n << 40n, P: 1n << 50n, E: 1n << 60n };

export function parseSize(text: string, what: string): number {
  const m = /^(\d+)([KMGTPE]?)(i?B)?$/i.exec(text.trim());
  if (!m) {
    throw new UsageError(`${what}: expected a positive size such as 4096, 512K, 64M or 10G, found ${JSON.stringify(text)}`);
  }
  // Exact in bigints: "9007199254740993" or "8E" must not round to something that looks valid.
  const bytes = BigInt(m[1]!) * UNITS[m[2]!.toUpperCase()]!;
  if (bytes === 0n) throw new UsageError(`${what}: expected a positive size, found ${JSON.stringify(text)}`);
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new UsageError(
      `${what}: expected at most ${Number.MAX_SAFE_INTEGER} bytes (8 PiB - 1: byte offsets are JavaScript numbers, ` +
        `exact up to 2^53 - 1), found ${JSON.stringify(text)} = ${bytes} bytes`,
    );
  }
  return Number(bytes);
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}
