import type { Entry, HardState, Message, ReadState, Snapshot, SoftState } from './types.ts';

/**
 * What the host must do before the core can go on. Process the fields in this order,
 * then call `advance(ready)`:
 *
 * 1. Send `earlyMessages` at once: they need not wait for this Ready's write. They are
 *    a leader's AppendEntries and Heartbeats of a term that is already durable. A
 *    leader may replicate entries before they are on its own disk (Raft thesis
 *    §10.2.1) because it counts its own copy toward the commit only once the host
 *    reports it durable (step 3). While the write is in flight, the host may also
 *    take and send the early messages that steps, ticks and proposals produce
 *    meanwhile (`takeEarlyMessages()`), so that replication never waits for the
 *    leader's own fsync.
 * 2. Persist `snapshot` (if any), then `entries`, then `hardState` (if any), in one
 *    atomic write, synced when `mustSync` is true. A Ready that needs no sync changes
 *    only the commit index: a node that loses it in a crash restarts from an older
 *    one and learns the rest again from the leader, and it applies nothing beyond
 *    what it then knows to be committed.
 * 3. Once that write is durable, report it: `persisted(index, term)` of the last entry
 *    in `entries` (if any). Nothing below may happen before: a vote or an append
 *    acknowledged before it is on disk can be lost in a crash, which breaks election
 *    safety and durability.
 * 4. Send `messages`. They may be sent in any order and may be lost.
 * 5. Apply `snapshot` to the state machine (if any), then `committedEntries` in order.
 *    Every one of them is on the disks of a majority of voters, if not yet on this
 *    node's own (a leader commits on its followers' copies while its write runs). So
 *    when the Ready holds no snapshot, the host may apply them before or while step 2
 *    runs: nothing this node writes makes them more durable. For the same reason it may
 *    take and apply the entries that commit while step 2 runs (`takeEarlyCommitted()`).
 *    A snapshot is applied only once stored, and its committed entries after it.
 * 6. Serve `readStates` once the state machine has applied their index, and fail the
 *    reads named in `refusedReads`.
 *
 * `softState` is informational and needs no persistence.
 */
export interface Ready {
  readonly softState: SoftState | null;
  readonly hardState: HardState | null;
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
  readonly committedEntries: readonly Entry[];
  /** Sent before or while this Ready is persisted (step 1). */
  readonly earlyMessages: readonly Message[];
  /** Sent only once this Ready is durable (step 4). */
  readonly messages: readonly Message[];
  readonly readStates: readonly ReadState[];
  /**
   * Contexts of reads asked of this node (readIndex returned true) that the core gave
   * up on: the leader refused them (its read queue full, or it no longer leads), or this
   * node lost its leadership or its read queue filled before it could take them. (A
   * request the network duplicated may also be confirmed by its other copy: the host
   * takes whichever answer comes first.)
   */
  readonly refusedReads: readonly string[];
  /** Whether the write of step 2 must be synced: new entries, a snapshot, a term or a vote. */
  readonly mustSync: boolean;
}
