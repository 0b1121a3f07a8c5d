// md's raid5/raid6 layouts against the pictures in mdadm's documentation and raid5.c comments,
// plus invariants: every (member, row) holds exactly one role and locate() is a bijection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ParityLayout, parseLayout, layoutName, ROLE_P, ROLE_Q } from '../../src/md/parity/layout.js';
import { MdError } from '../../src/md/errors.js';

// Rows drawn as member columns: 'P', 'Q', or the array's data chunk number.
function draw(layout: ParityLayout, rows: number): string[][] {
  const out: string[][] = [];
  for (let r = 0; r < rows; r++) {
    const m = layout.stripe(r);
    out.push(
      m.role.map((role) => (role === ROLE_P ? 'P' : role === ROLE_Q ? 'Q' : String(r * layout.dataDisks + role))),
    );
  }
  return out;
}

const K = 4096;

test('raid5 layouts on 4 members match md', () => {
  const expect: Record<number, string[][]> = {
    0: [['0', '1', '2', 'P'], ['3', '4', 'P', '5'], ['6', 'P', '7', '8'], ['P', '9', '10', '11']],
    1: [['P', '0', '1', '2'], ['3', 'P', '4', '5'], ['6', '7', 'P', '8'], ['9', '10', '11', 'P']],
    2: [['0', '1', '2', 'P'], ['4', '5', 'P', '3'], ['8', 'P', '6', '7'], ['P', '9', '10', '11']],
    3: [['P', '0', '1', '2'], ['5', 'P', '3', '4'], ['7', '8', 'P', '6'], ['9', '10', '11', 'P']],
    4: [['P', '0', '1', '2'], ['P', '3', '4', '5']],
    5: [['0', '1', '2', 'P'], ['3', '4', '5', 'P']],
  };
  for (const [alg, rows] of Object.entries(expect)) {
    const l = new ParityLayout({ level: 5, raidDisks: 4, chunkSize: K, algorithm: Number(alg) });
    assert.deepEqual(draw(l, rows.length), rows, layoutName(Number(alg)));
    // The pattern repeats every raidDisks rows.
    assert.deepEqual(draw(l, 8).slice(4).map((r) => r.map((c) => (/\d/.test(c) ? String(Number(c) - 12) : c))), draw(l, 4));
  }
});

test('raid6 layouts on 5 members match md, with Q after P', () => {
  const expect: Record<number, string[][]> = {
    0: [['Q', '0', '1', '2', 'P'], ['3', '4', '5', 'P', 'Q'], ['6', '7', 'P', 'Q', '8'], ['9', 'P', 'Q', '10', '11'], ['P', 'Q', '12', '13', '14']],
    1: [['P', 'Q', '0', '1', '2'], ['3', 'P', 'Q', '4', '5'], ['6', '7', 'P', 'Q', '8'], ['9', '10', '11', 'P', 'Q'], ['Q', '12', '13', '14', 'P']],
    2: [['Q', '0', '1', '2', 'P'], ['3', '4', '5', 'P', 'Q'], ['7', '8', 'P', 'Q', '6'], ['11', 'P', 'Q', '9', '10'], ['P', 'Q', '12', '13', '14']],
    3: [['P', 'Q', '0', '1', '2'], ['5', 'P', 'Q', '3', '4'], ['7', '8', 'P', 'Q', '6'], ['9', '10', '11', 'P', 'Q'], ['Q', '12', '13', '14', 'P']],
  };
  for (const [alg, rows] of Object.entries(expect)) {
    const l = new ParityLayout({ level: 6, raidDisks: 5, chunkSize: K, algorithm: Number(alg) });
    assert.deepEqual(draw(l, rows.length), rows, layoutName(Number(alg)));
  }
});

test('raid6 Q slots run in member order from the member after Q (raid6_d0)', () => {
  // left-asymmetric row 2 on 5 members: D6 D7 P Q D8 → walk from member 4: D8, D6, D7.
  const la = new ParityLayout({ level: 6, raidDisks: 5, chunkSize: K, algorithm: 0 });
  assert.deepEqual(la.stripe(2).qSlot, [1, 2, 0]);
  // Q on the last member (row 1: D3 D4 D5 P Q): slots start at member 0.
  assert.deepEqual(la.stripe(1).qSlot, [0, 1, 2]);
  // left-symmetric keeps data in slot order.
  const ls = new ParityLayout({ level: 6, raidDisks: 5, chunkSize: K });
  for (let r = 0; r < 5; r++) assert.deepEqual(ls.stripe(r).qSlot, [0, 1, 2]);
});

test('locate maps every array chunk to a distinct data position of a member', () => {
  for (const level of [5, 6] as const) {
    for (let alg = 0; alg <= 5; alg++) {
      const n = level === 5 ? 5 : 6;
      const l = new ParityLayout({ level, raidDisks: n, chunkSize: K, algorithm: alg });
      const used = new Set<string>();
      const rows = 3 * n;
      for (let c = 0; c < rows * l.dataDisks; c++) {
        const loc = l.locate(c * K + 17);
        assert.equal(loc.memberOffset % K, 17);
        const m = l.stripe(loc.row);
        assert.notEqual(loc.member, m.pd);
        assert.notEqual(loc.member, m.qd);
        const key = `${loc.member}:${loc.memberOffset}`;
        assert.ok(!used.has(key), `${key} used twice`);
        used.add(key);
      }
      assert.equal(used.size, rows * l.dataDisks);
    }
  }
});

test('bad geometry and unknown layouts are refused with EINVAL', () => {
  const bad = [
    () => new ParityLayout({ level: 5, raidDisks: 1, chunkSize: K }),
    () => new ParityLayout({ level: 6, raidDisks: 3, chunkSize: K }),
    () => new ParityLayout({ level: 5, raidDisks: 4, chunkSize: 3 * K }),
    () => new ParityLayout({ level: 5, raidDisks: 4, chunkSize: 512 }),
    () => parseLayout('diagonal'),
    () => parseLayout(9),
  ];
  for (const f of bad) assert.throws(f, (e: unknown) => e instanceof MdError && e.code === 'EINVAL');
  assert.equal(parseLayout('left-symmetric'), 2);
  assert.equal(parseLayout('ra'), 1);
  assert.equal(parseLayout('3'), 3);
});
