import { assert, assertNever } from '../util/assert.ts';
import { type LogIndex, logIndex, type NodeId, type Term, term as toTerm } from '../util/ids.ts';
import { withFields } from '../util/objects.ts';
import type { Prng } from '../util/prng.ts';
import { FollowerReplication } from './follower-replication.ts';
import { LeaderReplication } from './leader-replication.ts';
import { RaftLog } from './log.ts';
import { type ConfigChangeRejection, changedConfig, configChangeRejection } from './membership.ts';
import { DEFAULT_RAFT_OPTIONS, type RaftOptions, validateRaftOptions } from './options.ts';
import { Progress } from './progress.ts';
import { majority, quorumMatchIndex, tallyVotes } from './quorum.ts';
import { LeaderReads } from './read-index.ts';
import type { Ready } from './ready.ts';
import { normalizeConfig, type Storage } from './storage.ts';
import type {
  ClusterConfig,
  ConfigChange,
  Entry,
  HardState,
  Message,
  MessageOf,
  OutgoingMessage,
  ReadState,
  Role,
  Snapshot,
  SoftState,
} from './types.ts';

export type ProposeRejection =
  | 'notLeader'
  | 'transferringLeadership'
  | 'tooManyUncommitted'
  | 'configChangePending'
  | ConfigChangeRejection;

export type ProposeResult =
  | { readonly ok: true; readonly index: LogIndex; readonly term: Term }
  | { readonly ok: false; readonly reason: ProposeRejection; readonly leaderId: NodeId | null };

export type TransferResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'notLeader' | 'notAVoter' | 'alreadyLeader' };

type CampaignKind = 'preElection' | 'election' | 'transfer';

export interface RaftConfig {
  readonly id: NodeId;
  readonly storage: Storage;
  /** Only election timeouts are random; they come from this seeded generator. */
  readonly prng: Prng;
  readonly options?: Partial<RaftOptions>;
}

/**
 * The pure Raft core, shaped after etcd-io/raft. It never reads a clock, draws
 * randomness only from the injected PRNG, and does no I/O: the host feeds it ticks and
 * messages and carries out each `Ready` (see ready.ts for the ordering rules).
 *
 * Safety properties this code maintains (Raft paper, Figure 3):
 * - Election Safety: at most one leader per term. A node votes at most once per term
 *   and persists the vote before the answer leaves (Ready ordering).
 * - Leader Append-Only: a leader never overwrites or deletes entries in its own log.
 * - Log Matching: AppendEntries carries prevLogIndex/prevLogTerm, and a follower
 *   truncates a conflicting suffix before appending.
 * - Leader Completeness: a vote goes only to a candidate whose log is at least as up to
 *   date, and a leader commits by counting replicas only for entries of its own term.
 * - State Machine Safety: follows from the above; the host applies committed entries
 *   in index order.
 * - Durability: an entry commits only once a majority of voters hold it on disk. A
 *   leader's appends may leave before its own write is durable (thesis §10.2.1), but it
 *   counts its own copy only once the host reports it (`persisted`).
 *
 * Roles are switched by swapping the `stepRole` and `tickRole` functions. The leader's
 * replication, the follower's, and the leader's reads are parts this class owns (see
 * leader-replication.ts, follower-replication.ts, read-index.ts); the rules of membership
 * changes are in membership.ts.
 */
export class Raft {
  readonly id: NodeId;
  readonly log: RaftLog;
  private readonly options: RaftOptions;
  private readonly prng: Prng;

  private currentTerm: Term;
  private vote: NodeId | null;
  private currentRole: Role = 'follower';
  private leader: NodeId | null = null;
  private clusterConfig: ClusterConfig;
  /** The index of the entry or snapshot that `clusterConfig` reflects. */
  private configIndex: LogIndex;

  private readonly progress = new Map<NodeId, Progress>();
  private readonly votes = new Map<NodeId, boolean>();
  private electionElapsedTicks = 0;
  private heartbeatElapsedTicks = 0;
  private randomizedElectionTimeoutTicks = 0;
  private leadTransferee: NodeId | null = null;
  private transferElapsedTicks = 0;
  /** The leader proposes no new config change until the entry at this index is applied. */
  private pendingConfigIndex: LogIndex = logIndex(0);

  /** Replication as the leader: what each follower is sent, and its answers (§5.3, §7). */
  private readonly leading: LeaderReplication;
  /** Replication as a follower: the leader's appends and snapshots, and our answers. */
  private readonly following: FollowerReplication;
  /** The leader's linearizable reads (§6.4). */
  private readonly reads: LeaderReads;

  /** Messages that wait for the next Ready's write to be durable. */
  private messages: Message[] = [];
  /** Messages that may leave before that write is durable (see `maySendBeforePersist`). */
  private earlyMessages: Message[] = [];
  private readStates: ReadState[] = [];
  /** Contexts of this node's reads that will never be served (Ready.refusedReads). */
  private refusedReads: string[] = [];
  private previousSoftState: SoftState;
  private previousHardState: HardState;
  private readyInProgress = false;
  /**
   * The last committed entry handed to the host to apply, by the Ready in progress or
   * by `takeEarlyCommitted` while its write runs; -1 while that Ready holds a snapshot
   * (nothing after it may be applied before it is stored).
   */
  private handedOutIndex: LogIndex | -1 = -1;
  /** The entries the Ready in progress writes. */
  private writingEntries: readonly Entry[] = [];

