// Public API of the NBD layer: the server that serves any BlockDevice, its export options, the
// client that attaches an export as a BlockDevice, and the typed errors. Other layers import
// from here, never from the modules behind it.

export { NbdServer, type ServerOptions, type ListenAddress } from './server.js';
export type { ExportOptions } from './export.js';
export type { ConnectionLimits } from './connection.js';
export { NbdError, isNbdError, type NbdErrorCode } from './errors.js';
export { loopbackAddress } from './loopback.js';
export { NbdClientDevice } from './client/device.js';
export type { NbdClientOptions, TlsFiles } from './client/options.js';
export { parseNbdUri, describeAddress, type NbdTarget, type NbdAddress } from './client/uri.js';
