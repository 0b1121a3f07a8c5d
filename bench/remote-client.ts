// Run by bench/remote.ts inside a node's namespace: 1 MiB sequential writes of SIZE MiB at QD16
// through llraid's NBD client to URI, with attach epoch EPOCH (member-serve requires one; "-" for
// none, as nbdkit, which does not accept it); prints MiB/s.
// Usage: node --import tsx bench/remote-client.ts URI SIZE_MIB EPOCH CERT KEY CA
import { NbdClientDevice } from '../src/nbd/index.js';

const [uri, sizeMib, epoch, cert, key, ca] = process.argv.slice(2) as [string, string, string, string, string, string];
const MiB = 1024 * 1024;
const size = Number(sizeMib) * MiB;
const dev = await NbdClientDevice.connect({ uri, tls: { cert, key, ca }, ...(epoch === '-' ? {} : { epoch: BigInt(epoch) }) });
const t0 = performance.now();
let next = 0;
await Promise.all(Array.from({ length: 16 }, async () => {
  const buf = Buffer.alloc(MiB, 0x5a);
  for (let at = next; at + MiB <= size; at = next) {
    next += MiB;
    await dev.write(at, buf);
  }
}));
await dev.flush();
const ms = performance.now() - t0;
await dev.close();
process.stdout.write(`${(size / MiB / (ms / 1000)).toFixed(1)}\n`);