  private stepRole: (message: Message) => void = (message) => this.stepFollower(message);
  private tickRole: () => void = () => this.tickElection();

  constructor(config: RaftConfig) {
    this.id = config.id;
    this.options = { ...DEFAULT_RAFT_OPTIONS, ...config.options };
    validateRaftOptions(this.options);
    this.prng = config.prng;
    const { hardState, config: clusterConfig } = config.storage.initialState();
    const snapshotIndex = config.storage.snapshot().metadata.index;
    const commitIndex = logIndex(Math.max(hardState.commitIndex, snapshotIndex));
    // The host rebuilds its state machine from the snapshot and replays the log after it.
    this.log = new RaftLog(config.storage, commitIndex, snapshotIndex);
    this.currentTerm = hardState.term;
    this.vote = hardState.votedFor;
    this.clusterConfig = normalizeConfig(clusterConfig);
    this.configIndex = snapshotIndex;
    this.previousHardState = { ...hardState, commitIndex };
    this.previousSoftState = { role: 'follower', leaderId: null };
    // What the parts below see of this core. Hooks a test overrides are called through
    // `this`, so that they stay overridable.
    const core = {
      id: this.id,
      log: this.log,
      options: this.options,
      term: () => this.currentTerm,
      send: (message: OutgoingMessage) => this.send(message),
    };
    this.leading = new LeaderReplication({
      ...core,
      progress: this.progress,
      isCommitNotice: (progress, entries, commitAdvanced) =>
        this.isCommitNotice(progress, entries, commitAdvanced),
    });
    this.following = new FollowerReplication({
      ...core,
      appendFromLeader: (prevLogIndex, entries) => this.appendFromLeader(prevLogIndex, entries),
      installSnapshot: (snapshot) => this.installSnapshot(snapshot),
    });
    this.reads = new LeaderReads({
      ...core,
      voters: () => this.clusterConfig.voters,
      serveLocal: (state) => {
        this.readStates.push(state);
      },
      refuseLocal: (context) => {
        this.refusedReads.push(context);
      },
      readQuorum: (read) => this.readQuorum(read),
    });
    this.becomeFollower(this.currentTerm, null);
  }

  // ---------------------------------------------------------------- inspection

  get term(): Term {
    return this.currentTerm;
  }
  get votedFor(): NodeId | null {
    return this.vote;
  }
  get role(): Role {
    return this.currentRole;
  }
  get leaderId(): NodeId | null {
    return this.leader;
  }
  get config(): ClusterConfig {
    return this.clusterConfig;
  }
  get transferee(): NodeId | null {
    return this.leadTransferee;
  }
  progressOf(id: NodeId): Progress | undefined {
    return this.progress.get(id);
  }

  /**
   * The highest index the host may compact its log to without stranding a follower that
   * is catching up: one receiving a snapshot continues, once it is installed, from the
   * entry after it, and one behind (after a snapshot, or back from a pause) from the entry
   * after its match. If compaction took that entry meanwhile, it needs another snapshot.
   * Where snapshots take longer to stream than the log takes to outgrow what compaction
   * retains, it would never catch up (simulator seed 222161048: three followers received
   * one snapshot after another for 30 s). Only followers that answered anything within an
   * election timeout hold the log, so a dead one does not; and none holds entries already
   * compacted, since it needs a new snapshot anyway. Null: no hold. The host bounds how
   * much it keeps for this (runtime.compactionHoldEntriesMax).
   */
  compactionFloor(): LogIndex | null {
    if (this.currentRole !== 'leader') return null;
    const compactedIndex = this.log.firstIndex() - 1;
    let floor: LogIndex | null = null;
    // forEach, not for-of over entries: the node asks twice a Ready, and each entry of
    // a for-of is an array of its own.
    this.progress.forEach((progress, member) => {
      if (member === this.id || progress.silentTicks >= this.options.electionTimeoutTicks) return;
      const needed = progress.snapshotTransfer?.metadata.index ?? progress.matchIndex;
      if (needed < compactedIndex || needed >= this.log.lastIndex()) return;
      if (floor === null || needed < floor) floor = needed;
    });
    return floor;
  }

  // ---------------------------------------------------------------- host API

  /** Advances logical time by one tick. */
  tick(): void {
    this.tickRole();
  }

  /** Feeds one message from a peer. Term handling happens here, once, for every role. */
  step(message: Message): void {
    assert(message.to === this.id, `message for ${message.to} delivered to ${this.id}`);
    if (message.from === this.id) return;
    if (message.term > this.currentTerm) {
      if (!this.stepHigherTerm(message)) return;
    } else if (message.term < this.currentTerm) {
      this.stepLowerTerm(message);
      return;
    }
    if (message.type === 'RequestVote') {
      this.handleRequestVote(message);
      return;
    }
    this.stepRole(message);
  }

  /** Proposes application data. Only a leader accepts; the result says why otherwise. */
  propose(data: Uint8Array): ProposeResult {
    const refusal = this.proposalRefusal();
    if (refusal !== null) return this.refuse(refusal);
    return this.appendAsLeader({
      kind: 'normal',
      term: this.currentTerm,
      index: this.nextIndex(),
      data,
    });
  }

