import { randomBytes } from 'node:crypto';
import {
  type ApplyOutput,
  type LockCommand,
  type LockLimits,
  LockStateMachine,
  LockTimers,
} from '../lock/index.ts';
import {
  DEFAULT_RAFT_OPTIONS,
  type Entry,
  type Message,
  Raft,
  type RaftOptions,
  type Ready,
  type Snapshot,
} from '../raft/index.ts';
import type { WritableStorage } from '../storage/index.ts';
import { type LogIndex, type NodeId, nodeId } from '../util/ids.ts';
import { Prng } from '../util/prng.ts';
import {
  ClusterIdentityGuard,
  IdentityMismatchError,
  stampingTransport,
} from './cluster-identity.ts';
import { ClusterRules } from './cluster-rules.ts';
import { collectGarbage } from './collect-garbage.ts';
import { decodeEntry, decodeLockSnapshot, encodeEntry } from './entry-codec.ts';
import { DlmError, unavailable } from './errors.ts';
import { HeldCommit } from './held-commit.ts';
import { MemberChanges, type MembershipCallOptions } from './member-changes.ts';
import { AddressBook, type MemberAddress } from './membership.ts';
import type { PeerMessage } from './peer-message.ts';
import { claimedSender, peerMessageProblem } from './peer-message-check.ts';
import { type AppliedProposal, type LateApplyListener, ProposalRegistry } from './proposals.ts';
import { RaftOutbox } from './raft-outbox.ts';
import { LinearizableReads } from './reads.ts';
import { REAL_SCHEDULER, type Scheduler, type TimerHandle } from './scheduler.ts';
import { type SnapshotReport, Snapshotter } from './snapshotter.ts';
import type { TraceContext } from './trace.ts';
import type { Transport } from './transport.ts';
import { rulesUnsetRefusal, WriteForwarding, writeRefusal } from './write-forwarding.ts';

export interface NodeRuntimeOptions {
  readonly tickIntervalMs: number;
  readonly raft: Partial<RaftOptions>;
  /**
   * The lock rules of this node's config. Not the rules in force: those are in the log
   * (LockStateMachine.rules). A leader proposes these only when the log has none.
   */
  readonly lock: Partial<LockLimits>;
  /** Writes waiting to apply on this node; past it, new writes get RESOURCE_EXHAUSTED. */
  readonly pendingProposalsMax: number;
  readonly proposalTimeoutMs: number;
  /** Snapshot once this many entries were applied since the last snapshot. */
  readonly snapshotEntriesThreshold: number;
  /** A snapshot turn is skipped while the log since the last snapshot is smaller than it, up to this many entries; absent: every turn is taken. */
  readonly snapshotEntriesMax?: number;
  /** Entries kept behind a snapshot, so a follower that lags a little needs no snapshot. */
  readonly compactionRetainEntries: number;
  /** Log entries a compaction write deletes beyond what its Ready appended; absent: COMPACTION_SLICE_ENTRIES. */
  readonly compactionSliceEntries?: number;
  /** Entries a follower catching up may hold beyond the usual compaction; absent: none. */
  readonly compactionHoldEntriesMax?: number;
  /** How long shutdown waits for a leadership transfer to finish. */
  readonly shutdownTransferMs: number;
  /**
   * After restoring a snapshot of at least this many bytes (at start-up, or installing
   * the leader's), collect garbage at once (collect-garbage.ts); absent or 0: never.
   */
  readonly restoreCollectBytesMin?: number;
  /** The full collection; a test passes its own to see when it runs. */
  readonly collectGarbage?: () => void;
  /**
   * The highest lock behaviour version this node applies and advertises (behaviour.ts);
   * absent: BEHAVIOUR_LATEST. Lower only to stand in for an older binary in a test.
   */
  readonly behaviourMax?: number;
}

/** A monotonic clock; injected so tests can drive time. */
export interface Clock {
  nowMs(): number;
}

export const MONOTONIC_CLOCK: Clock = { nowMs: () => performance.now() };

