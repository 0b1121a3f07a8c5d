// Public API of the NBD layer: the server that serves any BlockDevice, its export options (or an
// ExportSource that attaches exports on demand and may fence their connections), the client that
// attaches an export as a BlockDevice, and the typed errors. Other layers import from here, never from the modules behind it.

export { NbdServer, type ServerOptions, type ListenAddress } from './server.js';
export { NbdExport, isRefusal, type ExportOptions, type ExportSource, type Attachment, type AttachRequest, type ExportRefusal, type ServedConnection } from './export.js';
export type { ConnectionLimits, TlsCredentials } from './connection.js';
export { NbdError, isNbdError, type NbdErrorCode } from './errors.js';
export { loopbackAddress } from './loopback.js';
export { NbdClientDevice } from './client/device.js';
export type { NbdClientOptions, TlsFiles } from './client/options.js';
export { parseNbdUri, describeAddress, type NbdTarget, type NbdAddress } from './client/uri.js';