  /** Proposes a one-server membership change (§6). One change is in flight at a time. */
  proposeConfigChange(change: ConfigChange): ProposeResult {
    const refusal = this.proposalRefusal() ?? this.configChangeRefusal(change);
    if (refusal !== null) return this.refuse(refusal);
    const result = this.appendAsLeader({
      kind: 'config',
      term: this.currentTerm,
      index: this.nextIndex(),
      change,
    });
    if (result.ok) this.pendingConfigIndex = result.index;
    return result;
  }

  /**
   * Asks for a linearizable read (§6.4). When it is safe, a ReadState with this
   * context appears in a Ready: serve the read once the state machine has applied its
   * index. Returns false when the read cannot even be started (no known leader, or too
   * many pending reads); the host may retry.
   */
  readIndex(context: string): boolean {
    if (this.currentRole === 'leader') return this.reads.request(context, null);
    if (this.leader === null || this.currentRole !== 'follower') return false;
    return this.followerReadIndex(this.leader, context);
  }

  /**
   * A follower asks the leader for the read index: only the leader knows the commit
   * index and can confirm it still leads. Protected so that a test can break it.
   */
  protected followerReadIndex(leader: NodeId, context: string): boolean {
    this.send({ type: 'ReadIndexRequest', to: leader, term: this.currentTerm, context });
    return true;
  }

  /** Hands leadership to `target` (§3.10): catch it up, then tell it to campaign at once. */
  transferLeadership(target: NodeId): TransferResult {
    if (this.currentRole !== 'leader') return { ok: false, reason: 'notLeader' };
    if (target === this.id) return { ok: false, reason: 'alreadyLeader' };
    if (!this.clusterConfig.voters.includes(target)) return { ok: false, reason: 'notAVoter' };
    if (this.leadTransferee === target) return { ok: true };
    this.leadTransferee = target;
    // The transfer must finish within one election timeout, counted from now. It has its
    // own counter so that a transfer never postpones CheckQuorum.
    this.transferElapsedTicks = 0;
    const targetProgress = this.progress.get(target);
    assert(targetProgress !== undefined, `voter ${target} has no progress`);
    if (targetProgress.matchIndex === this.log.lastIndex()) this.sendTimeoutNow(target);
    else this.leading.sendAppend(target);
    return { ok: true };
  }

  /** Campaigns at once, skipping the election timeout. Used by tests and a bootstrapping host. */
  campaign(): void {
    if (this.currentRole !== 'leader')
      this.startCampaign(this.options.preVote ? 'preElection' : 'election');
  }

  hasReady(): boolean {
    return (
      this.reads.broadcastPending ||
      this.messages.length > 0 ||
      this.earlyMessages.length > 0 ||
      this.readStates.length > 0 ||
      this.refusedReads.length > 0 ||
      this.log.pendingEntries().length > 0 ||
      this.log.pendingSnapshot() !== null ||
      this.log.nextCommittedEntries(1).length > 0 ||
      !sameHardState(this.hardState(), this.previousHardState) ||
      !sameSoftState(this.softState(), this.previousSoftState)
    );
  }

  /** Everything the host must do now. Call `advance(ready)` when done, before the next `ready()`. */
  ready(): Ready {
    assert(!this.readyInProgress, 'ready() called again before advance()');
    this.readyInProgress = true;
    const readsAwaitRound = this.reads.takeBroadcastPending();
    if (readsAwaitRound && this.currentRole === 'leader') {
      this.leading.broadcastHeartbeat(this.reads.readSequence);
    }
    const hardState = this.hardState();
    const softState = this.softState();
    const hardStateChanged = !sameHardState(hardState, this.previousHardState);
    const entries = [...this.log.pendingEntries()];
    const snapshot = this.log.pendingSnapshot();
    const committedEntries = this.log.nextCommittedEntries(this.options.committedEntriesBytesMax);
    this.handedOutIndex =
      snapshot === null ? (committedEntries.at(-1)?.index ?? this.log.appliedIndex) : -1;
    if (snapshot === null) this.writingEntries = entries;
    const ready: Ready = {
      softState: sameSoftState(softState, this.previousSoftState) ? null : softState,
      hardState: hardStateChanged ? hardState : null,
      snapshot,
      entries,
      committedEntries,
      earlyMessages: this.earlyMessages,
      messages: this.messages,
      readStates: this.readStates,
      refusedReads: this.refusedReads,
      mustSync:
        entries.length > 0 ||
        snapshot !== null ||
        hardState.term !== this.previousHardState.term ||
        hardState.votedFor !== this.previousHardState.votedFor,
    };
    this.messages = [];
    this.earlyMessages = [];
    this.readStates = [];
    this.refusedReads = [];
    return ready;
  }

  /**
   * The messages that may be sent before the current Ready is durable, produced since
   * it was taken (see ready.ts, step 1). A host calls it while its write is in flight;
   * whatever it does not take goes out with the next Ready.
   */
  takeEarlyMessages(): Message[] {
    const early = this.earlyMessages;
    this.earlyMessages = [];
    return early;
  }