export interface NodeStatus {
  readonly id: NodeId;
  readonly role: string;
  readonly term: number;
  readonly leaderId: NodeId | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export interface WriteOptions {
  /** Told if the write applies after its caller was told it failed (see ProposalRegistry). */
  readonly lateApply?: LateApplyListener;
  /** The client call's span: a write forwarded to the leader carries it, so both log it. */
  readonly trace?: TraceContext;
}

export { DEFAULT_MEMBERSHIP_TIMEOUT_MS, type MembershipCallOptions } from './member-changes.ts';
/** How often every node sends its address book to every member (see membership.ts). */
export const ADDRESS_ANNOUNCE_INTERVAL_MS = 2_000;

/**
 * A write that failed its caller is watched this many proposal timeouts for a late
 * apply: long enough for a deposed leader's entries to be committed by its successor.
 */
const ORPHAN_WATCH_TIMEOUTS = 5;

export type AppliedListener = (index: LogIndex, output: ApplyOutput) => void;
/**
 * The state machine was replaced by a snapshot up to `index`: the commands in between
 * were never applied here one by one, so their events were never emitted.
 */
export type RestoredListener = (index: LogIndex) => void;

/** Hooks for metrics and logs; each is cheap, and each is optional. */
export interface NodeObserver {
  /** A synced write of Raft state took `seconds` (writes that need no fsync are not told). */
  persisted?(seconds: number): void;
  proposed?(seconds: number, outcome: 'applied' | 'failed', trace?: TraceContext): void;
  leaderChanged?(): void;
  /** A snapshot of the applied state is durable (the log is compacted behind it later). */
  snapshotted?(report: SnapshotReport): void;
  /**
   * The node stopped on a failure (a failed write, a broken invariant) and answers
   * INTERNAL from now on: the process should stop it and exit, so that a restart
   * reloads what is durable.
   */
  failed?(error: Error): void;
  /** The leader took a write forwarded by `from` for a traced call: a span of its trace. */
  forwardedWrite?(trace: TraceContext, from: NodeId, outcome: string): void;
  /**
   * A message from a peer was malformed and dropped before it reached the core: a buggy
   * or hostile peer, a version skew, or a corrupted payload. `from` is who it claims to
   * be from, "(unknown)" when that field is bad too.
   */
  peerMessageRejected?(from: string, problem: string): void;
  /**
   * A peer message carried another cluster's id (or none, while this node has one) and
   * was dropped before it reached the core. `clusterId` is what it carried ('' for none).
   */
  peerMessageForeign?(from: string, clusterId: string): void;
  /** This node did not know its cluster's id and has now saved the one its peers use. */
  clusterIdAdopted?(clusterId: string): void;
  /**
   * The leader refused a forwarded write from `from`, which it does not count among the
   * members (see WriteForwarding.countsAsMember). `members` is who it does count, for the log.
   */
  forwardFromNonMember?(from: string, members: readonly NodeId[]): void;
}

/**
 * One dlm node: the only place with time and I/O. It drives the pure Raft core and the
 * pure lock state machine:
 *
 * - The Ready loop persists each Ready in one write (group commit: everything that
 *   piled up during the previous write goes into the next), synced unless it holds
 *   only a new commit index. A leader's appends and heartbeats leave before and while
 *   it writes, and what commits on its followers' copies meanwhile is applied and
 *   answered at once; everything else is sent once the write is durable. Then it
 *   applies, then advances (see ready.ts). Raft messages leave at the end of the
 *   event-loop turn that made them, folded (raft-outbox.ts).
 * - Writes from clients are proposed on the leader or forwarded to it; either way the
 *   node that took the call answers it when it applies the entry.
 * - Reads go through ReadIndex and are served from this node's applied state.
 * - Only the leader turns the lock timers into proposals.
 */
export class DlmNode {
  readonly id: NodeId;
  readonly locks: LockStateMachine;
  private readonly raft: Raft;
  private readonly timers: LockTimers;
  private readonly proposals: ProposalRegistry;
  private readonly reads: LinearizableReads;
  private tickTimer: TimerHandle | null = null;
  private readyLoop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  /** The Ready loop is handling a Ready or compacting (mostly: waiting for a write). */
  private handlingReady = false;
  /** A Ready without a snapshot is being written, its committed entries applied. */
  private earlyApplyOpen = false;
  /** applyEarlyCommitted is applying entries. */
  private applyingEarly = false;
  private stopping = false;
  private failure: Error | null = null;
  private stopped: Promise<void> | null = null;
  private readonly appliedListeners = new Set<AppliedListener>();
  private readonly restoredListeners = new Set<RestoredListener>();
  private readonly observers: NodeObserver[] = [];
  private lastLeaderId: NodeId | null = null;
  private readonly addresses: AddressBook;
  private lastAnnounceMs = Number.NEGATIVE_INFINITY;
  // Saving the address book (see saveAddresses).
  private addressSave: Promise<void> | null = null;
  private addressesDirty = false;
  private addressSavesOn = false;
  /** Which cluster this node belongs to; every message in and out is checked against it. */
  private readonly identity: ClusterIdentityGuard;
  private readonly transport: Transport;
  private readonly snapshotter: Snapshotter;
  private readonly outbox: RaftOutbox;
  private readonly heldCommit: HeldCommit;
  private readonly memberChanges: MemberChanges;
  private readonly forwarding: WriteForwarding;
  /** The log's lock rules and behaviour version, as this node drives them. */
  private readonly clusterRules: ClusterRules;

