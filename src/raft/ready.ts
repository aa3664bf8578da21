import type { Entry, HardState, Message, ReadState, Snapshot, SoftState } from './types.ts';

/**
 * What the host must do before the core can go on. Process the fields in this order,
 * then call `advance(ready)`:
 *
 * 1. Persist `snapshot` (if any), then `entries`, then `hardState` (if any), in one
 *    synced write when `mustSync` is true. Nothing below may happen before that write
 *    is durable: a vote or an append acknowledged before it is on disk can be lost in
 *    a crash, which breaks election safety and durability.
 * 2. Send `messages`. They may be sent in any order and may be lost.
 * 3. Apply `snapshot` to the state machine (if any), then `committedEntries` in order.
 * 4. Serve `readStates` once the state machine has applied their index.
 *
 * `softState` is informational and needs no persistence.
 */
export interface Ready {
  readonly softState: SoftState | null;
  readonly hardState: HardState | null;
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly readStates: readonly ReadState[];
  readonly mustSync: boolean;
}