  /**
   * Entries committed since the current Ready was taken, for the host to apply while
   * that Ready's write runs (ready.ts, step 5): a leader whose followers acknowledged
   * them before its own write finished, or a follower told of a new commit index. Each
   * is on a majority's disks, so it is as safe to apply now as at the next Ready, and
   * its client need not wait for this node's write. Only entries this Ready writes (or
   * that are stored already): they count as applied from the next `advance`, and the
   * applied index must never pass what this node has stored (the runtime simulator
   * caught a snapshot taken at an applied index whose entry was still unwritten). Only
   * once the Ready's own committed entries are applied, never while it holds a
   * snapshot, and never a config entry (the core changes its configuration in
   * `advance`): the entries stop before the first one. No later Ready hands them out
   * again.
   */
  takeEarlyCommitted(): readonly Entry[] {
    if (!this.readyInProgress || this.handedOutIndex === -1) return [];
    // Nothing past the write's last entry is stored here yet (storedOrBeingWritten).
    const committed = this.log.committedEntriesAfter(
      this.handedOutIndex,
      this.writingEntries.at(-1)?.index ?? this.log.commitIndex,
      this.options.committedEntriesBytesMax,
    );
    const stop = committed.findIndex(
      (entry) => entry.kind === 'config' || !this.storedOrBeingWritten(entry),
    );
    const early = stop === -1 ? committed : committed.slice(0, stop);
    const last = early.at(-1);
    if (last !== undefined) this.handedOutIndex = last.index;
    return early;
  }

  /**
   * Whether `entry` is stored on this node, or is what the Ready in progress writes at
   * its index. Only those are handed out early: they count as applied at `advance`, and
   * the applied index must never pass what this node has stored (a snapshot is taken at
   * it). A follower may also have replaced an entry of that write meanwhile (a new
   * leader's log); the committed replacement goes to disk only with a later Ready.
   */
  private storedOrBeingWritten(entry: Entry): boolean {
    if (!this.log.isUnstable(entry.index, entry.term)) return true;
    const first = this.writingEntries[0];
    if (first === undefined) return false;
    return this.writingEntries[entry.index - first.index]?.term === entry.term;
  }

  /**
   * The host's write of entries up to (`index`, `term`) is durable (ready.ts, step 3).
   * The entries leave the unstable log, and a leader now counts its own copy of them
   * toward the commit. If they were replaced while the write ran (a follower truncated
   * them for a new leader's), the report says nothing about this log and is ignored.
   */
  persisted(index: LogIndex, term: Term): void {
    this.log.stableTo(index, term);
    if (this.currentRole === 'leader' && this.log.term(index) === term) this.countOwnCopy(index);
  }

  /** The host has persisted, sent and applied `ready`. */
  advance(ready: Ready): void {
    assert(this.readyInProgress, 'advance() without a ready()');
    this.readyInProgress = false;
    if (ready.hardState !== null) this.previousHardState = ready.hardState;
    if (ready.softState !== null) this.previousSoftState = ready.softState;
    if (ready.snapshot !== null) {
      const index = ready.snapshot.metadata.index;
      this.log.stableSnapshotTo(index);
      if (index > this.log.appliedIndex) this.log.appliedTo(index);
    }
    const lastEntry = ready.entries.at(-1);
    if (lastEntry !== undefined) {
      assert(
        !this.log.isUnstable(lastEntry.index, lastEntry.term),
        `advance() before persisted(${lastEntry.index}, ${lastEntry.term})`,
      );
    }
    for (const entry of ready.committedEntries) {
      if (entry.index <= this.log.appliedIndex) continue;
      this.log.appliedTo(entry.index);
      // A snapshot restored meanwhile already holds the config as of its index.
      if (entry.kind === 'config' && entry.index > this.configIndex) {
        this.configIndex = entry.index;
        this.applyConfigChange(entry.change);
      }
    }
    // What takeEarlyCommitted handed out: no config entry among them.
    const handedOut = this.handedOutIndex;
    if (handedOut !== -1 && handedOut > this.log.appliedIndex) this.log.appliedTo(handedOut);
    this.handedOutIndex = -1;
    this.writingEntries = [];
  }

  // ---------------------------------------------------------------- term handling

  /** Returns false when the message must be dropped. */
  private stepHigherTerm(message: Message): boolean {
    if (message.type === 'RequestVote') {
      // CheckQuorum's "leader stickiness": while we hear from a live leader, a vote
      // request is most likely from a node that was cut off. A transfer overrides it.
      const inLease =
        this.options.checkQuorum &&
        this.leader !== null &&
        this.electionElapsedTicks < this.options.electionTimeoutTicks;
      if (inLease && !message.leadershipTransfer) return false;
      // A pre-vote asks about a future term; answering it must not change ours.
      if (message.preVote) return true;
    }
    if (message.type === 'RequestVoteResponse' && message.preVote && message.granted) {
      // A granted pre-vote echoes the term we would campaign in; we raise it only on winning.
      return true;
    }
    const fromLeader =
      message.type === 'AppendEntries' ||
      message.type === 'Heartbeat' ||
      message.type === 'InstallSnapshot';
    this.becomeFollower(message.term, fromLeader ? message.from : null);
    return true;
  }