  constructor(
    id: NodeId,
    private readonly storage: WritableStorage,
    transport: Transport,
    private readonly options: NodeRuntimeOptions,
    private readonly clock: Clock = MONOTONIC_CLOCK,
    seed: number = Math.floor(Math.random() * 2 ** 32),
    /** Timers; a simulation passes virtual ones. */
    private readonly scheduler: Scheduler = REAL_SCHEDULER,
    /** Unique to this start of the process; see ProposalRegistry and LinearizableReads. */
    bootId: string = randomBytes(8).toString('hex'),
  ) {
    this.id = id;
    this.identity = new ClusterIdentityGuard(
      id,
      storage.identity?.clusterId ?? '',
      options.tickIntervalMs,
    );
    this.transport = stampingTransport(
      transport,
      () => this.identity.clusterId,
      () => this.locks.behaviourMax,
    );
    this.raft = new Raft({ id, storage, prng: new Prng(seed), options: options.raft });
    this.outbox = new RaftOutbox(
      (message) => this.sendRaftMessage(message),
      scheduler,
      options.raft.appendBatchBytesMax ?? DEFAULT_RAFT_OPTIONS.appendBatchBytesMax,
    );
    // Written within a tick when the node goes quiet, as a heartbeat would tell it anyway.
    this.heldCommit = new HeldCommit(scheduler, options.tickIntervalMs, () => this.kick());
    // Its file's rules until a SetRules entry applies: what the node applied before the
    // rules were replicated, so an upgraded log replays as it ran. Nothing else applies
    // before SetRules on a cluster that started replicated (see lockRulesUnset).
    this.locks = new LockStateMachine(
      options.lock,
      options.behaviourMax === undefined ? {} : { behaviourMax: options.behaviourMax },
    );
    this.timers = new LockTimers({
      reproposeIntervalMs: options.tickIntervalMs * 10,
      dueBatchMax: 256,
    });
    this.proposals = new ProposalRegistry(
      id,
      bootId,
      options.pendingProposalsMax,
      options.proposalTimeoutMs * ORPHAN_WATCH_TIMEOUTS,
    );
    this.reads = new LinearizableReads({
      id,
      bootId,
      raft: this.raft,
      clock,
      timeoutMs: options.proposalTimeoutMs,
      stateAppliedIndex: () => this.locks.lastAppliedIndex,
    });
    this.clusterRules = this.createClusterRules();
    this.addresses = new AddressBook(id, this.transport, () => this.addressesChanged());
    // What the book held when last saved, before the static config (learnAddresses),
    // which then wins for the nodes it names. Loading it is no change to save.
    for (const entry of storage.savedAddresses) this.addresses.learn(entry, false);
    this.addressSavesOn = true;
    this.memberChanges = this.createMemberChanges();
    this.forwarding = this.createWriteForwarding();
    this.restoreStateMachine(storage.snapshot());
    this.snapshotter = this.createSnapshotter();
    this.transport.onMessage((message) => this.receive(message));
  }

  // ------------------------------------------------------------------ lifecycle

  start(): void {
    this.tickTimer = this.scheduler.setInterval(() => this.tick(), this.options.tickIntervalMs);
    this.readyLoop = this.runReadyLoop();
  }

  /**
   * Hands leadership to the most caught-up voter, then stops and closes transport and
   * storage. Also after a failure (without the hand-over). Calling it again returns the
   * same promise.
   */
  stop(): Promise<void> {
    this.stopped ??= this.stopOnce();
    return this.stopped;
  }

  private async stopOnce(): Promise<void> {
    if (this.failure === null) await this.transferLeadershipAway();
    this.stopping = true;
    if (this.tickTimer !== null) this.scheduler.clearInterval(this.tickTimer);
    this.kick();
    await this.readyLoop;
    await this.writeHeldCommitAtStop();
    this.proposals.failAll(unavailable(`${this.id} is shutting down`));
    this.reads.failAll(`${this.id} is shutting down`);
    this.outbox.flush();
    await this.transport.close();
    // The last change to the book may still be on its way to disk.
    while (this.addressSave !== null) await this.addressSave;
    this.addressSavesOn = false;
    await this.snapshotter.stop();
    await this.storage.close();
  }

  private async transferLeadershipAway(): Promise<void> {
    if (this.raft.role !== 'leader') return;
    const target = this.bestTransferTarget();
    if (target === null || !this.raft.transferLeadership(target).ok) return;
    this.kick();
    const deadline = this.clock.nowMs() + this.options.shutdownTransferMs;
    while (this.raft.role === 'leader' && this.clock.nowMs() < deadline) {
      await this.scheduler.sleep(this.options.tickIntervalMs);
    }
  }

  private bestTransferTarget(): NodeId | null {
    let best: NodeId | null = null;
    let bestMatch = -1;
    for (const voter of this.raft.config.voters) {
      const match = voter === this.id ? -1 : (this.raft.progressOf(voter)?.matchIndex ?? -1);
      if (match > bestMatch) {
        best = voter;
        bestMatch = match;
      }
    }
    return best;
  }

