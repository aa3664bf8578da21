import { Packr } from 'msgpackr';
import type { LockCommand, LockSnapshot } from '../lock/index.ts';

/**
 * What a normal log entry carries: a lock command, and the id of the proposal that
 * created it so the node that took the client's call can answer it when it applies the
 * entry. Timer commands the leader proposes have no proposal id.
 */
export interface EntryPayload {
  readonly proposalId: string | null;
  readonly command: LockCommand;
}

// Options are pinned: the encoding is part of what every replica must agree on.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encodeEntry(payload: EntryPayload): Uint8Array {
  return packr.pack({ p: payload.proposalId, c: payload.command });
}

export function decodeEntry(data: Uint8Array): EntryPayload {
  const decoded = packr.unpack(data) as { p: string | null; c: LockCommand };
  return { proposalId: decoded.p, command: decoded.c };
}

export function encodeLockSnapshot(snapshot: LockSnapshot): Uint8Array {
  return packr.pack(snapshot);
}

export function decodeLockSnapshot(data: Uint8Array): LockSnapshot {
  return packr.unpack(data) as LockSnapshot;
}