  private stepLowerTerm(message: Message): void {
    if (
      (this.options.checkQuorum || this.options.preVote) &&
      (message.type === 'AppendEntries' || message.type === 'Heartbeat')
    ) {
      // A deposed leader that never saw our term would keep sending forever; tell it.
      this.send({
        type: 'AppendEntriesResponse',
        to: message.from,
        term: this.currentTerm,
        success: false,
        matchIndex: logIndex(0),
        rejectedIndex: logIndex(0),
        hintIndex: logIndex(0),
        hintTerm: null,
      });
    } else if (message.type === 'RequestVote' && message.preVote) {
      this.send({
        type: 'RequestVoteResponse',
        to: message.from,
        term: this.currentTerm,
        preVote: true,
        granted: false,
      });
    }
  }

  // ---------------------------------------------------------------- elections (§5.2)

  private handleRequestVote(message: MessageOf<'RequestVote'>): void {
    const granted =
      this.canGrantVote(message) && this.log.isUpToDate(message.lastLogIndex, message.lastLogTerm);
    if (granted && !message.preVote) {
      this.electionElapsedTicks = 0;
      this.vote = message.from;
    }
    this.send({
      type: 'RequestVoteResponse',
      to: message.from,
      // A granted pre-vote answers in the candidate's future term, so it can count it.
      term: granted && message.preVote ? message.term : this.currentTerm,
      preVote: message.preVote,
      granted,
    });
  }

  /** First come, first served: one vote per term, and none while we follow a leader of this term. */
  protected canGrantVote(message: MessageOf<'RequestVote'>): boolean {
    return (
      this.vote === message.from ||
      (this.vote === null && this.leader === null) ||
      (message.preVote && message.term > this.currentTerm)
    );
  }

  private startCampaign(kind: CampaignKind): void {
    if (!this.isPromotable()) return;
    if (kind === 'preElection') this.becomePreCandidate();
    else this.becomeCandidate();
    const preVote = kind === 'preElection';
    const voteTerm = toTerm(preVote ? this.currentTerm + 1 : this.currentTerm);
    this.votes.set(this.id, true);
    if (this.pollVotes() !== 'pending') return;
    for (const voter of this.clusterConfig.voters) {
      if (voter === this.id) continue;
      this.send({
        type: 'RequestVote',
        to: voter,
        term: voteTerm,
        preVote,
        lastLogIndex: this.log.lastIndex(),
        lastLogTerm: this.log.lastTerm(),
        leadershipTransfer: kind === 'transfer',
      });
    }
  }

  /** Counts votes; acts on a decided election and returns the result. */
  private pollVotes(): 'won' | 'lost' | 'pending' {
    const result = tallyVotes(this.clusterConfig.voters, this.votes);
    if (result === 'won' && !this.clusterConfig.voters.includes(this.id)) {
      // Our own removal applied while we campaigned: we may not lead.
      this.becomeFollower(this.currentTerm, null);
    } else if (result === 'won') {
      if (this.currentRole === 'preCandidate') this.startCampaign('election');
      else this.becomeLeader();
    } else if (result === 'lost') {
      this.becomeFollower(this.currentTerm, null);
    }
    return result;
  }

  /**
   * Whether this node may campaign. Not while a snapshot waits to be applied, and not
   * while committed config changes wait to be applied: its voter set would be stale,
   * and a majority of a stale set need not overlap a majority of the real one.
   */
  private isPromotable(): boolean {
    return (
      this.clusterConfig.voters.includes(this.id) &&
      this.log.pendingSnapshot() === null &&
      !this.hasUnappliedConfigChanges()
    );
  }

  private hasUnappliedConfigChanges(): boolean {
    const lo = logIndex(Math.max(this.log.appliedIndex + 1, this.log.firstIndex()));
    const hi = logIndex(this.log.commitIndex + 1);
    return this.log.entriesBetween(lo, hi).some((entry) => entry.kind === 'config');
  }

  // ---------------------------------------------------------------- role changes

  private resetTerm(term: Term): void {
    if (term !== this.currentTerm) {
      assert(term > this.currentTerm, `term goes back from ${this.currentTerm} to ${term}`);
      this.currentTerm = term;
      this.vote = null;
    }
    this.leader = null;
    this.electionElapsedTicks = 0;
    this.heartbeatElapsedTicks = 0;
    this.randomizedElectionTimeoutTicks =
      this.options.electionTimeoutTicks +
      this.prng.intBetween(0, this.options.electionTimeoutTicks - 1);
    this.leadTransferee = null;
    this.votes.clear();
    this.progress.clear();
    this.reads.clear();
  }

  private becomeFollower(term: Term, leaderId: NodeId | null): void {
    this.resetTerm(term);
    this.leader = leaderId;
    this.currentRole = 'follower';
    this.stepRole = (message) => this.stepFollower(message);
    this.tickRole = () => this.tickElection();
  }

  private becomePreCandidate(): void {
    assert(this.currentRole !== 'leader', 'a leader does not pre-campaign');
    // A pre-candidate keeps its term and vote: nothing durable changes until it may win.
    this.votes.clear();
    this.leader = null;
    this.currentRole = 'preCandidate';
    this.stepRole = (message) => this.stepCandidate(message);
    this.tickRole = () => this.tickElection();
  }

  private becomeCandidate(): void {
    assert(this.currentRole !== 'leader', 'a leader does not campaign');
    this.resetTerm(toTerm(this.currentTerm + 1));
    this.vote = this.id;
    this.currentRole = 'candidate';
    this.stepRole = (message) => this.stepCandidate(message);
    this.tickRole = () => this.tickElection();
  }

