// The namespace cluster of test/support/netns.ts: nodes reach each other over TCP through real
// processes in their namespaces, a partition cuts a node off within a bounded time and heal
// restores it, nothing routes out of the cluster, and destroy leaves no namespace behind.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { Netns, cleanupLeftovers, requireIp, SUBNET_PREFIX } from '../support/netns.js';

const PORT = 7000;

/** A TCP echo server on `host:port`, printing `listening` once it is. */
const ECHO_SERVER = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
net.createServer((s) => s.pipe(s)).listen(Number(port), host, () => console.log('listening'));
`;

/** Sends argv[3] to `host:port` and prints what comes back (at most 5 s). */
const ECHO_CLIENT = `
const net = require('node:net');
const [host, port, msg] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) }, () => s.write(msg));
let got = '';
s.on('data', (d) => { got += d; if (got.length >= msg.length) { console.log(got); s.destroy(); } });
s.on('error', (e) => { console.error(e.code); process.exit(2); });
setTimeout(() => { console.error('timeout'); process.exit(3); }, 5000).unref();
`;

function namespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n !== '');
}

async function waitForOutput(read: () => string, text: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!read().includes(text)) {
    if (Date.now() > deadline) throw new Error(`no ${JSON.stringify(text)} within ${ms} ms; output: ${read()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a cluster of three namespaces', () => {
  let net: Netns;
  before(async () => {
    net = await Netns.create(['a', 'b', 'c']);
  });
  after(async () => {
    await net.destroy();
  });

  test('each node has its own address in the cluster subnet and loopback up, and no route out', async () => {
    const addrs = net.addrs();
    assert.deepEqual(Object.keys(addrs), ['a', 'b', 'c']);
    assert.equal(new Set(Object.values(addrs)).size, 3);
    for (const node of net.nodes) {
      assert.ok(net.addr(node).startsWith(SUBNET_PREFIX));
      const { stdout: addrOut } = await net.exec(node, 'ip', ['-br', 'addr']);
      assert.match(addrOut, new RegExp(`^eth0\\S*\\s+UP\\s+${net.addr(node).replaceAll('.', '\\.')}/24`, 'm'));
      assert.match(addrOut, /^lo\s+UNKNOWN\s+127\.0\.0\.1\/8/m);
      // The only route is the cluster's own subnet: nothing a test sends can leave it.
      const { stdout: routes } = await net.exec(node, 'ip', ['-4', 'route']);
      assert.deepEqual(
        routes.trim().split('\n').map((l) => l.split(' ')[0]),
        [`${SUBNET_PREFIX}0/24`],
      );
    }
  });

  test('a server in node a answers a client in node b over TCP', async () => {
    const server = net.spawn('a', process.execPath, ['-e', ECHO_SERVER, net.addr('a'), String(PORT)]);
    try {
      await waitForOutput(server.stdout, 'listening', 10_000);
      const { stdout } = await net.exec('b', process.execPath, ['-e', ECHO_CLIENT, net.addr('a'), String(PORT), 'hello from b']);
      assert.equal(stdout.trim(), 'hello from b');
      // Loopback in a node is its own: b has nothing listening on PORT.
      assert.equal(await net.probeTcp('b', '127.0.0.1', PORT), 'refused');
      assert.equal(await net.probeTcp('a', '127.0.0.1', PORT), 'refused', 'the server listens on a\'s address only');
    } finally {
      await server.stop();
    }
  });

  test('partition cuts a node off within a bounded time, the others keep talking, heal restores it', async () => {
    const servers = ['a', 'b', 'c'].map((n) => net.spawn(n, process.execPath, ['-e', ECHO_SERVER, net.addr(n), String(PORT)]));
    try {
      for (const s of servers) await waitForOutput(s.stdout, 'listening', 10_000);
      assert.equal(await net.probeTcp('a', net.addr('b'), PORT), 'connected');

      await net.partition('b');
      assert.ok(net.isPartitioned('b'));
      const start = Date.now();
      const fromA = await net.probeTcp('a', net.addr('b'), PORT, 1500);
      assert.notEqual(fromA, 'connected');
      assert.ok(['timeout', 'unreachable'].includes(fromA), `a → b during the partition: ${fromA}`);
      assert.ok(Date.now() - start < 10_000, 'the failed connect is bounded');
      const fromB = await net.probeTcp('b', net.addr('c'), PORT, 1500);
      assert.ok(['timeout', 'unreachable'].includes(fromB), `b → c during the partition: ${fromB}`);
      // a and c are not cut off from each other.
      assert.equal(await net.probeTcp('a', net.addr('c'), PORT), 'connected');
      assert.equal(await net.probeTcp('c', net.addr('a'), PORT), 'connected');

      await net.heal('b');
      assert.ok(!net.isPartitioned('b'));
      await net.waitForPort('a', net.addr('b'), PORT, 10_000);
      assert.equal(await net.probeTcp('b', net.addr('c'), PORT), 'connected');
      const { stdout } = await net.exec('c', process.execPath, ['-e', ECHO_CLIENT, net.addr('b'), String(PORT), 'after heal']);
      assert.equal(stdout.trim(), 'after heal');
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  });

  test('waitForPort gives up within its bound when nothing listens', async () => {
    const start = Date.now();
    await assert.rejects(net.waitForPort('a', net.addr('c'), PORT + 1, 800), /does not accept connections from a within 800 ms \(last: refused\)/);
    assert.ok(Date.now() - start < 10_000);
  });

  test('exec rejects with the command and its output when it fails', async () => {
    await assert.rejects(net.exec('a', 'sh', ['-c', 'echo oops >&2; exit 3']), /exit 3[\s\S]*stderr: oops/);
    await assert.rejects(net.exec('a', 'sleep', ['5'], { timeoutMs: 300 }), /killed after 300 ms/);
  });
});

