// The list-watch loop (list-watch.ts) with a scripted transport (unit-test double): one list,
// then watches resumed from the last resourceVersion (events and bookmarks); a new list only on
// 410 Gone, compared with what was known so that deletions missed meanwhile are reported.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ListWatch, type ListPage, type WatchEventType, type WatchSource } from '../../src/k8s/list-watch.js';
import type { K8sError } from '../../src/k8s/errors.js';

interface Obj {
  metadata: { name: string; resourceVersion: string };
}
const obj = (name: string, rv: number): Obj => ({ metadata: { name, resourceVersion: String(rv) } });

interface OpenWatch {
  from: string;
  emit(type: WatchEventType, o: unknown): void;
  end(err: unknown): void;
  aborted: boolean;
}

class ScriptedSource implements WatchSource {
  lists: ListPage[] = [];
  listCalls = 0;
  failLists = 0;
  watches: OpenWatch[] = [];
  waiters: Array<() => void> = [];

  async list(): Promise<ListPage> {
    this.listCalls++;
    if (this.failLists > 0) {
      this.failLists--;
      throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    }
    const page = this.lists.shift();
    if (!page) throw new Error('test: no list scripted');
    return page;
  }

  async watch(from: string, onEvent: (type: WatchEventType, o: unknown) => void, onDone: (err: unknown) => void): Promise<{ abort(): void }> {
    const w: OpenWatch = {
      from,
      aborted: false,
      emit: (type, o) => onEvent(type, o),
      end: (err) => onDone(err),
    };
    this.watches.push(w);
    for (const f of this.waiters.splice(0)) f();
    return {
      abort: () => {
        w.aborted = true;
        onDone(Object.assign(new Error('aborted'), { name: 'AbortError' }));
      },
    };
  }

  /** Resolves once `n` watches have been opened. */
  async opened(n: number): Promise<OpenWatch> {
    while (this.watches.length < n) await new Promise<void>((r) => this.waiters.push(r));
    return this.watches[n - 1]!;
  }
}

function start(source: ScriptedSource) {
  const seen: string[] = [];
  const errors: K8sError[] = [];
  const lw = new ListWatch<Obj>(source, {
    parse: (o) => {
      const x = o as Obj;
      if (x.metadata.name.startsWith('bad')) throw new Error(`cannot read ${x.metadata.name}`);
      return { key: x.metadata.name, resourceVersion: x.metadata.resourceVersion, value: x };
    },
    onChange: (v, gone) => seen.push(`${gone ? '-' : '+'}${v.metadata.name}@${v.metadata.resourceVersion}`),
    onError: (e) => errors.push(e),
    backoff: { baseMs: 1, maxMs: 4 },
  });
  return { lw, seen, errors };
}

test('lists once, then follows one watch from the list version; events and bookmarks move the resume point', async () => {
  const source = new ScriptedSource();
  source.lists.push({ items: [obj('a', 5), obj('b', 7)], resourceVersion: '10' });
  const { lw, seen } = start(source);
  const w1 = await source.opened(1);
  assert.equal(w1.from, '10');
  assert.deepEqual(seen, ['+a@5', '+b@7']);
  w1.emit('ADDED', obj('c', 11));
  w1.emit('MODIFIED', obj('a', 12));
  w1.emit('DELETED', obj('b', 13));
  w1.emit('BOOKMARK', { metadata: { resourceVersion: '20' } });
  assert.deepEqual(seen, ['+a@5', '+b@7', '+c@11', '+a@12', '-b@13']);
  // The server ends the watch (its timeoutSeconds): resume from the bookmark, no new list.
  w1.end(null);
  const w2 = await source.opened(2);
  assert.equal(w2.from, '20');
  assert.equal(source.listCalls, 1);
  // A broken connection: resume from the last event's version, after a backoff.
  w2.emit('MODIFIED', obj('c', 21));
  w2.end(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
  const w3 = await source.opened(3);
  assert.equal(w3.from, '21');
  assert.equal(source.listCalls, 1);
  assert.deepEqual(lw.stats(), { lists: 1, watches: 3, events: 5 });
  lw.close();
  assert.equal(w3.aborted, true);
});

test('410 Gone (an ERROR event or the answer to the watch) lists again and reports only what changed, deletions included', async () => {
  const source = new ScriptedSource();
  source.lists.push({ items: [obj('a', 5), obj('b', 7), obj('c', 8)], resourceVersion: '10' });
  source.lists.push({ items: [obj('a', 5), obj('c', 30), obj('d', 31)], resourceVersion: '40' });
  source.lists.push({ items: [obj('a', 5)], resourceVersion: '50' });
  const { lw, seen } = start(source);
  const w1 = await source.opened(1);
  seen.length = 0;
  w1.emit('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version: 10 (35)' });
  assert.equal(w1.aborted, true, 'the stale watch is ended at once');
  const w2 = await source.opened(2);
  assert.equal(w2.from, '40');
  assert.deepEqual(seen, ['+c@30', '+d@31', '-b@7'], 'a unchanged is not told again; b vanished meanwhile');
  seen.length = 0;
  w2.end(Object.assign(new Error('Gone'), { statusCode: 410 }));
  const w3 = await source.opened(3);
  assert.equal(w3.from, '50');
  assert.deepEqual(seen, ['-c@30', '-d@31']);
  assert.equal(source.listCalls, 3);
  lw.close();
});

test('a failing list is retried with backoff and reported; an unreadable object is skipped and reported', async () => {
  const source = new ScriptedSource();
  source.failLists = 2;
  source.lists.push({ items: [obj('a', 1), obj('bad-1', 2)], resourceVersion: '3' });
  const { lw, seen, errors } = start(source);
  const w1 = await source.opened(1);
  assert.equal(source.listCalls, 3);
  assert.deepEqual(seen, ['+a@1']);
  assert.deepEqual(errors.map((e) => e.code), ['EUNREACHABLE', 'EUNREACHABLE', 'EAPI']);
  w1.emit('ERROR', { kind: 'Status', code: 500, message: 'internal error' });
  assert.match(errors.at(-1)!.message, /internal error/);
  lw.close();
});

test('a consumer that throws does not end the watch', async () => {
  const source = new ScriptedSource();
  source.lists.push({ items: [], resourceVersion: '1' });
  const errors: K8sError[] = [];
  const seen: string[] = [];
  const lw = new ListWatch<Obj>(source, {
    parse: (o) => ({ key: (o as Obj).metadata.name, resourceVersion: (o as Obj).metadata.resourceVersion, value: o as Obj }),
    onChange: (v) => {
      seen.push(v.metadata.name);
      if (v.metadata.name === 'x') throw new Error('consumer bug');
    },
    onError: (e) => errors.push(e),
  });
  const w = await source.opened(1);
  w.emit('ADDED', obj('x', 2));
  w.emit('ADDED', obj('y', 3));
  assert.deepEqual(seen, ['x', 'y']);
  assert.match(errors[0]!.message, /consumer bug/);
  lw.close();
});