  private becomeLeader(): void {
    assert(
      this.currentRole === 'candidate',
      `only a candidate becomes leader, not a ${this.currentRole}`,
    );
    this.resetTerm(this.currentTerm);
    this.leader = this.id;
    this.currentRole = 'leader';
    this.stepRole = (message) => this.stepLeader(message);
    this.tickRole = () => this.tickHeartbeat();
    for (const member of this.members()) this.addProgress(member);
    // No config change until everything before our no-op is applied: the previous
    // leader may have left one uncommitted.
    this.pendingConfigIndex = this.log.lastIndex();
    // §5.4.2 and §8: a new leader commits an entry of its own term, which commits
    // everything before it and lets it answer reads.
    this.appendAsLeader({ kind: 'noop', term: this.currentTerm, index: this.nextIndex() });
  }

  private members(): NodeId[] {
    return [...this.clusterConfig.voters, ...this.clusterConfig.learners];
  }

  private addProgress(member: NodeId): void {
    const progress = new Progress(
      logIndex(this.log.lastIndex() + 1),
      this.options.inflightMessagesMax,
    );
    if (member === this.id) {
      // Only what is on our disk counts; entries still being written count once persisted.
      progress.matchIndex = this.log.lastPersistedIndex();
      progress.becomeReplicate();
    }
    progress.recentActive = true;
    this.progress.set(member, progress);
  }

  // ---------------------------------------------------------------- ticks

  private tickElection(): void {
    this.electionElapsedTicks++;
    if (this.isPromotable() && this.electionElapsedTicks >= this.randomizedElectionTimeoutTicks) {
      this.electionElapsedTicks = 0;
      this.startCampaign(this.options.preVote ? 'preElection' : 'election');
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsedTicks++;
    this.electionElapsedTicks++;
    for (const progress of this.progress.values()) progress.silentTicks++;
    if (this.electionElapsedTicks >= this.options.electionTimeoutTicks) {
      this.electionElapsedTicks = 0;
      if (this.options.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.currentTerm, null);
        return;
      }
    }
    if (
      this.leadTransferee !== null &&
      ++this.transferElapsedTicks >= this.options.electionTimeoutTicks
    ) {
      // A transfer that did not finish within an election timeout is abandoned.
      this.leadTransferee = null;
    }
    if (this.heartbeatElapsedTicks >= this.options.heartbeatIntervalTicks) {
      this.heartbeatElapsedTicks = 0;
      this.leading.broadcastHeartbeat(this.reads.readSequence);
      this.leading.tickSnapshotTransfers();
    }
  }

  /** CheckQuorum: did a majority of voters answer since the last round? Clears the marks. */
  private quorumActive(): boolean {
    let active = 0;
    for (const voter of this.clusterConfig.voters) {
      const progress = this.progress.get(voter);
      if (voter === this.id || progress?.recentActive === true) active++;
    }
    for (const [member, progress] of this.progress) progress.recentActive = member === this.id;
    return active >= majority(this.clusterConfig.voters.length);
  }

  // ---------------------------------------------------------------- followers and candidates

  private stepFollower(message: Message): void {
    switch (message.type) {
      case 'AppendEntries':
        this.heardFromLeader(message.from);
        this.following.handleAppendEntries(message);
        return;
      case 'Heartbeat':
        this.heardFromLeader(message.from);
        this.following.handleHeartbeat(message);
        return;
      case 'InstallSnapshot':
        this.heardFromLeader(message.from);
        this.following.handleSnapshotChunk(message);
        return;
      case 'TimeoutNow':
        // §3.10: the leader has caught us up and stepped aside; campaign at once.
        this.startCampaign('transfer');
        return;
      case 'ReadIndexResponse':
        // A refusal goes to the host too: it fails the read at once (the client retries)
        // instead of letting it wait out its deadline as if the leader were unreachable.
        if (message.readIndex !== null) {
          this.readStates.push({ context: message.context, index: message.readIndex });
          return;
        }
        this.refusedReads.push(message.context);
        // The node we follow says it does not lead in our term: it stepped down, and no
        // other node can lead this term, so we know no leader. A learner (which never
        // campaigns) would otherwise name it for ever (found in review: its Observe
        // streams stayed open and silent while another node led the next term).
        if (message.notLeader === true && message.from === this.leader) this.leader = null;
        return;
      case 'ReadIndexRequest':
        this.reads.refuseForwarded(message.from, message.context, true);
        return;
      case 'RequestVote':
      case 'RequestVoteResponse':
      case 'AppendEntriesResponse':
      case 'HeartbeatResponse':
      case 'InstallSnapshotResponse':
        return;
      default:
        assertNever(message, 'message');
    }
  }

  private heardFromLeader(leaderId: NodeId): void {
    this.electionElapsedTicks = 0;
    if (this.leader === null) this.leader = leaderId;
    // Election Safety: two leaders in one term is impossible when votes are honest.
    assert(
      this.leader === leaderId,
      `two leaders in term ${this.currentTerm}: ${this.leader} and ${leaderId}`,
    );
  }