  /** False once the node began to stop, or stopped on a failure. */
  get running(): boolean {
    return !this.stopping;
  }

  status(): NodeStatus {
    return {
      id: this.id,
      role: this.raft.role,
      term: this.raft.term,
      leaderId: this.raft.leaderId,
      commitIndex: this.raft.log.commitIndex,
      // The state machine's index, not the core's: committed entries apply (and are
      // answered) while their Ready is written, before the core learns of it.
      appliedIndex: this.locks.lastAppliedIndex,
      voters: this.raft.config.voters,
      learners: this.raft.config.learners,
    };
  }

  /**
   * The highest lock behaviour version `id`'s binary applies, as its latest message to
   * this node said; null if none came since this node started. Only a leader hears from
   * every member.
   */
  behaviourHeardFrom(id: NodeId): number | null {
    return this.clusterRules.heardFrom(id);
  }

  // ------------------------------------------------------------------ client API

  /**
   * Proposes a lock command and resolves with its result once this node applied it. If
   * it fails in a way that leaves open whether it will apply (a timeout, a leader change)
   * and it applies later after all, `options.lateApply` is told (see ProposalRegistry).
   */
  async write(command: LockCommand, options: WriteOptions = {}): Promise<AppliedProposal> {
    this.checkRunning();
    if (command.type === 'SetBehaviour') {
      // A raise to a version some member cannot apply stops that member (behaviour.ts).
      throw new DlmError(
        'FAILED_PRECONDITION',
        'the lock behaviour version is raised by the leader alone, once every member supports it',
      );
    }
    const startedMs = this.clock.nowMs();
    const { proposalId, applied } = this.proposals.add(
      startedMs,
      this.options.proposalTimeoutMs,
      options.lateApply === undefined ? null : { listener: options.lateApply, command },
    );
    const data = encodeEntry({ proposalId, command });
    if (this.raft.role !== 'leader') this.forwarding.send(proposalId, data, options.trace);
    else if (this.lockRulesUnset(command))
      this.proposals.fail(proposalId, rulesUnsetRefusal(this.id));
    else this.proposeLocal(proposalId, data);
    try {
      const result = await applied;
      for (const observer of this.observers) {
        observer.proposed?.((this.clock.nowMs() - startedMs) / 1000, 'applied', options.trace);
      }
      return result;
    } catch (error) {
      for (const observer of this.observers) {
        observer.proposed?.((this.clock.nowMs() - startedMs) / 1000, 'failed', options.trace);
      }
      throw error;
    }
  }

  /** Adds an observer (metrics and logs each bring their own). */
  observe(observer: NodeObserver): void {
    this.observers.push(observer);
  }

  get pendingProposals(): number {
    return this.proposals.size;
  }

  private proposeLocal(proposalId: string, data: Uint8Array): void {
    const result = this.raft.propose(data);
    if (result.ok) {
      this.proposals.placed(proposalId, result.index);
      this.kick();
    } else {
      this.proposals.fail(proposalId, writeRefusal(result.reason, result.leaderId));
    }
  }

  /**
   * Whether the leader must hold `command` back: a client write, before any SetRules
   * applied here. Each replica applies its own file's rules until then, so an entry
   * judged by rules would be judged differently where the files differ. A leader
   * proposes its config's rules as soon as an entry of its term applied
   * (proposeRulesIfUnset), so this lasts one commit after an election on a new
   * cluster. A SetRules is let through: it is what ends the wait. Protected so that a
   * test can break it.
   */
  protected lockRulesUnset(command: LockCommand): boolean {
    return this.locks.rulesSetIndex === null && command.type !== 'SetRules';
  }

  /**
   * Runs `query` on this node's state once it has applied everything committed when
   * the read began (ReadIndex), so the answer is linearizable wherever it is served.
   */
  async read<T>(query: (locks: LockStateMachine) => T): Promise<T> {
    this.checkRunning();
    const read = this.reads.begin();
    this.kick();
    await this.reads.waitApplied(await read.index, read);
    return query(this.locks);
  }

  /**
   * Calls `listener` with the output of every lock command this node applies from now
   * on, in log order (for Watch, waiting Acquires and metrics). Returns the unsubscribe.
   */
  subscribe(listener: AppliedListener): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  /**
   * Calls `listener` whenever this node installs a snapshot from the leader. Whoever
   * follows the events (a Watch, a waiting Acquire) missed the ones the snapshot covers
   * and must look at the state afresh. Returns the unsubscribe.
   */
  onRestored(listener: RestoredListener): () => void {
    this.restoredListeners.add(listener);
    return () => this.restoredListeners.delete(listener);
  }

  private checkRunning(): void {
    if (this.failure !== null)
      throw new DlmError('INTERNAL', `${this.id} stopped: ${this.failure.message}`);
    if (this.stopping) throw unavailable(`${this.id} is shutting down`, this.raft.leaderId);
  }

