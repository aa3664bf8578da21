import type { AttemptsOfProposal, LockCommand, LockResult } from '../lock/index.ts';
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

interface PendingProposal {
  readonly resolve: (applied: AppliedProposal) => void;
  readonly reject: (error: DlmError) => void;
  readonly startedMs: number;
  readonly deadlineMs: number;
  /** Where the entry went, once the leader said so. */
  index: LogIndex | null;
  readonly lateApply: LateApplyWatch | null;
}

interface OrphanedProposal {
  readonly lateApply: LateApplyWatch;
  readonly forgetAtMs: number;
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
   */
  restored(index: LogIndex, attemptsIn: AttemptsInSnapshot): void {
    this.appliedIndex = Math.max(this.appliedIndex, index);
    for (const [id, proposal] of [...this.pending]) {
      if (proposal.lateApply === null) continue;
      const found = attemptsIn(proposal.lateApply.command, id);
      const [first] = found?.indexes ?? [];
      if (found === null || first === undefined) continue;
      if (found.now === null) this.fail(id, replaced(id));
      else if (found.now.type === 'Queued' || found.now.type === 'QueuedAll')
        this.complete(id, proposal, { index: first, result: found.now });
      // Holders and token as of the snapshot: at its own entry it may still have waited
      // (review test rev2-resolved-header).
      else this.complete(id, proposal, { index, result: found.now, attemptIndex: first });
    }
    for (const [placedIndex, id] of [...this.placedAt]) {
      if (placedIndex <= index) this.fail(id, replaced(id));
    }
    this.tellOrphansIn(attemptsIn);
  }

  /** Tells each orphan of the open attempts the snapshot shows. */
  private tellOrphansIn(attemptsIn: AttemptsInSnapshot): void {
    for (const [id, orphan] of [...this.orphans]) {
      const found = attemptsIn(orphan.lateApply.command, id);
      if (found === null || found.now === null) continue;
      this.tellOrphan(id, found.indexes, found.now);
    }
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

function replaced(proposalId: string): DlmError {
  return unavailable(`the entry for ${proposalId} was replaced by a snapshot`);
}
