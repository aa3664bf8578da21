import type { Holder } from '../lock/index.ts';
import type { ApiContext } from './context.ts';
import { ApiError } from './errors.ts';
import { toUint64, type WireLeader } from './proto.ts';

/**
 * An election's leader on the wire (message LeaderInfo). `heldMs`: how long this node
 * has seen it lead; `ownerVisible`: whether the caller may read the election, as owner
 * metadata is shown only to those (see visibleHolders in acquire.ts).
 */
export function wireLeader(holder: Holder, heldMs: number, ownerVisible: boolean): WireLeader {
  return {
    session_id: toUint64(holder.sessionId),
    owner: ownerVisible ? holder.owner : '',
    value: holder.value ?? '',
    fencing_token: toUint64(holder.token),
    campaign_index: toUint64(holder.requestIndex),
    held_ms: toUint64(heldMs),
  };
}

/**
 * The leader of `election` in the applied state `locks`, or null when nobody leads.
 *
 * An election's one holder always carries a value (Campaign gives it one, maybe empty).
 * A holder without one holds the name as a lock or a semaphore: reading it as a leader
 * would announce a lock holder as the leader of an election that does not exist, so the
 * caller is told what the name is (kindMismatch), as the state machine tells a Campaign.
 * `field`: the request field that named it, for the error.
 */
export function leaderOf(
  locks: ApiContext['node']['locks'],
  election: string,
  field: string,
): Holder | null {
  const holders = locks.holdersOf(election);
  const [first] = holders;
  if (first === undefined) return null;
  if (first.value === undefined || holders.length > 1) {
    const kind = first.permits === undefined ? 'a lock' : 'a semaphore';
    throw new ApiError(
      'kindMismatch',
      `${field}: ${JSON.stringify(election)} is held as ${kind}, not an election`,
    );
  }
  return first;
}

/** How long this node has seen `holder` lead `election`; 0 where nothing measures it. */
export function leaderHeldMs(context: ApiContext, election: string, holder: Holder): number {
  return context.activity?.heldMs(election, holder.sessionId) ?? 0;
}
