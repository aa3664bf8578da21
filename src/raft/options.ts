import { assert } from '../util/assert.ts';

/** Every limit and timing of the core. Time is counted in ticks; the host decides how long a tick is. */
export interface RaftOptions {
  /** A follower that hears nothing for this many ticks (plus a random extra of up to as many again) campaigns. */
  readonly electionTimeoutTicks: number;
  /** A leader sends heartbeats this often. Must be well below the election timeout. */
  readonly heartbeatIntervalTicks: number;
  /** §9.6: ask for votes without raising the term first, so an isolated node cannot depose a healthy leader. */
  readonly preVote: boolean;
  /** A leader that has not heard from a quorum within an election timeout steps down. */
  readonly checkQuorum: boolean;
  /** Entries per AppendEntries stop after roughly this many bytes (at least one entry is sent). */
  readonly appendBatchBytesMax: number;
  /** AppendEntries batches in flight to one follower before waiting for acknowledgements. */
  readonly inflightMessagesMax: number;
  /** InstallSnapshot sends the snapshot in chunks of at most this many bytes. */
  readonly snapshotChunkBytesMax: number;
  /** Snapshot chunks sent to one follower before waiting for acknowledgements. */
  readonly snapshotChunksInFlightMax: number;
  /** Linearizable reads waiting for leadership confirmation. Past it, readIndex refuses. */
  readonly pendingReadsMax: number;
  /** Entries the leader accepts beyond its commit index. Past it, propose refuses (backpressure). */
  readonly uncommittedEntriesMax: number;
  /** A learner is promoted only when it is at most this many entries behind the commit index. */
  readonly learnerPromotionLagEntriesMax: number;
  /** Committed entries handed to the host in one Ready stop after roughly this many bytes. */
  readonly committedEntriesBytesMax: number;
}

export const DEFAULT_RAFT_OPTIONS: RaftOptions = {
  electionTimeoutTicks: 10,
  heartbeatIntervalTicks: 1,
  preVote: true,
  checkQuorum: true,
  appendBatchBytesMax: 64 * 1024,
  inflightMessagesMax: 64,
  snapshotChunkBytesMax: 256 * 1024,
  snapshotChunksInFlightMax: 4,
  pendingReadsMax: 4096,
  uncommittedEntriesMax: 8192,
  learnerPromotionLagEntriesMax: 64,
  committedEntriesBytesMax: 1024 * 1024,
};

export function validateRaftOptions(options: RaftOptions): void {
  const positive: (keyof RaftOptions)[] = [
    'electionTimeoutTicks',
    'heartbeatIntervalTicks',
    'appendBatchBytesMax',
    'inflightMessagesMax',
    'snapshotChunkBytesMax',
    'snapshotChunksInFlightMax',
    'pendingReadsMax',
    'uncommittedEntriesMax',
    'committedEntriesBytesMax',
  ];
  for (const key of positive) {
    const value = options[key];
    assert(
      Number.isSafeInteger(value) && (value as number) > 0,
      `raft option ${key} must be a positive integer: ${value}`,
    );
  }
  assert(
    options.electionTimeoutTicks > options.heartbeatIntervalTicks,
    `electionTimeoutTicks (${options.electionTimeoutTicks}) must exceed heartbeatIntervalTicks (${options.heartbeatIntervalTicks})`,
  );
  assert(
    Number.isSafeInteger(options.learnerPromotionLagEntriesMax) &&
      options.learnerPromotionLagEntriesMax >= 0,
    `learnerPromotionLagEntriesMax must be an integer >= 0: ${options.learnerPromotionLagEntriesMax}`,
  );
}
