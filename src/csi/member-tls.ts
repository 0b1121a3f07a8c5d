// The TLS material an engine of a replicated volume presents to the member services, and the
// name their certificate carries: the chart's Secret, mounted at LLRAID_TLS_DIR.

import path from 'node:path';

/** The name in every member service's certificate (the chart makes one for the cluster). */
export const MEMBER_TLS_NAME = 'llraid-member';

/** The files of LLRAID_TLS_DIR (the chart's Secret: ca.crt, tls.crt, tls.key). */
export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

export function tlsFilesIn(dir: string): TlsFiles {
  return { cert: path.join(dir, 'tls.crt'), key: path.join(dir, 'tls.key'), ca: path.join(dir, 'ca.crt') };
}
