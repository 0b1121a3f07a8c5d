// The request parser and its BufferList: however the socket splits the byte stream, the same
// requests come out, WRITE payloads intact in the buffers the sink gave, oversized payloads
// skipped, and bad magic stops it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BufferList } from '../../src/nbd/buffer-list.js';
import { RequestParser, type NbdRequest } from '../../src/nbd/request-parser.js';
import { request } from './raw-client.js';

const MAX = 4096;

function run(chunks: Buffer[], accept = () => true): { requests: NbdRequest[]; errors: string[] } {
  const requests: NbdRequest[] = [];
  const errors: string[] = [];
  const input = new BufferList();
  const parser = new RequestParser(MAX, {
    accepting: accept,
    payloadBuffer: (n) => Buffer.alloc(n),
    onRequest: (r) => requests.push(r),
    onFramingError: (m) => errors.push(m),
  });
  for (const c of chunks) {
    input.push(c);
    parser.parse(input);
  }
  return { requests, errors };
}

const arbRequest = fc.record({
  type: fc.constantFrom(0, 1, 3, 4, 6, 7, 42),
  flags: fc.integer({ min: 0, max: 0xffff }),
  cookie: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  offset: fc.integer({ min: 0, max: 2 ** 40 }),
  length: fc.integer({ min: 0, max: 2 * MAX }),
  seed: fc.integer({ min: 0, max: 255 }),
});

test('any split of a stream of requests parses to the same requests with intact payloads', () => {
  fc.assert(
    fc.property(fc.array(arbRequest, { maxLength: 12 }), fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1 }), (reqs, cuts) => {
      const stream = Buffer.concat(
        reqs.map((r) => {
          const h = request(r.type, r.cookie, r.offset, r.length, r.flags);
          return r.type === 1 ? Buffer.concat([h, Buffer.alloc(r.length, r.seed)]) : h;
        }),
      );
      const chunks: Buffer[] = [];
      for (let at = 0, i = 0; at < stream.length; i++) {
        const n = cuts[i % cuts.length]!;
        chunks.push(stream.subarray(at, at + n));
        at += n;
      }
      const { requests, errors } = run(chunks);
      assert.deepEqual(errors, []);
      assert.equal(requests.length, reqs.length);
      reqs.forEach((r, i) => {
        const got = requests[i]!;
        assert.equal(got.type, r.type);
        assert.equal(got.flags, r.flags);
        assert.equal((BigInt(got.cookieHi) << 32n) | BigInt(got.cookieLo), r.cookie);
        assert.equal(got.offset, r.offset);
        assert.equal(got.length, r.length);
        if (r.type !== 1) assert.equal(got.data, undefined);
        else if (r.length > MAX) assert.equal(got.data, undefined, 'an oversized payload is skipped, not buffered');
        else assert.deepEqual(got.data, Buffer.alloc(r.length, r.seed));
      });
    }),
    { numRuns: 300 },
  );
});

test('a bad magic stops parsing for good and reports what was found', () => {
  const { requests, errors } = run([request(0, 1n, 0, 512), request(0, 2n, 0, 512, 0, 0x12345678), request(0, 3n, 0, 512)]);
  assert.equal(requests.length, 1);
  assert.deepEqual(errors, ['expected request magic 0x25609513, found 0x12345678']);
});

test('the parser takes no request while the sink is not accepting, and resumes where it stopped', () => {
  let open = false;
  const input = new BufferList();
  const seen: number[] = [];
  const parser = new RequestParser(MAX, { accepting: () => open, payloadBuffer: (n) => Buffer.alloc(n), onRequest: (r) => seen.push(r.cookieLo), onFramingError: assert.fail });
  input.push(Buffer.concat([request(0, 1n, 0, 512), request(0, 2n, 0, 512)]));
  parser.parse(input);
  assert.deepEqual(seen, []);
  open = true;
  parser.parse(input);
  assert.deepEqual(seen, [1, 2]);
});

