// receiveInto on a real unix socket accepted by a real net.Server: on the Node we ship, the
// accepted socket must switch to reading into the receiver's buffers (the NBD server's payloads
// depend on it, and silently falling back would cost every engine its memory target); bytes land
// where the receiver said, in order; pause() stops reading and resume() starts it again; the
// peer's end still shows as 'end' and 'close'.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { receiveInto } from '../../src/nbd/socket-receiver.js';
import { tempDir } from '../support/temp-dir.js';

test('an accepted socket reads into the buffers the receiver chooses, pauses, resumes and ends', async (t) => {
  const dir = tempDir(t, 'receiver');
  const path = join(dir, 's.sock');
  const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 256));
  const got: Buffer[] = [];
  const targets: Uint8Array[] = [];
  let dataEvents = 0;
  let last: Uint8Array | undefined;
  const accepted = new Promise<{ socket: Socket; switched: boolean }>((resolve) => {
    const server = createServer({ pauseOnConnect: true }, (socket) => {
      const switched = receiveInto(socket, {
        // Small targets of varying size, so one stream spans many reads and buffers.
        target: () => (last = Buffer.alloc(1000 + (targets.length % 7) * 3000)),
        landed: (n) => {
          targets.push(last!);
          got.push(Buffer.from(last!.subarray(0, n)));
        },
      });
      socket.on('data', () => dataEvents++);
      resolve({ socket, switched });
      server.close();
    });
    server.listen(path);
  });
  const client = createConnection(path);
  const { socket, switched } = await accepted;
  assert.equal(switched, true, `this Node (${process.version}) must offer the onread fields on accepted sockets`);
  const received = (): number => got.reduce((n, b) => n + b.length, 0);
  socket.resume();
  client.write(payload.subarray(0, 100_000));
  for (let i = 0; i < 500 && received() < 100_000; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(received(), 100_000);

  // Paused: what the client sends now stays in the kernel until resume().
  socket.pause();
  client.write(payload.subarray(100_000));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(received(), 100_000, 'nothing is read while paused');
  const ended = new Promise<void>((resolve) => socket.once('end', resolve));
  const closed = new Promise<void>((resolve) => socket.once('close', resolve));
  socket.resume();
  client.end();
  await ended;
  socket.end();
  await closed;
  assert.equal(received(), payload.length);
  assert.deepEqual(Buffer.concat(got), payload, 'every byte, in order');
  assert.equal(dataEvents, 0, "no 'data' event: the bytes went only where the receiver said");
  assert.ok(targets.length > 10, `the stream spans many targets (${targets.length})`);
});