  private stepCandidate(message: Message): void {
    switch (message.type) {
      case 'AppendEntries':
      case 'Heartbeat':
      case 'InstallSnapshot':
        // Someone won this term; follow it.
        this.becomeFollower(this.currentTerm, message.from);
        this.stepFollower(message);
        return;
      case 'RequestVoteResponse':
        if (message.preVote !== (this.currentRole === 'preCandidate')) return;
        this.votes.set(message.from, message.granted);
        this.pollVotes();
        return;
      case 'ReadIndexRequest':
        this.reads.refuseForwarded(message.from, message.context, true);
        return;
      case 'RequestVote':
      case 'AppendEntriesResponse':
      case 'HeartbeatResponse':
      case 'InstallSnapshotResponse':
      case 'TimeoutNow':
      case 'ReadIndexResponse':
        return;
      default:
        assertNever(message, 'message');
    }
  }

  // ---------------------------------------------------------------- a follower's log (§5.3, §7)
  // FollowerReplication (follower-replication.ts) takes the leader's messages; these two
  // steps change this core's log and config.

  /** Appends the leader's entries after a matching prevLogIndex, truncating any conflicting suffix. */
  protected appendFromLeader(prevLogIndex: LogIndex, entries: readonly Entry[]): LogIndex {
    return this.log.appendAfter(prevLogIndex, entries);
  }

  private installSnapshot(snapshot: Snapshot): void {
    const { index, term } = snapshot.metadata;
    if (this.log.matchTerm(index, term)) {
      // Our log already holds the snapshot's last entry, so it holds everything before
      // it too (Log Matching). Keep the log and just learn the commit index.
      this.log.commitTo(index);
      return;
    }
    this.log.restore(snapshot);
    this.clusterConfig = normalizeConfig(snapshot.metadata.config);
    this.configIndex = snapshot.metadata.index;
  }

  // ---------------------------------------------------------------- the leader
  // LeaderReplication (leader-replication.ts) sends the followers what they miss and
  // takes their answers; the leader here decides what to append and what is committed.

  private stepLeader(message: Message): void {
    switch (message.type) {
      case 'AppendEntriesResponse': {
        const progress = this.leading.handleAppendResponse(message);
        if (progress !== null) this.followerMatched(message.from, progress);
        return;
      }
      case 'HeartbeatResponse':
        if (this.leading.handleHeartbeatResponse(message)) {
          this.reads.acknowledge(message.from, message.readSequence);
        }
        return;
      case 'InstallSnapshotResponse':
        this.leading.handleSnapshotResponse(message);
        return;
      case 'ReadIndexRequest':
        if (!this.reads.request(message.context, message.from)) {
          this.reads.refuseForwarded(message.from, message.context, false);
        }
        return;
      case 'AppendEntries':
      case 'Heartbeat':
      case 'InstallSnapshot':
        // Election Safety: no other node can lead our term.
        assert(
          false,
          `leader ${this.id} of term ${this.currentTerm} got ${message.type} from ${message.from}`,
        );
        return;
      case 'RequestVote':
      case 'RequestVoteResponse':
      case 'TimeoutNow':
      case 'ReadIndexResponse':
        return;
      default:
        assertNever(message, 'message');
    }
  }

  /**
   * A follower's match advanced: commit what a majority now holds and tell every
   * follower, or else send this one what follows; and once the target of a leadership
   * transfer has caught up, tell it to campaign.
   */
  private followerMatched(member: NodeId, progress: Progress): void {
    if (this.maybeCommit()) this.leading.broadcastCommit();
    else this.leading.sendAppend(member, 'skip');
    if (member === this.leadTransferee && progress.matchIndex === this.log.lastIndex()) {
      this.sendTimeoutNow(member);
    }
  }

  /** A leader accepts proposals unless it is handing over or has too much uncommitted work. */
  private proposalRefusal(): ProposeRejection | null {
    if (this.currentRole !== 'leader') return 'notLeader';
    if (this.leadTransferee !== null) return 'transferringLeadership';
    if (this.log.lastIndex() - this.log.commitIndex >= this.options.uncommittedEntriesMax)
      return 'tooManyUncommitted';
    return null;
  }

  private configChangeRefusal(change: ConfigChange): ProposeRejection | null {
    if (this.pendingConfigIndex > this.log.appliedIndex) return 'configChangePending';
    return configChangeRejection(
      this.clusterConfig,
      change,
      (learner) => this.log.commitIndex - (this.progress.get(learner)?.matchIndex ?? 0),
      this.options.learnerPromotionLagEntriesMax,
    );
  }

  private refuse(reason: ProposeRejection): ProposeResult {
    return { ok: false, reason, leaderId: this.leader };
  }

  private nextIndex(): LogIndex {
    return logIndex(this.log.lastIndex() + 1);
  }

  private appendAsLeader(entry: Entry): ProposeResult {
    assert(this.currentRole === 'leader', 'only a leader appends new entries');
    assert(entry.index === this.log.lastIndex() + 1, 'a leader appends at the end of its log');
    this.log.append([entry]);
    // Our own copy counts toward the commit once the host reports it durable (persisted).
    this.leading.broadcastAppend();
    return { ok: true, index: entry.index, term: entry.term };
  }

