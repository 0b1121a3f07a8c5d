// Percentages for people in printer columns and Event messages (byte counts: units/byte-sizes.ts);
// exact counts stay in the integer fields beside them.

/** "37.5%" with one decimal; 0 of 0 is complete. */
export function formatPercent(done: number, total: number): string {
  if (total <= 0) return '100.0%';
  return `${((Math.min(done, total) / total) * 100).toFixed(1)}%`;
}
