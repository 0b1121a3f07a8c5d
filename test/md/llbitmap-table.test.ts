// The llbitmap transition table, cell by cell (80 cells, llbitmap.md A3), then the rules that
// live in code: parity `*`, degraded `†`, corrupt bytes, sync requests, daemon arming, marking.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Action,
  ACTION_NAMES,
  infected,
  INFECTABLE,
  infectTable,
  isSynced,
  isUnwrittenState,
  NONE,
  State,
  STATE_NAMES,
  transition,
  TRANSITIONS,
} from '../../src/md/llbitmap/states.js';

// The A3 table as published, x = no change, markers kept: * parity rule, † degraded-only,
// ‡ daemon rule, § sync request, ¶ self-transition. Parsed here independently of states.ts.
const PUBLISHED = `
Unwritten         | Dirty*   | x                 | x              | x         | x         | x      | x         | x         | NeedSyncUnwritten | x
Clean             | Dirty    | x                 | x              | x         | x         | x      | Unwritten | NeedSync  | x                 | x
Dirty             | x        | Syncing†          | x              | x         | NeedSync  | Clean‡ | Unwritten | NeedSync  | x                 | x
NeedSync          | x        | Syncing           | x              | x         | x§        | x      | Unwritten | x         | x                 | x
Syncing           | x        | Syncing¶          | Dirty          | NeedSync  | NeedSync  | x      | Unwritten | NeedSync  | x                 | x
NeedSyncUnwritten | NeedSync | SyncingUnwritten  | x              | Unwritten | Unwritten | x      | Unwritten | Unwritten | x                 | Unwritten
SyncingUnwritten  | Syncing  | SyncingUnwritten¶ | CleanUnwritten | Unwritten | Unwritten | x      | Unwritten | Unwritten | x                 | Unwritten
CleanUnwritten    | Dirty    | x                 | x              | x         | x         | x      | Unwritten | Unwritten | x                 | Unwritten
`;

const plain = { parity: false, degraded: false };
const degraded = { parity: false, degraded: true };

function stateOf(name: string): number {
  const bare = name.replace(/[*†‡§¶]/g, '');
  if (bare === 'x') return NONE;
  const i = STATE_NAMES.indexOf(bare);
  assert.ok(i >= 0, `unknown state ${bare}`);
  return i;
}

const rows = PUBLISHED.trim()
  .split('\n')
  .map((l) => l.split('|').map((c) => c.trim()));

test('the table has 8 states and 10 actions', () => {
  assert.equal(rows.length, 8);
  assert.equal(TRANSITIONS.length, 8);
  for (const r of TRANSITIONS) assert.equal(r.length, 10);
});

for (const row of rows) {
  const from = stateOf(row[0]!);
  for (let a = 0; a < 10; a++) {
    const cell = row[a + 1]!;
    const expected = stateOf(cell);
    const shown = expected === NONE ? 'no change' : STATE_NAMES[expected];
    if (cell.includes('†')) {
      // A degraded-only cell: no change on a whole array, the published state when degraded.
      test(`${row[0]} + ${ACTION_NAMES[a]} → ${shown} when degraded, no change otherwise (†)`, () => {
        assert.equal(transition(from, a as Action, degraded).next, expected);
        assert.equal(transition(from, a as Action, plain).next, NONE);
      });
      continue;
    }
    test(`${row[0]} + ${ACTION_NAMES[a]} → ${shown}`, () => {
      assert.equal(transition(from, a as Action, plain).next, expected);
    });
  }
}

test('parity level: Unwritten + Startwrite → NeedSync and a sync is requested (*)', () => {
  const t = transition(State.Unwritten, Action.Startwrite, { parity: true, degraded: false });
  assert.equal(t.next, State.NeedSync);
  assert.equal(t.requestSync, true);
  assert.equal(t.mark, 'dirty-infect');
});

test('parity level: Clean and CleanUnwritten + Startwrite still → Dirty', () => {
  for (const s of [State.Clean, State.CleanUnwritten]) {
    assert.equal(transition(s, Action.Startwrite, { parity: true, degraded: false }).next, State.Dirty);
  }
});

test('mirror level: Unwritten + Startwrite → Dirty with no sync request, arming the daemon', () => {
  const t = transition(State.Unwritten, Action.Startwrite, plain);
  assert.equal(t.next, State.Dirty);
  assert.equal(t.requestSync, false);
  assert.equal(t.armDaemon, true);
});

test('degraded: a Startwrite that would end Dirty ends NeedSync, without a sync request or infect', () => {
  for (const parity of [false, true]) {
    for (const s of [State.Unwritten, State.Clean, State.CleanUnwritten]) {
      const t = transition(s, Action.Startwrite, { parity, degraded: true });
      assert.equal(t.next, State.NeedSync, `${STATE_NAMES[s]} parity=${parity}`);
      assert.equal(t.requestSync, false);
      assert.equal(t.armDaemon, false);
      assert.equal(t.mark, 'dirty');
    }
  }
});