  /**
   * The leader's own copy of its log up to `index` is durable: count it, like a
   * follower's acknowledgement. Counting it earlier would let a leader and one follower
   * of three commit an entry that only the follower has on disk; if the leader then
   * crashed, the entry could be lost although it was applied and answered. Protected so
   * that a test can break it; nothing else overrides it.
   */
  protected countOwnCopy(index: LogIndex): void {
    const own = this.progress.get(this.id);
    if (own === undefined || !own.maybeUpdate(index)) return;
    // A lone voter commits here; so does a leader whose followers were quicker than its disk.
    if (this.maybeCommit()) {
      this.reads.releaseConfirmed();
      this.leading.broadcastCommit();
    }
  }

  /**
   * Moves the commit index to the highest index a majority of voters hold, but only if
   * that entry is from the current term (§5.4.2, Figure 8). Older entries commit
   * indirectly, by the Log Matching property.
   */
  private maybeCommit(): boolean {
    const candidate = quorumMatchIndex(
      this.clusterConfig.voters,
      (voter) => this.progress.get(voter)?.matchIndex ?? logIndex(0),
    );
    if (candidate <= this.log.commitIndex || !this.isCommittable(candidate)) return false;
    this.log.commitTo(candidate);
    this.reads.flushAwaitingTermCommit();
    return true;
  }

  /** Whether a leader may commit `index` by counting replicas: only entries of its own term. */
  protected isCommittable(index: LogIndex): boolean {
    return this.log.term(index) === this.currentTerm;
  }

  /**
   * Whether an append needs no answer: an empty one that a commit advance sends a
   * replicating follower. Everything before it was sent already, and is acknowledged
   * by the answers to those batches; answering the notice too would add one message
   * per follower per commit, and the follower's liveness is heard from its heartbeat
   * answers. The empty append a heartbeat answer prompts, when the follower's match
   * lags (an acknowledgement was lost), and a probe are always answered, or a lost
   * acknowledgement would never be made up.
   */
  protected isCommitNotice(
    progress: Progress,
    entries: readonly Entry[],
    commitAdvanced: boolean,
  ): boolean {
    return commitAdvanced && entries.length === 0 && progress.state === 'replicate';
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: 'TimeoutNow', to, term: this.currentTerm });
  }

  // ---------------------------------------------------------------- reads (§6.4)
  // LeaderReads (read-index.ts) holds the leader's reads until a majority confirms them.

  /**
   * Confirmations (ours included) a read needs before it is answered: a majority of
   * voters, so that no other leader can have committed past its index (§6.4).
   * Protected so that a test can break it; nothing else overrides it.
   */
  protected readQuorum(_read: { readonly requester: NodeId | null }): number {
    return majority(this.clusterConfig.voters.length);
  }

  // ---------------------------------------------------------------- membership (§6)

  /** Config changes take effect when applied, on every node alike. */
  private applyConfigChange(change: ConfigChange): void {
    this.clusterConfig = changedConfig(this.clusterConfig, change);
    if (this.currentRole === 'leader') this.leaderAppliedConfig();
  }

  private leaderAppliedConfig(): void {
    if (!this.clusterConfig.voters.includes(this.id)) {
      // A leader that removed itself steps down; the rest elect a new one.
      this.becomeFollower(this.currentTerm, null);
      return;
    }
    const members = new Set(this.members());
    for (const member of [...this.progress.keys()]) {
      if (!members.has(member)) this.progress.delete(member);
    }
    for (const member of members) {
      if (this.progress.has(member)) continue;
      this.addProgress(member);
      this.leading.sendAppend(member);
    }
    if (this.leadTransferee !== null && !this.clusterConfig.voters.includes(this.leadTransferee)) {
      this.leadTransferee = null;
    }
    // A smaller quorum may commit more, and a smaller voter set may confirm reads.
    if (this.maybeCommit()) this.leading.broadcastCommit();
    this.reads.releaseConfirmed();
  }

  // ---------------------------------------------------------------- helpers

  private send(message: OutgoingMessage): void {
    const stamped = withFields(message, { from: this.id }) as Message;
    if (this.maySendBeforePersist(stamped)) this.earlyMessages.push(stamped);
    else this.messages.push(stamped);
  }

  /**
   * A leader's AppendEntries and Heartbeats need not wait for the write of the Ready
   * they are in (thesis §10.2.1): they acknowledge nothing, and the leader's own copy of
   * the entries they carry counts only once it is durable. Their term must already be
   * durable, though: a leader that crashed before persisting its term could lead that
   * term again with a different log, and a follower holding the first log's entries
   * would match the second's at the same index and term. (`previousHardState` is what
   * the host has persisted.) Everything else waits: a vote, an append or snapshot
   * acknowledgement, and anything that depends on this node's durable state.
   */
  private maySendBeforePersist(message: Message): boolean {
    return (
      (message.type === 'AppendEntries' || message.type === 'Heartbeat') &&
      message.term === this.previousHardState.term
    );
  }

  private hardState(): HardState {
    return { term: this.currentTerm, votedFor: this.vote, commitIndex: this.log.commitIndex };
  }

  private softState(): SoftState {
    return { role: this.currentRole, leaderId: this.leader };
  }
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.votedFor === b.votedFor && a.commitIndex === b.commitIndex;
}

function sameSoftState(a: SoftState, b: SoftState): boolean {
  return a.role === b.role && a.leaderId === b.leaderId;
}
