import { randomBytes } from 'node:crypto';

/** A random non-zero uint64, as the contract asks of request ids (dedupe is by id). */
export function newRequestId(): string {
  const id = randomBytes(8).readBigUInt64BE();
  return (id === 0n ? 1n : id).toString();
}
