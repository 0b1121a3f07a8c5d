// List once, then follow ONE watch request from the list's resourceVersion, for as long as it
// runs: the API cost of following every object of a kind is one open connection per process
// and one event per change, whatever the number of objects. A watch the server ends (its
// timeoutSeconds) or that breaks resumes from the last resourceVersion seen (an event's or a
// bookmark's); only 410 Gone (the server no longer has that version) costs a new list, which
// is then compared with what was known so that deletions missed meanwhile are still reported.
// The transport is an interface so the loop's rules are tested alone (test/k8s/list-watch.test.ts);
// replication-store.ts gives the real one.

import { backoffDelay, type BackoffPolicy } from './backoff.js';
import { K8sError } from './errors.js';

export interface ListPage {
  items: unknown[];
  resourceVersion: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchSource {
  /** A consistent list (all pages); its resourceVersion is where the watch starts. */
  list(): Promise<ListPage>;
  /**
   * Opens a watch from `resourceVersion`. `onDone` is called once when it ends: null when the
   * server closed it, else the error (an HTTP status in `statusCode`, 410 = too old).
   */
  watch(resourceVersion: string, onEvent: (type: WatchEventType, obj: unknown) => void, onDone: (err: unknown) => void): Promise<{ abort(): void }>;
}

export interface ListWatchOptions<T> {
  /** The object's identity (its name), or undefined to ignore the object (reported to onError). */
  parse(obj: unknown): { key: string; resourceVersion: string; value: T } | undefined;
  onChange(value: T, gone: boolean): void;
  onError?: (err: K8sError) => void;
  /** Delay after a failed list or watch (default 500 ms doubling to 30 s). */
  backoff?: BackoffPolicy;
  random?: () => number;
}

const HTTP_GONE = 410;

function statusOf(err: unknown): number | undefined {
  const e = err as { statusCode?: number; code?: number; status?: number } | null;
  return e?.statusCode ?? e?.status ?? (typeof e?.code === 'number' ? e.code : undefined);
}

function toK8sError(what: string, err: unknown): K8sError {
  if (err instanceof K8sError) return err;
  const status = statusOf(err);
  const message = err instanceof Error ? err.message : JSON.stringify(err);
  return status === undefined
    ? new K8sError('EUNREACHABLE', `${what}: API server not reachable: ${message}`, undefined, { cause: err })
    : new K8sError('EAPI', `${what}: API server answered ${status}: ${message}`, status, { cause: err });
}

export interface ListWatchStats {
  lists: number;
  watches: number;
  events: number;
}

export class ListWatch<T> {
  private readonly known = new Map<string, { resourceVersion: string; value: T }>();
  /** Where the next watch starts; undefined = list first. */
  private resourceVersion: string | undefined;
  private closed = false;
  private failures = 0;
  private current: { abort(): void } | undefined;
  private wakeUp: (() => void) | undefined;
  private readonly counters: ListWatchStats = { lists: 0, watches: 0, events: 0 };
  private readonly backoff: BackoffPolicy;

  constructor(private readonly source: WatchSource, private readonly o: ListWatchOptions<T>) {
    this.backoff = o.backoff ?? { baseMs: 500, maxMs: 30_000 };
    void this.run();
  }

  /** Requests made so far: what the API server paid for following these objects. */
  stats(): ListWatchStats {
    return { ...this.counters };
  }

  close(): void {
    this.closed = true;
    this.current?.abort();
    this.wakeUp?.();
  }

  private report(err: K8sError): void {
    try {
      this.o.onError?.(err);
    } catch {
      // A logger that throws must not end the watch.
    }
  }

  private deliver(value: T, gone: boolean): void {
    try {
      this.o.onChange(value, gone);
    } catch (err) {
      this.report(toK8sError('watch consumer', err));
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    });
  }

