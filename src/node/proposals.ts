import {
  type AttemptsOfProposal,
  type LockCommand,
  type LockResult,
  lockSetNames,
} from '../lock/index.ts';
import type { LogIndex, NodeId } from '../util/ids.ts';
import { DlmError, unavailable } from './errors.ts';

export interface AppliedProposal {
  /** The index the result is true at: the write's entry, unless `attemptIndex` is set. */
  readonly index: LogIndex;
  readonly result: LockResult;
  /**
   * The write's own entry, when the result describes a later index: a write answered
   * from a restored snapshot is told of its grant as of the snapshot (the wait may have
   * been granted after its entry), while giving it back names its entry.
   */
  readonly attemptIndex?: LogIndex;
}

/**
 * Called when a write whose caller was already told it failed (its deadline passed, or
 * the leader changed before it was placed) applies after all: the caller can no longer
 * learn its result, so whoever registered it can undo what it did (give a grant back).
 */
export type LateApplyListener = (applied: AppliedProposal) => void;

/** A write's listener for a late apply, and the command it wrote (to find it in a snapshot). */
export interface LateApplyWatch {
  readonly listener: LateApplyListener;
  readonly command: LockCommand;
}

/**
 * What the state machine restored from a snapshot shows of the write `proposalId` (of
 * `command`): its open attempts and what is true of it now; null if it shows none.
 */
export type AttemptsInSnapshot = (
  command: LockCommand,
  proposalId: string,
) => AttemptsOfProposal | null;

/**
 * What the restored state machine shows of `command`'s request through attempts that
 * record no proposal (applied below behaviour version 3): any of them may be a write
 * this node lost track of. Null if none, or nothing is held or awaited through them.
 */
export type UnrecordedAttemptsInSnapshot = (command: LockCommand) => AttemptsOfProposal | null;

/**
 * A write of this node (an orphan, or a write still pending) whose entry a restored
 * snapshot may cover, and which the snapshot cannot attribute: its request holds a grant
 * or waits through attempts applied below behaviour version 3, which record no proposal.
 * Whether one of them is this write nobody can tell, so it is neither answered nor given
 * back: "below version 3 such a grant stays with its session until released or the
 * session ends" (docs/operations.md, Upgrading). Reported once per write.
 */
export interface UnresolvedWrite {
  readonly proposalId: string;
  readonly command: LockCommand;
  /** The restored snapshot's index. */
  readonly snapshotIndex: LogIndex;
  /** The request's open attempts that record no proposal. */
  readonly attemptIndexes: readonly LogIndex[];
  /** What the request has now (its grant or its place in a queue). */
  readonly now: LockResult;
  /** An orphan (its caller was told it failed) or a write whose caller still waits. */
  readonly state: 'orphan' | 'pending';
}

interface PendingProposal {
  readonly resolve: (applied: AppliedProposal) => void;
  readonly reject: (error: DlmError) => void;
  readonly startedMs: number;
  readonly deadlineMs: number;
  /** Where the entry went, once the leader said so. */
  index: LogIndex | null;
  readonly lateApply: LateApplyWatch | null;
  /** Reported unresolved by a restore (see UnresolvedWrite): not again as an orphan. */
  unresolved: boolean;
}

interface OrphanedProposal {
  readonly lateApply: LateApplyWatch;
  readonly forgetAtMs: number;
  unresolved: boolean;
}

/**
 * Client writes waiting for their entry to be applied on this node, by proposal id.
 * Bounded: past `pendingMax` a new write is refused at once (backpressure), never
 * queued. A write whose slot in the log is taken by another entry fails with
 * UNAVAILABLE; its client may retry with the same request id, and the state machine's
 * dedupe makes the retry safe.
 *
 * Proposal ids name the node, this start of its process (`bootId`) and a sequence.
 * Entries outlive the process that proposed them: without the boot id, a restarted node
 * counting from 1 again would take an entry its previous run proposed for a write of its
 * own, and answer one client with another client's result.
 */
export class ProposalRegistry {
  private readonly pending = new Map<string, PendingProposal>();
  /** Which of our writes was placed at each log index not yet applied. */
  private readonly placedAt = new Map<number, string>();
  /** Failed writes that may still apply, with whom to tell; oldest first, bounded. */
  private readonly orphans = new Map<string, OrphanedProposal>();
  private appliedIndex = 0;
  private sequence = 0;

