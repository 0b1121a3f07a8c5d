// One attach of a member export through a member service, let go at once: NBD over TLS with an
// attach epoch (the service writes it as the member's record before it answers, fencing every
// connection with a lower one). CreateVolume uses it to know a member is exported; NodeStage of
// a volume this node just took, to make its own member service let go of the node's members for
// a previous owner's engine (an engine here then opens them itself, with the same epoch).

import { NbdClientDevice } from '../nbd/index.js';
import type { TlsFiles } from './member-tls.js';

export type MemberProbe = (uri: string, tls: TlsFiles, epoch: number) => Promise<void>;

export const attachOnce: MemberProbe = async (uri, tls, epoch) => {
  const device = await NbdClientDevice.connect({ uri, tls, epoch: BigInt(epoch), connectTimeoutMs: 5_000 });
  await device.close();
};