  // ------------------------------------------------------------------ membership

  /**
   * Adds a member, on the leader, and resolves with this node's view afterwards (see
   * MemberChanges.add: learner, catch-up, promotion; idempotent for one id and address).
   */
  addMember(member: MemberAddress, options: MembershipCallOptions = {}): Promise<NodeStatus> {
    return this.memberChanges.add(member, options);
  }

  /** Removes a member, on the leader (the leader itself hands over first): MemberChanges.remove. */
  removeMember(id: NodeId, options: MembershipCallOptions = {}): Promise<NodeStatus> {
    return this.memberChanges.remove(id, options);
  }

  /** Hands leadership to `target` (null: the most caught-up voter), on the leader. */
  transferLeadership(target: NodeId | null, options: MembershipCallOptions = {}): Promise<NodeId> {
    return this.memberChanges.transferLeadership(target, options);
  }

  /** The addresses this node knows, by member (see membership.ts). */
  memberAddresses(): ReadonlyMap<NodeId, MemberAddress> {
    return this.addresses.all();
  }

  /**
   * Seeds the address book from local configuration (it wins over what peers say) and
   * announces it to every node it names, so a node that joined or restarted makes its
   * own address known.
   */
  learnAddresses(
    members: readonly { id: string; peerAddress: string; clientAddress: string }[],
  ): void {
    for (const member of members) this.addresses.learn({ ...member, id: nodeId(member.id) }, true);
    this.addresses.announce([...this.addresses.ids(), ...this.memberIds()]);
  }

  /**
   * The book changed: save it. Saves run beside the Ready loop, one at a time; changes
   * that arrive during a save are coalesced into one more save of the whole book.
   */
  private addressesChanged(): void {
    if (!this.addressSavesOn) return;
    this.addressesDirty = true;
    if (this.addressSave === null) this.addressSave = this.saveAddresses();
  }

  /**
   * Never rejects. A failed save stops the node, as a failed Raft write does: the book
   * itself is not needed until a restart, but a failed write may have left a torn
   * record in the database's log, after which the writes it still takes can be lost
   * at the next open, so the storage refuses every later write (see LevelStorage).
   */
  private async saveAddresses(): Promise<void> {
    // Lets the rest of a burst (one peer message names every member) land first, and
    // makes sure `addressSave` is set before the loop below can clear it.
    await Promise.resolve();
    try {
      while (this.addressesDirty && this.addressSavesOn && this.failure === null) {
        this.addressesDirty = false;
        await this.storage.saveAddresses([...this.addresses.all().values()]);
      }
    } catch (error) {
      this.stopOnFailure(error);
    } finally {
      this.addressSave = null;
    }
  }

  private memberIds(): NodeId[] {
    return [...this.raft.config.voters, ...this.raft.config.learners];
  }

  // ------------------------------------------------------------------ inbound

  private receive(message: PeerMessage): void {
    if (this.stopping) return;
    // The type is what the transport promises, not what the peer sent: check the shape
    // before the core, which asserts as it goes, could throw half-way through a step.
    const problem = peerMessageProblem(message);
    if (problem !== null) {
      const from = claimedSender(message);
      for (const observer of this.observers) observer.peerMessageRejected?.(from, problem);
      return;
    }
    if (!this.admitCluster(message)) return;
    this.clusterRules.noteClaim(message);
    try {
      this.dispatch(message);
    } catch (error) {
      // A well-formed message that breaks an invariant (two leaders in a term, say): the
      // core may be half-way through a step, so stop as on any broken invariant. Never
      // throw into the transport, whose callback has no one to catch it.
      this.stopOnFailure(error);
    }
    this.kick();
  }

  /**
   * Raft traffic, except to a member whose latest message said its binary cannot apply
   * the behaviour version in force: no entry reaches it until it runs one that can (see
   * behaviour.ts). To Raft that is a lost message.
   */
  private sendRaftMessage(message: Message): void {
    if (this.clusterRules.holdsBack(message.to)) return;
    this.transport.send({ kind: 'raft', message });
  }

  /** Whether the message is from this node's cluster (see cluster-identity.ts). */
  private admitCluster(message: PeerMessage): boolean {
    const admission = this.identity.admit(message, this.raft.config, this.clock.nowMs());
    switch (admission.kind) {
      case 'accept':
        return true;
      case 'wait':
        return false;
      case 'adopt':
        void this.adoptClusterId(admission.clusterId);
        return false;
      case 'foreign':
        for (const observer of this.observers) {
          observer.peerMessageForeign?.(admission.from, admission.clusterId);
        }
        // Any message carries our id; our book is one the peer can use if it has it.
        if (admission.answer) this.addresses.send(admission.from as NodeId);
        if (admission.strandedAmong !== null) {
          this.stopOnFailure(
            new IdentityMismatchError(
              `node ${this.id} belongs to cluster ${this.identity.clusterId} (its database), but ${admission.strandedAmong.join(', ')}, a majority of its voters, belong to cluster ${admission.clusterId || '(none)'} and none of them to ${this.identity.clusterId}: its data directory is not this cluster's (another cluster's, or one created anew after this node's own was lost)`,
            ),
          );
        }
        return false;
    }
  }