test('degraded: NeedSync requests no sync', () => {
  assert.equal(transition(State.NeedSync, Action.Reload, degraded).requestSync, false);
  assert.equal(transition(State.Dirty, Action.Reload, degraded).requestSync, false);
});

test('NeedSync + Reload stays NeedSync but requests a resync (§)', () => {
  const t = transition(State.NeedSync, Action.Reload, plain);
  assert.equal(t.next, NONE);
  assert.equal(t.requestSync, true);
});

test('old or new NeedSync / NeedSyncUnwritten requests a sync; other transitions do not', () => {
  for (let s = 0; s < 8; s++) {
    for (let a = 0; a < 10; a++) {
      const t = transition(s, a as Action, plain);
      const expected =
        s === State.NeedSync ||
        s === State.NeedSyncUnwritten ||
        t.next === State.NeedSync ||
        t.next === State.NeedSyncUnwritten;
      assert.equal(t.requestSync, expected, `${STATE_NAMES[s]} + ${ACTION_NAMES[a]}`);
    }
  }
});

test('Startsync self-transitions are reported (¶)', () => {
  assert.equal(transition(State.Syncing, Action.Startsync, plain).next, State.Syncing);
  assert.equal(transition(State.SyncingUnwritten, Action.Startsync, plain).next, State.SyncingUnwritten);
});

test('a corrupt byte is forced to NeedSync and resynced, whatever the action', () => {
  for (const byte of [8, 9, 0x7f, 0xfe, 0xff]) {
    for (let a = 0; a < 10; a++) {
      const t = transition(byte, a as Action, plain);
      assert.equal(t.next, State.NeedSync);
      assert.equal(t.corrupt, true);
      assert.equal(t.requestSync, true);
      assert.equal(t.mark, a === Action.Startwrite ? 'dirty-infect' : 'dirty');
    }
  }
});

test('degraded: Daemon changes nothing (‡)', () => {
  for (let s = 0; s < 8; s++) assert.equal(transition(s, Action.Daemon, degraded).next, NONE);
  assert.equal(transition(State.Dirty, Action.Daemon, plain).next, State.Clean);
});

test('marking: Dirty/NeedSync mark (infecting on Startwrite), NeedSyncUnwritten marks without infect, the rest is memory only', () => {
  for (let s = 0; s < 8; s++) {
    for (let a = 0; a < 10; a++) {
      const t = transition(s, a as Action, plain);
      let expected = 'none';
      if (t.next === State.Dirty || t.next === State.NeedSync) expected = a === Action.Startwrite ? 'dirty-infect' : 'dirty';
      else if (t.next === State.NeedSyncUnwritten) expected = 'dirty';
      else if (s === State.SyncingUnwritten && a === Action.Startwrite) expected = 'dirty';
      assert.equal(t.mark, expected, `${STATE_NAMES[s]} + ${ACTION_NAMES[a]}`);
      assert.equal(t.armDaemon, t.next === State.Dirty);
    }
  }
});

test('infect: Unwritten → Dirty (mirror) or NeedSync (parity); Clean, CleanUnwritten → Dirty; others stay', () => {
  assert.equal(infected(State.Unwritten, false), State.Dirty);
  assert.equal(infected(State.Unwritten, true), State.NeedSync);
  assert.equal(infected(State.Unwritten, true, false), NONE, 'Unwritten left alone when asked');
  assert.equal(infected(State.Clean, true, false), State.Dirty);
  assert.equal(infected(State.Clean, true), State.Dirty);
  assert.equal(infected(State.CleanUnwritten, false), State.Dirty);
  for (const s of [State.Dirty, State.NeedSync, State.Syncing, State.NeedSyncUnwritten, State.SyncingUnwritten]) {
    assert.equal(infected(s, false), NONE);
  }
  for (const parity of [false, true]) {
    for (const unwritten of [false, true]) {
      const table = infectTable(parity, unwritten);
      for (let b = 0; b < 256; b++) {
        const next = infected(b, parity, unwritten);
        assert.equal(table[b], next, `byte ${b}, parity ${parity}, unwritten ${unwritten}`);
        if (next === NONE) continue;
        assert.ok((INFECTABLE as number[]).includes(b), `${STATE_NAMES[b]} is listed as infectable`);
        assert.ok(!(INFECTABLE as number[]).includes(next), `infect never produces ${STATE_NAMES[next]}`);
      }
    }
  }
});

test('blocks synced: Clean, Dirty, CleanUnwritten only; holes: Unwritten and *Unwritten', () => {
  const synced = [State.Clean, State.Dirty, State.CleanUnwritten];
  const holes = [State.Unwritten, State.NeedSyncUnwritten, State.SyncingUnwritten, State.CleanUnwritten];
  for (let s = 0; s < 8; s++) {
    assert.equal(isSynced(s), (synced as number[]).includes(s), STATE_NAMES[s]);
    assert.equal(isUnwrittenState(s), (holes as number[]).includes(s), STATE_NAMES[s]);
  }
  assert.equal(isSynced(0x42), false);
  assert.equal(isUnwrittenState(0x42), false);
});
