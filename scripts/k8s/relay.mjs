// A byte relay for the control plane's bridge (control-plane.sh, LLRAID_CLUSTER_BRIDGE=1):
//
//   node relay.mjs <listen> <target>     each one tcp:HOST:PORT or unix:PATH
//
// Every connection accepted on <listen> is piped both ways to a new connection to <target>.
// Two of them carry the API server from 127.0.0.1 in the machine's namespace into the cluster's
// hub namespace: one there listens on the bridge address and dials a unix socket (paths are not
// namespaced), one here listens on that socket and dials 127.0.0.1. TLS passes through untouched.
// Runs until SIGTERM or SIGINT.
import { createServer, connect } from 'node:net';
import { rmSync } from 'node:fs';
import console from 'node:console';
import process from 'node:process';

function parse(spec) {
  const unix = /^unix:(.+)$/.exec(spec);
  if (unix) return { path: unix[1] };
  const tcp = /^tcp:(.+):(\d+)$/.exec(spec);
  if (tcp) return { host: tcp[1], port: Number(tcp[2]) };
  console.error(`relay: expected tcp:HOST:PORT or unix:PATH, found ${JSON.stringify(spec)}`);
  process.exit(2);
}

const [listenSpec, targetSpec] = process.argv.slice(2);
if (!listenSpec || !targetSpec) {
  console.error('usage: relay.mjs <listen> <target> (tcp:HOST:PORT or unix:PATH each)');
  process.exit(2);
}
const listen = parse(listenSpec);
const target = parse(targetSpec);
// Only a socket left by a relay that died is replaced; the state dir is the run's own.
if (listen.path) rmSync(listen.path, { force: true });

const server = createServer((inbound) => {
  const outbound = connect(target);
  inbound.pipe(outbound);
  outbound.pipe(inbound);
  // One side failing ends both: the client sees a reset as it would from the API server itself.
  const end = () => {
    inbound.destroy();
    outbound.destroy();
  };
  inbound.on('error', end);
  outbound.on('error', end);
  inbound.on('close', end);
  outbound.on('close', end);
});
server.on('error', (err) => {
  console.error(`relay: cannot listen on ${listenSpec}: ${err.message}`);
  process.exit(1);
});
server.listen(listen, () => console.error(`relay: ${listenSpec} -> ${targetSpec}`));
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    server.close();
    process.exit(0);
  });
}