  /** Saved before it is used, so a node never acknowledges under an id it could forget. */
  private async adoptClusterId(clusterId: string): Promise<void> {
    try {
      await this.storage.saveIdentity({ clusterId, nodeId: this.id });
    } catch (error) {
      this.identity.adoptionFailed();
      this.stopOnFailure(error);
      return;
    }
    this.identity.adopted(clusterId);
    for (const observer of this.observers) observer.clusterIdAdopted?.(clusterId);
  }

  private dispatch(message: PeerMessage): void {
    switch (message.kind) {
      case 'raft':
        if (message.message.to === this.id) this.raft.step(message.message);
        break;
      case 'forward':
        this.forwarding.accept(message.from, message.proposalId, message.data, message.traceparent);
        break;
      case 'forwardAccepted':
        this.forwarding.accepted(message.proposalId, message.index);
        break;
      case 'forwardRefused':
        this.forwarding.refused(message.proposalId, message.reason, message.leaderId);
        break;
      case 'peerAddresses':
        this.addresses.receive(message.from, message.addresses, this.raft.leaderId);
        break;
    }
  }

  /** A voter or learner of the config this node applied. */
  private isMember(id: NodeId): boolean {
    const { voters, learners } = this.raft.config;
    return voters.includes(id) || learners.includes(id);
  }

  // ------------------------------------------------------------------ time

  private tick(): void {
    if (this.stopping) return;
    this.raft.tick();
    const nowMs = this.clock.nowMs();
    // Timer commands wait for the rules too (see lockRulesUnset): a lease then ends
    // late, never early.
    if (this.raft.role === 'leader' && this.proposeRulesIfUnset(nowMs)) {
      this.clusterRules.proposeBehaviourRaise(nowMs);
      this.clusterRules.completeFileRules();
      for (const command of this.timers.due(nowMs)) {
        if (!this.raft.propose(encodeEntry({ proposalId: null, command })).ok) break;
      }
    }
    this.proposals.expire(nowMs);
    this.forwarding.failUnanswered(nowMs);
    this.reads.expire(nowMs);
    if (nowMs - this.lastAnnounceMs >= ADDRESS_ANNOUNCE_INTERVAL_MS) {
      this.lastAnnounceMs = nowMs;
      this.addresses.announce(this.memberIds());
    }
    this.kick();
  }

  /**
   * ClusterRules.proposeRulesIfUnset: whether rules are in force here, so the leader may
   * propose timer commands. A method of the node's own so that a test can hold the window
   * before the first rules open (test/node/lock-rules.test.ts).
   */
  private proposeRulesIfUnset(nowMs: number): boolean {
    return this.clusterRules.proposeRulesIfUnset(nowMs);
  }

  /**
   * The highest version this node and every member apply by a fresh claim; null while
   * one has none (ClusterRules.agreedBehaviour). Protected so that a test can break it.
   */
  protected agreedBehaviour(nowMs: number): number | null {
    return this.clusterRules.agreedBehaviour(nowMs);
  }

  private get electionTimeoutMs(): number {
    const electionTimeoutTicks =
      this.options.raft.electionTimeoutTicks ?? DEFAULT_RAFT_OPTIONS.electionTimeoutTicks;
    return electionTimeoutTicks * this.options.tickIntervalMs;
  }

  // ------------------------------------------------------------------ the Ready loop

  /**
   * Something changed the core. An idle loop wakes up and takes a Ready. A busy one,
   * usually waiting for a write, would take the next Ready only once that write is
   * durable: the messages that need not wait for it (a leader's appends, carrying new
   * entries or a new commit index, and heartbeats) leave now instead, so that
   * replication never waits for the leader's own disk.
   */
  private kick(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
    if (this.handlingReady && !this.stopping) {
      this.sendRaft(this.raft.takeEarlyMessages());
      this.applyEarlyCommitted();
    }
  }

  /**
   * While a Ready's write runs, applies what became committed meanwhile (see
   * Raft.takeEarlyCommitted), so that its answers do not wait for that write. Not while
   * entries are being applied: an apply that kicks would otherwise apply later entries
   * in the middle of earlier ones.
   */
  private applyEarlyCommitted(): void {
    if (!this.earlyApplyOpen || this.applyingEarly) return;
    this.applyingEarly = true;
    try {
      for (const entry of this.raft.takeEarlyCommitted()) this.applyEntry(entry);
    } finally {
      this.applyingEarly = false;
    }
  }

