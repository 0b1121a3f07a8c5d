// The trace switch (src/common/trace.ts): off unless LLRAID_TRACE names the layer, at the
// severity LLRAID_VERBOSITY allows, and free of string building while off.

import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { configureTrace, trace, traceEnabled, TRACE_LAYERS } from '../../src/common/trace.js';

let lines: string[] = [];
const write = (line: string): void => void lines.push(line);

afterEach(() => {
  lines = [];
  configureTrace({ write: (line) => void process.stderr.write(line) });
});

test('with no layer named nothing is printed and no text is built', () => {
  assert.deepEqual(configureTrace({ write }), []);
  let built = 0;
  for (const layer of TRACE_LAYERS) {
    assert.equal(traceEnabled(layer, 'error'), false, layer);
    trace(layer, 'error', () => `${built++}`);
  }
  assert.equal(built, 0, 'the text of a trace that is off is never built');
  assert.deepEqual(lines, []);
});

test('a named layer prints one stamped line per trace, other layers stay off', () => {
  assert.deepEqual(configureTrace({ trace: 'md', write }), []);
  trace('md', 'info', 'member /d/b.img failed: EIO');
  trace('nbd', 'error', 'not this one');
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z INFO llraid\\[${process.pid}\\] md: member /d/b\\.img failed: EIO\\n$`));
});

test('all names every layer, -layer leaves one out, and verbosity sets the least severity', () => {
  assert.deepEqual(configureTrace({ trace: 'all,-nbd', verbosity: 'info', write }), []);
  assert.deepEqual(TRACE_LAYERS.filter((l) => traceEnabled(l, 'info')), TRACE_LAYERS.filter((l) => l !== 'nbd'));
  trace('csi', 'debug', 'below the verbosity');
  trace('csi', 'info', 'at it');
  trace('csi', 'error', 'above it');
  assert.deepEqual(lines.map((l) => l.replace(/^\S+ /, '')), [`INFO llraid[${process.pid}] csi: at it\n`, `ERROR llraid[${process.pid}] csi: above it\n`]);
});

test('names it does not know are reported, and the known ones still apply', () => {
  const problems = configureTrace({ trace: 'md, mdd', verbosity: 'loud', write });
  assert.equal(problems.length, 2);
  assert.match(problems[0]!, /LLRAID_VERBOSITY: expected one of debug, info, error, found "loud"/);
  assert.match(problems[1]!, /LLRAID_TRACE: expected layers from block, md, nbd, engine, csi, k8s or all, found "mdd"/);
  assert.equal(traceEnabled('md', 'debug'), true);
});
