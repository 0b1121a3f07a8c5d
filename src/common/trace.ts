// Tracing, one switch per layer, as grpc-js's GRPC_TRACE and GRPC_VERBOSITY: LLRAID_TRACE names
// the layers to trace (`md,nbd`, `all`, `all,-nbd`), LLRAID_VERBOSITY the least severity printed
// (debug, the default, info or error). Off by default: nothing is printed and a trace call costs
// one comparison. Lines go to stderr: `<ISO time> <SEVERITY> llraid[<pid>] <layer>: <text>`.
// In the bottom layer so that every layer may import it. Traces are for people; a program that
// needs to know what happened gets typed data (status, events, errors), never these lines.

export const TRACE_LAYERS = ['block', 'md', 'nbd', 'engine', 'csi', 'k8s'] as const;
export type TraceLayer = (typeof TRACE_LAYERS)[number];

export const TRACE_SEVERITIES = ['debug', 'info', 'error'] as const;
export type TraceSeverity = (typeof TRACE_SEVERITIES)[number];

const RANK: Record<TraceSeverity, number> = { debug: 0, info: 1, error: 2 };

/**
 * Per layer, the least severity rank printed; Infinity for a layer that is off. Invariant: a
 * trace call prints iff RANK[severity] >= threshold[layer].
 */
const threshold: Record<TraceLayer, number> = { block: Infinity, md: Infinity, nbd: Infinity, engine: Infinity, csi: Infinity, k8s: Infinity };

let write: (line: string) => void = (line) => void process.stderr.write(line);

export interface TraceSettings {
  /** LLRAID_TRACE: comma-separated layers, `all`, and `-layer` to leave one out. */
  trace?: string | undefined;
  /** LLRAID_VERBOSITY: debug, info or error. */
  verbosity?: string | undefined;
  /** Where lines go (tests); stderr by default. */
  write?: (line: string) => void;
}

/**
 * Sets which layers trace, from scratch. Names it does not know are skipped; the returned
 * problems say which (the CLI refuses to start with them, as with any bad setting).
 */
export function configureTrace(settings: TraceSettings): string[] {
  const problems: string[] = [];
  let rank = RANK.debug;
  const v = settings.verbosity?.trim().toLowerCase();
  if (v !== undefined && v !== '') {
    if ((TRACE_SEVERITIES as readonly string[]).includes(v)) rank = RANK[v as TraceSeverity];
    else problems.push(`LLRAID_VERBOSITY: expected one of ${TRACE_SEVERITIES.join(', ')}, found ${JSON.stringify(settings.verbosity)}`);
  }
  const on = new Set<TraceLayer>();
  for (const raw of (settings.trace ?? '').split(',')) {
    const name = raw.trim().toLowerCase();
    if (name === '') continue;
    const off = name.startsWith('-');
    const layer = off ? name.slice(1) : name;
    const layers: readonly TraceLayer[] = layer === 'all' ? TRACE_LAYERS : (TRACE_LAYERS as readonly string[]).includes(layer) ? [layer as TraceLayer] : [];
    if (layers.length === 0) {
      problems.push(`LLRAID_TRACE: expected layers from ${TRACE_LAYERS.join(', ')} or all, found ${JSON.stringify(raw.trim())}`);
      continue;
    }
    for (const l of layers) {
      if (off) on.delete(l);
      else on.add(l);
    }
  }
  for (const l of TRACE_LAYERS) threshold[l] = on.has(l) ? rank : Infinity;
  if (settings.write !== undefined) write = settings.write;
  return problems;
}

/** Whether `trace(layer, severity, ...)` would print: guard any costly preparation with it. */
export function traceEnabled(layer: TraceLayer, severity: TraceSeverity = 'debug'): boolean {
  return RANK[severity] >= threshold[layer];
}

/**
 * One trace line, when `layer` traces at `severity`. Pass a function for text that costs
 * something to build: it is only called when the line is printed.
 */
export function trace(layer: TraceLayer, severity: TraceSeverity, text: string | (() => string)): void {
  if (RANK[severity] < threshold[layer]) return;
  const body = typeof text === 'function' ? text() : text;
  write(`${new Date().toISOString()} ${severity.toUpperCase()} llraid[${process.pid}] ${layer}: ${body}\n`);
}

/** An error's message with its code, for trace lines: `message (CODE)`. */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? `${err.message} (${code})` : err.message;
}

configureTrace({ trace: process.env.LLRAID_TRACE, verbosity: process.env.LLRAID_VERBOSITY });