  private sendRaft(messages: readonly Message[]): void {
    this.outbox.add(messages);
  }

  private async runReadyLoop(): Promise<void> {
    try {
      while (!this.stopping) {
        if (this.raft.hasReady()) {
          await this.busy(() => this.handleReady(this.raft.ready()));
        } else if (this.heldCommit.isDue()) {
          await this.busy(() => this.writeHeldCommit());
        } else if (this.snapshotter.compactionBacklog() > 0) {
          // Idle: the log a snapshot covers goes a slice at a time, a Ready first.
          await this.busy(() => this.snapshotter.compactIdleSlice());
        } else {
          await new Promise<void>((resolve) => {
            this.wake = resolve;
          });
        }
      }
    } catch (error) {
      this.stopOnFailure(error);
    }
  }

  private async busy(work: () => Promise<void>): Promise<void> {
    this.handlingReady = true;
    try {
      await work();
    } finally {
      this.handlingReady = false;
    }
  }

  /**
   * A failed write or a broken invariant: stop rather than serve from a state that may
   * have diverged. Only the first failure counts; the ones it causes are its echo.
   */
  private stopOnFailure(error: unknown): void {
    if (this.failure !== null) return;
    this.failure = error instanceof Error ? error : new Error(String(error));
    this.stopping = true;
    if (this.tickTimer !== null) this.scheduler.clearInterval(this.tickTimer);
    this.proposals.failAll(new DlmError('INTERNAL', `${this.id} stopped: ${this.failure.message}`));
    for (const observer of this.observers) observer.failed?.(this.failure);
  }

  private async handleReady(ready: Ready): Promise<void> {
    this.clusterRules.noteLoggedRaises(ready.entries);
    // 1. What need not wait for the disk.
    this.sendRaft(ready.earlyMessages);
    this.noteLeader(ready);
    // Committed entries are on a majority's disks already (Ready, step 5), so applying
    // them needs nothing this Ready writes: their answers leave while the write runs.
    // A snapshot must be applied first, and only once it is stored.
    const applyEarly = ready.snapshot === null;
    if (applyEarly) this.applyCommitted(ready);
    // 2 and 3. Persist, and tell the core once it is durable; what commits meanwhile is
    // applied as it does (applyEarlyCommitted).
    this.earlyApplyOpen = applyEarly;
    try {
      await this.persist(ready);
    } finally {
      this.earlyApplyOpen = false;
    }
    // 4. Send what waited for the disk.
    this.sendRaft(ready.messages);
    // 5. Apply.
    if (!applyEarly) this.applyCommitted(ready);
    // 6. Reads whose index is known.
    this.reads.confirmed(ready.readStates);
    this.reads.refused(ready.refusedReads);
    this.raft.advance(ready);
    this.reads.releaseApplied();
    this.snapshotter.maybeStart();
    await this.snapshotter.compactStep(ready.entries.length);
  }

  private noteLeader(ready: Ready): void {
    if (ready.softState !== null && ready.softState.leaderId !== this.lastLeaderId) {
      this.lastLeaderId = ready.softState.leaderId;
      if (this.lastLeaderId === this.id) this.clusterRules.becameLeader(this.clock.nowMs());
      // Writes forwarded to the old leader and not yet placed in the log may be lost with
      // it; fail them now rather than at their deadline, so clients retry (with the same
      // request id, which the state machine deduplicates) within an election.
      this.proposals.failUnplaced(
        unavailable('the leader changed before the write was placed', ready.softState.leaderId),
        this.clock.nowMs(),
      );
      for (const observer of this.observers) observer.leaderChanged?.();
    }
  }

  private applyCommitted(ready: Ready): void {
    if (ready.snapshot !== null) {
      this.restoreStateMachine(ready.snapshot);
      this.outbox.flush();
      this.addresses.reconcile(this.raft.config);
      const index = ready.snapshot.metadata.index;
      for (const listener of this.restoredListeners) listener(index);
    }
    for (const entry of ready.committedEntries) this.applyEntry(entry);
  }

  /**
   * One write for everything the Ready holds, synced only when it must be. A new commit
   * index alone is not written now but joins the next write (HeldCommit): Raft re-learns
   * a commit index lost in a crash.
   */
  private async persist(ready: Ready): Promise<void> {
    const batch = this.heldCommit.batchFor(ready);
    if (batch === null) return;
    const startedMs = this.clock.nowMs();
    await this.storage.persist(batch);
    if (ready.mustSync) {
      const seconds = (this.clock.nowMs() - startedMs) / 1000;
      for (const observer of this.observers) observer.persisted?.(seconds);
    }
    const last = ready.entries.at(-1);
    if (last === undefined) return;
    this.raft.persisted(last.index, last.term);
    // A leader whose followers were quicker than its disk commits now: tell them at once.
    this.sendRaft(this.raft.takeEarlyMessages());
  }

