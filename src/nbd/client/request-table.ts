// The client's requests in flight, by cookie. A request stays here from the moment it is queued
// for the socket until its last reply chunk (or the device fails): the reply parser finds it by
// the cookie the server echoes, and the deadline check looks at the oldest (a Map keeps insertion
// order, and a request leaves it only when answered).

import type { Extent } from '../../block/block-device.js';

export class PendingRequest {
  /** READ: bytes the reply chunks have filled so far (they must cover the request exactly). */
  covered = 0;
  /** The first error chunk's (or simple reply's) NBD error number; 0 while none came. */
  errno = 0;
  message = '';

  constructor(
    /** The low 32 bits of the cookie; the high 32 are always 0. */
    readonly cookie: number,
    readonly type: number,
    readonly offset: number,
    readonly length: number,
    /** READ: where the data goes (a view of the caller's buffer). */
    readonly dest: Buffer | undefined,
    /** BLOCK_STATUS: where the `base:allocation` extents go. */
    readonly extents: Extent[] | undefined,
    /** performance.now() when the request was queued: its deadline starts there. */
    readonly started: number,
    readonly resolve: () => void,
    readonly reject: (err: Error) => void,
  ) {}
}

export class RequestTable {
  private readonly byCookie = new Map<number, PendingRequest>();
  private nextCookie = 0;

  get size(): number {
    return this.byCookie.size;
  }

  add(
    type: number,
    offset: number,
    length: number,
    dest: Buffer | undefined,
    extents: Extent[] | undefined,
    resolve: () => void,
    reject: (err: Error) => void,
  ): PendingRequest {
    // 2^32 cookies go round long before one request could still hold one; skip any that does.
    do this.nextCookie = (this.nextCookie + 1) >>> 0;
    while (this.byCookie.has(this.nextCookie));
    const p = new PendingRequest(this.nextCookie, type, offset, length, dest, extents, performance.now(), resolve, reject);
    this.byCookie.set(p.cookie, p);
    return p;
  }

  get(cookieHi: number, cookieLo: number): PendingRequest | undefined {
    return cookieHi === 0 ? this.byCookie.get(cookieLo) : undefined;
  }

  remove(p: PendingRequest): void {
    this.byCookie.delete(p.cookie);
  }

  /** The request waiting longest, if any. */
  oldest(): PendingRequest | undefined {
    for (const p of this.byCookie.values()) return p;
    return undefined;
  }

  /** Removes and returns every request (the device failed). */
  takeAll(): PendingRequest[] {
    const all = [...this.byCookie.values()];
    this.byCookie.clear();
    return all;
  }
}