  constructor(
    private readonly nodeId: NodeId,
    private readonly bootId: string,
    private readonly pendingMax: number,
    /** How long a failed write is watched for a late apply. */
    private readonly orphanWatchMs: number,
    /** Told of each write a restored snapshot could not resolve (below behaviour version 3). */
    private readonly onUnresolved: (write: UnresolvedWrite) => void = () => {},
  ) {}

  get size(): number {
    return this.pending.size;
  }

  /**
   * Registers a write; the promise settles when it applies, is lost, or times out. If
   * it failed in a way that leaves its fate open (timed out, or forwarded to a leader
   * that was replaced) and then applies within `orphanWatchMs`, `lateApply` is called.
   */
  add(
    nowMs: number,
    timeoutMs: number,
    lateApply: LateApplyWatch | null = null,
  ): { proposalId: string; applied: Promise<AppliedProposal> } {
    if (this.pending.size >= this.pendingMax) {
      throw new DlmError(
        'RESOURCE_EXHAUSTED',
        `${this.pendingMax} writes are already pending on ${this.nodeId}`,
      );
    }
    const proposalId = `${this.nodeId}/${this.bootId}/${++this.sequence}`;
    const applied = new Promise<AppliedProposal>((resolve, reject) => {
      this.pending.set(proposalId, {
        resolve,
        reject,
        startedMs: nowMs,
        deadlineMs: nowMs + timeoutMs,
        index: null,
        lateApply,
        unresolved: false,
      });
    });
    return { proposalId, applied };
  }

  /** The leader appended the write at `index`. */
  placed(proposalId: string, index: LogIndex): void {
    const proposal = this.pending.get(proposalId);
    if (proposal === undefined) return;
    // The answer can arrive after this node applied that index; the entry there was
    // not ours (ours would have completed), so ours was overwritten.
    if (index <= this.appliedIndex) {
      this.fail(proposalId, overwritten(proposalId, index));
      return;
    }
    // A newer placement at the same index means the older entry there was truncated.
    const previous = this.placedAt.get(index);
    if (previous !== undefined && previous !== proposalId)
      this.fail(previous, overwritten(previous, index));
    proposal.index = index;
    this.placedAt.set(index, proposalId);
  }

  /**
   * Fails a write. `mayStillApply` says its entry may be in the log anyway (a timeout, a
   * lost answer): then a late apply is still reported to its listener, if it has one.
   */
  fail(proposalId: string, error: DlmError, mayStillApply = false, nowMs = 0): void {
    const proposal = this.pending.get(proposalId);
    if (proposal === undefined) return;
    this.pending.delete(proposalId);
    if (proposal.index !== null && this.placedAt.get(proposal.index) === proposalId) {
      this.placedAt.delete(proposal.index);
    }
    if (mayStillApply && proposal.lateApply !== null) this.orphan(proposalId, proposal, nowMs);
    proposal.reject(error);
  }

  private orphan(proposalId: string, proposal: PendingProposal, nowMs: number): void {
    if (proposal.lateApply === null) return;
    this.orphans.set(proposalId, {
      lateApply: proposal.lateApply,
      forgetAtMs: nowMs + this.orphanWatchMs,
      unresolved: proposal.unresolved,
    });
    // Bounded like the writes themselves; the oldest is the least likely to apply.
    if (this.orphans.size > this.pendingMax) {
      const oldest = this.orphans.keys().next();
      if (oldest.done !== true) this.orphans.delete(oldest.value);
    }
  }

  /**
   * Whether the entry at `index` answers a write the leader placed at `placedIndex`
   * (null: placement not heard yet). Protected so a test can bring back matching by id
   * alone.
   */
  protected answeredBy(placedIndex: LogIndex | null, index: LogIndex): boolean {
    return placedIndex === null || placedIndex === index;
  }

  /** Failed writes still watched for a late apply. */
  get orphanCount(): number {
    return this.orphans.size;
  }