test('destroy stops the processes of the cluster and leaves no namespace behind', async () => {
  const net = await Netns.create(['x', 'y']);
  const mine = net.namespaces();
  assert.equal(mine.length, 3);
  assert.ok(mine.every((ns) => namespaces().includes(ns)));
  const sleeper = net.spawn('x', 'sleep', ['600']);
  // A process that ignores SIGTERM: destroy still ends it (SIGKILL after its bounded grace).
  const stubborn = net.spawn('y', 'sh', ['-c', 'trap "" TERM; echo ready; while :; do sleep 1; done']);
  await waitForOutput(stubborn.stdout, 'ready', 10_000);
  const start = Date.now();
  await net.destroy();
  assert.ok(Date.now() - start < 15_000, 'destroy is bounded');
  assert.ok(sleeper.hasExited() && stubborn.hasExited());
  assert.deepEqual(namespaces().filter((ns) => mine.includes(ns)), []);
  await net.destroy(); // twice is fine
  assert.throws(() => net.spawn('x', 'true', []), /was destroyed/);
});

test('the namespaces of a dead earlier run are cleaned up', async () => {
  // A test process that died without cleaning up: its pid no longer exists.
  const dead = spawn('true');
  const deadPid = dead.pid!;
  await new Promise((r) => dead.once('exit', r));
  const stale = `llr-${deadPid}-1-hub`;
  execFileSync('ip', ['netns', 'add', stale]);
  try {
    // Every Netns.create cleans leftovers first and test files run in parallel, so another may
    // remove it between the add and this call (CI of ca43fdd): then this one has nothing to report.
    const cleaned = cleanupLeftovers();
    assert.ok(!namespaces().includes(stale), 'the dead run\'s namespace is gone');
    assert.ok(cleaned.every((ns) => !namespaces().includes(ns)), 'what it reports is gone too');
  } finally {
    if (namespaces().includes(stale)) execFileSync('ip', ['netns', 'del', stale]);
  }
});

test('bad node names are refused', async () => {
  await assert.rejects(Netns.create([]), /expected 1 to 200 nodes/);
  await assert.rejects(Netns.create(['A']), /must be 1 to 10 of \[a-z0-9\]/);
  await assert.rejects(Netns.create(['a', 'a']), /node names repeat/);
});

test('not being root, or having no `ip`, is a clear error, never a skip', () => {
  assert.throws(() => requireIp(65534), /netns: network namespaces need root; this test process runs as uid 65534/);
  assert.throws(() => requireIp(0, ['/nonexistent']), /netns: `ip` not found in \/nonexistent: install iproute2/);
  assert.match(requireIp(), /\/ip$/);
});