  private async failed(what: string, err: unknown): Promise<void> {
    this.report(toK8sError(what, err));
    this.failures++;
    await this.sleep(backoffDelay(this.backoff, this.failures, this.o.random));
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      if (this.resourceVersion === undefined) {
        try {
          this.counters.lists++;
          const page = await this.source.list();
          if (this.closed) return;
          this.reconcile(page);
          this.resourceVersion = page.resourceVersion;
          this.failures = 0;
        } catch (err) {
          await this.failed('list', err);
          continue;
        }
      }
      const outcome = await this.follow(this.resourceVersion);
      if (outcome === 'gone') this.resourceVersion = undefined;
      else if (outcome !== 'ok') await this.failed('watch', outcome.err);
    }
  }

  /** The list is the truth: report what changed or vanished since the last thing known. */
  private reconcile(page: ListPage): void {
    const seen = new Set<string>();
    for (const obj of page.items) {
      const p = this.parse(obj);
      if (!p) continue;
      seen.add(p.key);
      const before = this.known.get(p.key);
      this.known.set(p.key, { resourceVersion: p.resourceVersion, value: p.value });
      if (before?.resourceVersion !== p.resourceVersion) this.deliver(p.value, false);
    }
    for (const [key, k] of this.known) {
      if (seen.has(key)) continue;
      this.known.delete(key);
      this.deliver(k.value, true);
    }
  }

  private parse(obj: unknown): ReturnType<ListWatchOptions<T>['parse']> {
    try {
      return this.o.parse(obj);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.report(err instanceof K8sError ? err : new K8sError('EAPI', `watch: an object the server sent cannot be read: ${message}`, undefined, { cause: err }));
      return undefined;
    }
  }

  private onEvent(type: WatchEventType, obj: unknown): 'gone' | undefined {
    this.counters.events++;
    if (type === 'ERROR') {
      const status = obj as { code?: number; message?: string };
      if (status.code === HTTP_GONE) return 'gone';
      this.report(new K8sError('EAPI', `watch: API server sent an error: ${status.message ?? JSON.stringify(obj)}`, status.code));
      return undefined;
    }
    const rv = (obj as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion;
    if (type === 'BOOKMARK') {
      if (rv) this.resourceVersion = rv;
      return undefined;
    }
    const p = this.parse(obj);
    if (rv) this.resourceVersion = rv;
    if (!p) return undefined;
    if (type === 'DELETED') {
      this.known.delete(p.key);
      this.deliver(p.value, true);
    } else {
      this.known.set(p.key, { resourceVersion: p.resourceVersion, value: p.value });
      this.deliver(p.value, false);
    }
    return undefined;
  }

  /** One watch request, until it ends: 'ok' (the server closed it), 'gone' (410), or an error. */
  private follow(from: string): Promise<'ok' | 'gone' | { err: unknown }> {
    return new Promise((resolve) => {
      let gone = false;
      let finished = false;
      let events = 0;
      const opened = Date.now();
      this.counters.watches++;
      const onEvent = (type: WatchEventType, obj: unknown) => {
        events++;
        if (this.onEvent(type, obj) === 'gone') {
          gone = true;
          this.current?.abort();
        }
      };
      const onDone = (err: unknown) => {
        if (finished) return;
        finished = true;
        this.current = undefined;
        if (gone || statusOf(err) === HTTP_GONE) return resolve('gone');
        if (err && !this.closed) return resolve({ err });
        // A server that closes every watch at once would make this a busy loop: such a close
        // counts as a failure (backoff), a watch that ran or carried events does not.
        if (!this.closed && events === 0 && Date.now() - opened < 1000) return resolve({ err: new Error('watch closed by the server at once') });
        this.failures = 0;
        resolve('ok');
      };
      this.source.watch(from, onEvent, onDone).then(
        (handle) => {
          if (this.closed) handle.abort();
          else if (!finished) this.current = handle;
        },
        (err: unknown) => onDone(err ?? new Error('watch failed')),
      );
    });
  }
}