  /** A commit index held for a tick (see HeldCommit), or at a clean stop. */
  private async writeHeldCommit(): Promise<void> {
    const hardState = this.heldCommit.take();
    if (hardState !== null) await this.storage.persist({ hardState, mustSync: false });
  }

  /**
   * Outside the Ready loop, whose failures stop the node: a failed write here stops it
   * the same way, so the rest of the stop (failing what waits, closing the transport and
   * storage) still runs.
   */
  private async writeHeldCommitAtStop(): Promise<void> {
    if (this.failure !== null) return;
    try {
      await this.writeHeldCommit();
    } catch (error) {
      this.stopOnFailure(error);
    }
  }

  private applyEntry(entry: Entry): void {
    if (entry.kind !== 'normal') {
      this.locks.skipTo(entry.index);
      this.proposals.applied(entry.index, null, null);
      if (entry.kind === 'config') {
        // What this turn made for a node the change removes (the commit that tells it
        // so) leaves before its link closes.
        this.outbox.flush();
        this.addresses.configApplied(entry.change);
        this.clusterRules.membersChanged();
      }
      return;
    }
    const payload = decodeEntry(entry.data);
    const output = this.locks.apply(entry.index, payload.command, payload.proposalId);
    // A binary older than the raise started on this data must find a snapshot it
    // refuses, not a log in which the raise is an unknown command (behaviour.ts).
    if (output.result.type === 'BehaviourSet') this.snapshotter.takeSoon();
    this.timers.applied(entry.index, output.events, this.clock.nowMs());
    this.proposals.applied(entry.index, payload.proposalId, output.result);
    for (const listener of this.appliedListeners) listener(entry.index, output);
  }

  private restoreStateMachine(snapshot: Snapshot): void {
    if (snapshot.data.byteLength > 0) this.locks.restore(decodeLockSnapshot(snapshot.data));
    this.locks.skipTo(snapshot.metadata.index);
    this.timers.restore(this.locks, this.clock.nowMs());
    this.proposals.restored(snapshot.metadata.index, (command, proposalId) =>
      this.locks.attemptsOf(command, proposalId),
    );
    // The decoded snapshot is garbage now, several times the state it built; the node
    // has just spent longer than a collection takes decoding it.
    const { restoreCollectBytesMin, collectGarbage: collect = collectGarbage } = this.options;
    const collects = restoreCollectBytesMin !== undefined && restoreCollectBytesMin > 0;
    if (collects && snapshot.data.byteLength >= restoreCollectBytesMin) collect();
  }

  private createMemberChanges(): MemberChanges {
    return new MemberChanges({
      id: this.id,
      raft: this.raft,
      addresses: this.addresses,
      clock: this.clock,
      scheduler: this.scheduler,
      tickIntervalMs: this.options.tickIntervalMs,
      checkRunning: () => this.checkRunning(),
      kick: () => this.kick(),
      status: () => this.status(),
      memberIds: () => this.memberIds(),
      refuseBehindBehaviour: (id) => this.clusterRules.refuseBehindBehaviour(id),
      bestTransferTarget: () => this.bestTransferTarget(),
    });
  }

  private createWriteForwarding(): WriteForwarding {
    return new WriteForwarding({
      id: this.id,
      raft: this.raft,
      transport: this.transport,
      proposals: this.proposals,
      observers: this.observers,
      isMember: (id) => this.isMember(id),
      memberIds: () => this.memberIds(),
      lockRulesUnset: (command) => this.lockRulesUnset(command),
      rulesSet: () => this.locks.rulesSetIndex !== null,
      electionTimeoutMs: () => this.electionTimeoutMs,
    });
  }

  private createClusterRules(): ClusterRules {
    return new ClusterRules({
      id: this.id,
      raft: this.raft,
      locks: this.locks,
      clock: this.clock,
      fileRules: this.options.lock,
      electionTimeoutMs: () => this.electionTimeoutMs,
      memberIds: () => this.memberIds(),
      isMember: (id) => this.isMember(id),
      agreedBehaviour: (nowMs) => this.agreedBehaviour(nowMs),
    });
  }

  private createSnapshotter(): Snapshotter {
    return new Snapshotter(
      {
        storage: this.storage,
        nodeId: this.id,
        appliedIndex: () => this.raft.log.appliedIndex,
        installPending: () => this.raft.log.pendingSnapshot() !== null,
        compactionFloor: () => this.raft.compactionFloor(),
        config: () => this.raft.config,
        captureState: () => this.locks.snapshot(),
        failed: (error) => this.stopOnFailure(error),
        compactionDue: () => this.kick(),
        snapshotted: (report) => {
          for (const observer of this.observers) observer.snapshotted?.(report);
        },
      },
      this.options,
    );
  }
}
