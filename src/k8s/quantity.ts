// Byte counts for people: the text of printer columns and Event messages ("2.5 GiB"). Binary
// units, as Kubernetes quantities and md use; exact counts stay in the integer fields beside them.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  // One decimal only where it carries information: "512 MiB", "1.5 GiB", never "1.0 GiB".
  const text = unit === 0 || Number.isInteger(value) ? String(Math.round(value)) : value.toFixed(1).replace(/\.0$/, '');
  return `${text} ${UNITS[unit]}`;
}

/** "37.5%" with one decimal; 0 of 0 is complete. */
export function formatPercent(done: number, total: number): string {
  if (total <= 0) return '100.0%';
  return `${((Math.min(done, total) / total) * 100).toFixed(1)}%`;
}
