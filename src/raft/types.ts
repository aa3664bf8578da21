import type { LogIndex, NodeId, Term } from '../util/ids.ts';

/**
 * Log entries. A `normal` entry carries opaque application data. A `noop` is what a
 * new leader appends so that it can commit entries from earlier terms (§5.4.2). A
 * `config` entry changes membership by one server (§6, single-server changes).
 */
export type Entry =
  | {
      readonly kind: 'normal';
      readonly term: Term;
      readonly index: LogIndex;
      readonly data: Uint8Array;
    }
  | { readonly kind: 'noop'; readonly term: Term; readonly index: LogIndex }
  | {
      readonly kind: 'config';
      readonly term: Term;
      readonly index: LogIndex;
      readonly change: ConfigChange;
    };

/**
 * One-server membership changes. A node joins as a learner, catches up, and is then
 * promoted. Removing works for voters and learners alike.
 */
export type ConfigChange =
  | { readonly type: 'addLearner'; readonly nodeId: NodeId }
  | { readonly type: 'promoteLearner'; readonly nodeId: NodeId }
  | { readonly type: 'removeNode'; readonly nodeId: NodeId };

/** Who votes and who only replicates. Lists are kept sorted so equal configs compare equal. */
export interface ClusterConfig {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/** The state that must be on stable storage before any message that depends on it is sent. */
export interface HardState {
  readonly term: Term;
  readonly votedFor: NodeId | null;
  readonly commitIndex: LogIndex;
}

export interface SnapshotMetadata {
  readonly index: LogIndex;
  readonly term: Term;
  /** Membership as of `index`: a snapshot replaces the config entries it covers. */
  readonly config: ClusterConfig;
}

export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  /**
   * The state machine's state at `index`. A store may keep it on disk and read it here,
   * when asked (src/storage/snapshot-read.ts): read it only to use it.
   */
  readonly data: Uint8Array;
}

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/** Volatile state the host may show but need not persist. */
export interface SoftState {
  readonly role: Role;
  readonly leaderId: NodeId | null;
}

/** A linearizable read may be served once the state machine has applied `index`. */
export interface ReadState {
  readonly context: string;
  readonly index: LogIndex;
}

interface Envelope {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
}

/**
 * Peer messages, named after the paper's RPCs. The etcd-io/raft name of each is in the
 * comment. Every message carries the sender's term; term handling happens once, before
 * the role-specific step function sees the message.
 */
export type Message =
  /** MsgVote / MsgPreVote. `preVote` asks "would you vote for me" without a term change (§9.6). */
  | (Envelope & {
      readonly type: 'RequestVote';
      readonly preVote: boolean;
      readonly lastLogIndex: LogIndex;
      readonly lastLogTerm: Term;
      /** Set when a leader told this candidate to campaign (TimeoutNow, §3.10). */
      readonly leadershipTransfer: boolean;
    })
  /** MsgVoteResp / MsgPreVoteResp. */
  | (Envelope & {
      readonly type: 'RequestVoteResponse';
      readonly preVote: boolean;
      readonly granted: boolean;
    })
  /**
   * MsgApp. `commitNotice` marks an empty one that only carries a new commit index to a
   * follower known to hold everything before it: an answer would tell the leader
   * nothing, so the follower answers only a refusal. Absent (an older leader, or any
   * other append) means answer as always.
   */
  | (Envelope & {
      readonly type: 'AppendEntries';
      readonly prevLogIndex: LogIndex;
      readonly prevLogTerm: Term;
      readonly entries: readonly Entry[];
      readonly leaderCommit: LogIndex;
      readonly commitNotice?: true;
    })
  /**
   * MsgAppResp. On success `matchIndex` is the last index known to match the leader.
   * On rejection `rejectedIndex` is the prevLogIndex that failed, and the hint tells the
   * leader where to retry: the follower's term at that position (if any) and the first
   * index the follower holds of that term (§5.3, "fast backtracking").
   */
  | (Envelope & {
      readonly type: 'AppendEntriesResponse';
      readonly success: boolean;
      readonly matchIndex: LogIndex;
      readonly rejectedIndex: LogIndex;
      readonly hintIndex: LogIndex;
      readonly hintTerm: Term | null;
    })
  /**
   * MsgHeartbeat. `leaderCommit` never exceeds what the follower is known to hold.
   * `readSequence` is the newest read the leader wants confirmed: an answer confirms
   * leadership for every read up to it (§6.4, ReadIndex).
   */
  | (Envelope & {
      readonly type: 'Heartbeat';
      readonly leaderCommit: LogIndex;
      readonly readSequence: number;
    })
  /** MsgHeartbeatResp, echoing the heartbeat's `readSequence`. */
  | (Envelope & { readonly type: 'HeartbeatResponse'; readonly readSequence: number })
  /** MsgSnap, split into chunks of at most `snapshotChunkBytesMax`. */
  | (Envelope & {
      readonly type: 'InstallSnapshot';
      readonly metadata: SnapshotMetadata;
      readonly offset: number;
      /** The leader's transfer round, echoed in the answer. */
      readonly round: number;
      readonly chunk: Uint8Array;
      readonly done: boolean;
    })
  /**
   * The follower's answer to one chunk. `nextOffset` is where it wants the next chunk;
   * once `installed`, `matchIndex` is its last log index.
   */
  | (Envelope & {
      readonly type: 'InstallSnapshotResponse';
      readonly snapshotIndex: LogIndex;
      /** The offset of the chunk this answers, so the leader can tell stale answers apart. */
      readonly chunkOffset: number;
      readonly round: number;
      readonly nextOffset: number;
      readonly installed: boolean;
      readonly matchIndex: LogIndex;
    })
  /** MsgTimeoutNow: the leader asks a caught-up follower to campaign at once. */
  | (Envelope & { readonly type: 'TimeoutNow' })
  /** MsgReadIndex forwarded by a follower to its leader. */
  | (Envelope & { readonly type: 'ReadIndexRequest'; readonly context: string })
  /** MsgReadIndexResp. `readIndex` is null when the leader could not serve the read. */
  | (Envelope & {
      readonly type: 'ReadIndexResponse';
      readonly context: string;
      readonly readIndex: LogIndex | null;
      /**
       * With a null readIndex: the sender does not lead (it is no longer, or never was,
       * the leader of its term), rather than being a leader too busy to take the read.
       * Absent from peers older than this field.
       */
      readonly notLeader?: boolean;
    });

export type MessageType = Message['type'];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

/** A message before the core stamps its own id as the sender. */
export type OutgoingMessage = Message extends infer M
  ? M extends Message
    ? Omit<M, 'from'>
    : never
  : never;

export function isResponse(message: Message): boolean {
  switch (message.type) {
    case 'RequestVoteResponse':
    case 'AppendEntriesResponse':
    case 'HeartbeatResponse':
    case 'InstallSnapshotResponse':
    case 'ReadIndexResponse':
      return true;
    case 'RequestVote':
    case 'AppendEntries':
    case 'Heartbeat':
    case 'InstallSnapshot':
    case 'TimeoutNow':
    case 'ReadIndexRequest':
      return false;
  }
}

/** The bytes an entry adds to an AppendEntries batch; used only for flow control. */
export function entrySizeBytes(entry: Entry): number {
  const headerBytes = 24;
  return entry.kind === 'normal' ? headerBytes + entry.data.byteLength : headerBytes;
}