test('a parsed request waits until the sink takes its payload bytes, and a WRITE payload is not collected before', () => {
  let room = 0;
  const input = new BufferList();
  const seen: Array<[number, number]> = [];
  const asked: number[] = [];
  const parser = new RequestParser(MAX, {
    accepting: (bytes) => {
      asked.push(bytes);
      return bytes <= room;
    },
    payloadBuffer: (n) => Buffer.alloc(n),
    onRequest: (r) => seen.push([r.cookieLo, r.length]),
    onFramingError: assert.fail,
  });
  input.push(Buffer.concat([request(1, 1n, 0, 2048), Buffer.alloc(2048, 7), request(0, 2n, 0, 1024), request(3, 3n, 0, 0)]));
  parser.parse(input);
  assert.deepEqual(seen, []);
  assert.equal(parser.pendingBytes, 2048);
  assert.equal(input.length, 2048 + 28 + 28, 'the WRITE payload stays unread while the WRITE waits');
  room = 2048;
  parser.parse(input);
  assert.deepEqual(seen, [[1, 2048], [2, 1024], [3, 0]]);
  assert.deepEqual(asked.slice(-3), [2048, 1024, 0], 'a READ costs its length, a FLUSH nothing');
  // A WRITE larger than the maximum payload is skipped, so it holds nothing and costs nothing.
  room = 0;
  input.push(Buffer.concat([request(1, 4n, 0, MAX + 512), Buffer.alloc(MAX + 512)]));
  parser.parse(input);
  assert.deepEqual(seen.at(-1), [4, MAX + 512]);
  assert.equal(asked.at(-1), 0);
});

test('BufferList returns views inside one chunk and copies across chunks', () => {
  const list = new BufferList();
  const a = Buffer.from('abcdef');
  list.push(a);
  list.push(Buffer.from('ghij'));
  const view = list.take(3);
  assert.equal(view.buffer, a.buffer, 'a view of the first chunk');
  assert.equal(list.take(5).toString(), 'defgh');
  assert.equal(list.skip(10), 2);
  assert.equal(list.length, 0);
});

test('BufferList.takeInto moves what fits across chunks, and no more', () => {
  const list = new BufferList();
  for (const c of ['abc', 'defg', 'hi']) list.push(Buffer.from(c));
  list.take(1);
  const out = Buffer.alloc(9, '.');
  assert.equal(list.takeInto(out, 2), 7);
  assert.equal(out.toString(), '..bcdefgh');
  assert.equal(list.length, 1);
  assert.equal(list.takeInto(out, 9), 0, 'no room, nothing taken');
  assert.equal(list.takeInto(Buffer.alloc(4), 0), 1);
  assert.equal(list.length, 0);
});

test('a WRITE payload is collected in the buffer the sink gave: queued bytes copied, the rest landed in place', () => {
  const given: Buffer[] = [];
  const seen: NbdRequest[] = [];
  const input = new BufferList();
  const parser = new RequestParser(MAX, {
    accepting: () => true,
    payloadBuffer: (n) => {
      given.push(Buffer.alloc(n));
      return given.at(-1)!;
    },
    onRequest: (r) => seen.push(r),
    onFramingError: assert.fail,
  });
  const payload = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));
  input.push(Buffer.concat([request(1, 1n, 0, 3000), payload.subarray(0, 1000)]));
  parser.parse(input);
  assert.equal(seen.length, 0);
  assert.equal(input.length, 0, 'the first 1000 payload bytes moved into the payload buffer');
  let target = parser.payloadTarget(input)!;
  assert.equal(target.buffer, given[0]!.buffer, 'the rest lands in the payload buffer itself');
  assert.equal(target.length, 2000);
  payload.copy(target, 0, 1000, 1500);
  parser.payloadLanded(500, input);
  target = parser.payloadTarget(input)!;
  assert.equal(target.length, 1500);
  payload.copy(target, 0, 1500);
  parser.payloadLanded(1500, input);
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.data, given[0], 'the request carries the very buffer the sink gave');
  assert.deepEqual(seen[0]!.data, payload);
  assert.equal(parser.payloadTarget(input), undefined, 'no payload being collected');
  // With bytes queued ahead of it, the rest of a payload is not a landing target.
  input.push(Buffer.concat([request(1, 2n, 0, 3000), payload.subarray(0, 10)]));
  parser.parse(input);
  assert.equal(parser.payloadTarget(input)!.length, 2990);
  input.push(Buffer.from('x'));
  assert.equal(parser.payloadTarget(input), undefined);
  assert.equal(parser.abandon(), given[1], 'a payload abandoned mid-way goes back to whoever gave it');
});