  /**
   * The entry at `index` was applied. It completes its own proposal, if it is ours, and
   * fails the one of ours that had been placed at that index if it is another: the slot
   * holds a different entry, so ours was overwritten after a leader change. Entries
   * apply in order, so looking at this one index is enough.
   */
  applied(index: LogIndex, proposalId: string | null, result: LockResult | null): void {
    this.appliedIndex = index;
    const placedId = this.placedAt.get(index);
    this.placedAt.delete(index);
    if (proposalId !== null && result !== null) {
      const proposal = this.pending.get(proposalId);
      // Where the leader said it placed the write, only that entry answers it: another
      // copy (a forward delivered twice) is not the one the placement reported.
      if (proposal !== undefined && this.answeredBy(proposal.index, index)) {
        this.pending.delete(proposalId);
        proposal.resolve({ index, result });
      }
      this.tellOrphan(proposalId, [index], result);
    }
    if (placedId !== undefined && placedId !== proposalId) {
      this.fail(placedId, overwritten(placedId, index));
    }
  }

  /**
   * A snapshot replaced the log up to `index`: this node will never apply the entries it
   * covers, so it asks the restored state machine (`attemptsIn`) about each watched
   * write, wherever it was placed (runtime seed 12158: an orphan covered by a snapshot
   * was never told, and its grant stayed with a live session).
   * - A pending write found there is answered with what is true of it now: its place
   *   in the queue at its entry's index, or its grant at the snapshot's index; failed as
   *   UNAVAILABLE if that ended (its retry learns the end). Failing one that still held
   *   had it withdrawn, and the client's retry refused as grantEnded (review test
   *   restored-attempts).
   * - Other writes placed there fail as UNAVAILABLE: the slot holds another entry.
   * - An orphan's listener is told of each open attempt found.
   *
   * Below behaviour version 3 attempts record no proposal (`unrecordedIn` shows those
   * of a request), so a write whose request holds or waits through such an attempt may
   * have applied without the snapshot saying so. It is not given back: a Withdraw names
   * an attempt's entry index, and one of these may be a retry of the same request whose
   * caller was told the grant. It is reported (onUnresolved) and left as it was: an
   * orphan stays watched, a pending write placed in the snapshot fails UNAVAILABLE
   * saying its outcome is unknown (a retry with its request id learns it).
   */
  restored(
    index: LogIndex,
    attemptsIn: AttemptsInSnapshot,
    unrecordedIn: UnrecordedAttemptsInSnapshot = () => null,
  ): void {
    this.appliedIndex = Math.max(this.appliedIndex, index);
    for (const [id, proposal] of [...this.pending]) {
      if (proposal.lateApply === null) continue;
      const found = attemptsIn(proposal.lateApply.command, id);
      const [first] = found?.indexes ?? [];
      if (found === null || first === undefined) {
        this.reportUnresolved(id, proposal, 'pending', index, unrecordedIn);
        continue;
      }
      if (found.now === null) this.fail(id, replaced(id));
      else if (found.now.type === 'Queued' || found.now.type === 'QueuedAll')
        this.complete(id, proposal, { index: first, result: found.now });
      // Holders and token as of the snapshot: at its own entry it may still have waited
      // (review test rev2-resolved-header).
      else this.complete(id, proposal, { index, result: found.now, attemptIndex: first });
    }
    for (const [placedIndex, id] of [...this.placedAt]) {
      if (placedIndex > index) continue;
      const unresolved = this.pending.get(id)?.unresolved === true;
      this.fail(id, unresolved ? outcomeUnknown(id, placedIndex, index) : replaced(id));
    }
    this.tellOrphansIn(index, attemptsIn, unrecordedIn);
  }

  /**
   * Tells each orphan of the open attempts the snapshot shows; reports those it cannot
   * attribute (below behaviour version 3), which stay watched: if the write's entry is
   * not in the snapshot, it may still apply and be told then.
   */
  private tellOrphansIn(
    index: LogIndex,
    attemptsIn: AttemptsInSnapshot,
    unrecordedIn: UnrecordedAttemptsInSnapshot,
  ): void {
    for (const [id, orphan] of [...this.orphans]) {
      const found = attemptsIn(orphan.lateApply.command, id);
      if (found === null) this.reportUnresolved(id, orphan, 'orphan', index, unrecordedIn);
      if (found === null || found.now === null) continue;
      this.tellOrphan(id, found.indexes, found.now);
    }
  }

