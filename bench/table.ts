// Plain-text tables for the benchmarks: left-aligned first column, right-aligned numbers, and
// the ratio / PASS-MISS helpers every bench table uses. Imports nothing of llraid.

export type Cell = string | number;

/** Prints a title, a header row, a rule and the rows, each column as wide as its widest cell. */
export function printTable(title: string, header: string[], rows: Cell[][]): void {
  const text = rows.map((r) => r.map((c) => (typeof c === 'number' ? formatNumber(c) : c)));
  const widths = header.map((h, i) => Math.max(h.length, ...text.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of text) console.log(line(r));
}

/** Numbers with a precision that suits their size; NaN (not measured) as '-'. */
export function formatNumber(n: number): string {
  if (Number.isNaN(n)) return '-';
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 1000) return Math.round(n).toString();
  if (a >= 100) return n.toFixed(1);
  if (a >= 1) return n.toFixed(2);
  return n.toFixed(3);
}

/** `value / baseline` as "0.97x"; '-' when either was not measured (NaN). */
export function ratio(value: number, baseline: number): string {
  if (Number.isNaN(value) || Number.isNaN(baseline)) return '-';
  return baseline === 0 ? 'n/a' : `${(value / baseline).toFixed(3)}x`;
}

/** PASS when the ratio meets the target (≥ for "at least" targets, ≤ for "at most"); '-' for NaN (not measured). */
export function verdict(r: number, target: number, at: 'least' | 'most'): string {
  if (Number.isNaN(r)) return '-';
  const ok = at === 'least' ? r >= target : r <= target;
  return `${ok ? 'PASS' : 'MISS'} (${at === 'least' ? '>=' : '<='} ${target})`;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
