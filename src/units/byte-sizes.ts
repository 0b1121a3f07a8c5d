// Byte counts as people write and read them: "4096", "512K", "64M", "10G", "1T" in (powers of
// 1024, as mdadm and Kubernetes' binary quantities), "2.5 GiB" out. One grammar for every input
// (the CLI's --size, StorageClass chunkSize, the node's default capacity) and one form for every
// message, status column and Event. The bottom of the layers, over src/common: every layer may
// import it.

import { LlraidError } from '../common/llraid-error.js';

const UNITS: Record<string, bigint> = { '': 1n, K: 1n << 10n, M: 1n << 20n, G: 1n << 30n, T: 1n << 40n, P: 1n << 50n, E: 1n << 60n };

export const SIZE_ERROR_CODES = [
  'EINVAL', // a size text that is not one: the message names the setting and says what was expected
] as const;
export type SizeErrorCode = (typeof SIZE_ERROR_CODES)[number];

/** A size text that is not one: `what` names the setting, the message says what was expected. */
export class SizeError extends LlraidError<SizeErrorCode> {
  constructor(message: string) {
    super('EINVAL', message);
  }
}

/**
 * Parses a positive size: digits and an optional unit K, M, G, T, P or E (optionally followed by
 * "iB" or "B", any case). Sizes are JavaScript numbers from here to the file I/O, so the largest
 * is 2^53 - 1 bytes (8 PiB less one byte); a larger one is refused here, saying so, never
 * misread later. Throws SizeError naming `what`.
 */
export function parseSize(text: string, what: string): number {
  const m = /^(\d+)\s*([KMGTPE]?)(i?B)?$/i.exec(text.trim());
  if (!m) throw new SizeError(`${what}: expected a positive size such as 4096, 512K, 64M or 10G, found ${JSON.stringify(text)}`);
  // Exact in bigints: "9007199254740993" or "8E" must not round to something that looks valid.
  const bytes = BigInt(m[1]!) * UNITS[m[2]!.toUpperCase()]!;
  if (bytes === 0n) throw new SizeError(`${what}: expected a positive size, found ${JSON.stringify(text)}`);
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new SizeError(
      `${what}: expected at most ${Number.MAX_SAFE_INTEGER} bytes (8 PiB - 1: byte offsets are JavaScript numbers, ` +
        `exact up to 2^53 - 1), found ${JSON.stringify(text)} = ${bytes} bytes`,
    );
  }
  return Number(bytes);
}

const NAMES = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** "512 MiB", "1.5 GiB", "37 B": one decimal only where it carries information. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < NAMES.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = unit === 0 || Number.isInteger(value) ? String(Math.round(value)) : value.toFixed(1).replace(/\.0$/, '');
  return `${text} ${NAMES[unit]}`;
}