  /** Reports `write` once if its request holds or waits through attempts that record no proposal. */
  private reportUnresolved(
    proposalId: string,
    write: { readonly lateApply: LateApplyWatch | null; unresolved: boolean },
    state: UnresolvedWrite['state'],
    snapshotIndex: LogIndex,
    unrecordedIn: UnrecordedAttemptsInSnapshot,
  ): void {
    if (write.unresolved || write.lateApply === null) return;
    const { command } = write.lateApply;
    const unrecorded = unrecordedIn(command);
    if (unrecorded === null || unrecorded.now === null) return;
    write.unresolved = true;
    this.onUnresolved({
      proposalId,
      command,
      snapshotIndex,
      attemptIndexes: unrecorded.indexes,
      now: unrecorded.now,
      state,
    });
  }

  /**
   * Tells an orphan's listener of the entries that carried it (each an attempt of its
   * own: a forward delivered twice applies twice), then stops watching it. A copy that
   * applies after that is not told; no transport delivers a forward twice today.
   */
  private tellOrphan(proposalId: string, indexes: readonly LogIndex[], result: LockResult): void {
    const orphan = this.orphans.get(proposalId);
    if (orphan === undefined) return;
    this.orphans.delete(proposalId);
    for (const index of indexes) orphan.lateApply.listener({ index, result });
  }

  private complete(proposalId: string, proposal: PendingProposal, applied: AppliedProposal): void {
    this.pending.delete(proposalId);
    if (proposal.index !== null && this.placedAt.get(proposal.index) === proposalId) {
      this.placedAt.delete(proposal.index);
    }
    proposal.resolve(applied);
  }

  /** Fails writes past their deadline, and stops watching old orphans. */
  expire(nowMs: number): void {
    for (const [id, proposal] of this.pending) {
      if (proposal.deadlineMs <= nowMs) {
        const error = new DlmError('DEADLINE_EXCEEDED', `write ${id} did not apply in time`);
        this.fail(id, error, true, nowMs);
      }
    }
    for (const [id, orphan] of this.orphans) {
      if (orphan.forgetAtMs > nowMs) break;
      this.orphans.delete(id);
    }
  }

  /**
   * Fails the writes whose place in the log is still unknown: forwarded to a leader that
   * was replaced, which may still have appended them.
   */
  failUnplaced(error: DlmError, nowMs: number, startedBeforeMs = Number.POSITIVE_INFINITY): void {
    for (const [id, proposal] of [...this.pending]) {
      if (proposal.index === null && proposal.startedMs < startedBeforeMs)
        this.fail(id, error, true, nowMs);
    }
  }

  /** Fails everything, as when the node shuts down. */
  failAll(error: DlmError): void {
    for (const id of [...this.pending.keys()]) this.fail(id, error);
  }
}

function overwritten(proposalId: string, index: number): DlmError {
  return unavailable(`the entry for ${proposalId} at index ${index} was overwritten`);
}

/**
 * The fields an operator needs to find a write a snapshot could not resolve: which write,
 * which request of which session, what it holds or waits for now, and where.
 */
export function unresolvedWriteFields(write: UnresolvedWrite): Record<string, unknown> {
  const { command, now } = write;
  const request =
    'sessionId' in command && 'requestId' in command
      ? { sessionId: command.sessionId, requestId: command.requestId }
      : {};
  return {
    proposalId: write.proposalId,
    state: write.state,
    lock: command.type === 'AcquireAll' ? lockSetNames(command).join(',') : commandLock(command),
    ...request,
    snapshotIndex: write.snapshotIndex,
    attemptIndexes: write.attemptIndexes,
    now: now.type,
    ...('token' in now ? { token: now.token } : {}),
  };
}

function commandLock(command: LockCommand): string | null {
  return 'lock' in command && typeof command.lock === 'string' ? command.lock : null;
}

function replaced(proposalId: string): DlmError {
  return unavailable(`the entry for ${proposalId} was replaced by a snapshot`);
}

function outcomeUnknown(proposalId: string, placedIndex: number, snapshotIndex: number): DlmError {
  return unavailable(
    `the entry for ${proposalId} at index ${placedIndex} is covered by a snapshot at ${snapshotIndex} that does not record which write each attempt carried (lock behaviour version below 3): it may have applied; a retry with the same request id is told its outcome`,
  );
}
