import type { LockResult } from '../lock/index.ts';
import type { LogIndex, NodeId } from '../util/ids.ts';
import { DlmError, unavailable } from './errors.ts';

export interface AppliedProposal {
  readonly index: LogIndex;
  readonly result: LockResult;
}

interface PendingProposal {
  readonly resolve: (applied: AppliedProposal) => void;
  readonly reject: (error: DlmError) => void;
  readonly deadlineMs: number;
  /** Where the entry went, once the leader said so. */
  index: LogIndex | null;
}

/**
 * Client writes waiting for their entry to be applied on this node, by proposal id.
 * Bounded: past `pendingMax` a new write is refused at once (backpressure), never
 * queued. A write whose slot in the log is taken by another entry fails with
 * UNAVAILABLE; its client may retry with the same request id, and the state machine's
 * dedupe makes the retry safe.
 */
export class ProposalRegistry {
  private readonly pending = new Map<string, PendingProposal>();
  /** Which of our writes was placed at each log index not yet applied. */
  private readonly placedAt = new Map<number, string>();
  private appliedIndex = 0;
  private sequence = 0;

  constructor(
    private readonly nodeId: NodeId,
    private readonly pendingMax: number,
  ) {}

  get size(): number {
    return this.pending.size;
  }

  /** Registers a write; the promise settles when it applies, is lost, or times out. */
  add(nowMs: number, timeoutMs: number): { proposalId: string; applied: Promise<AppliedProposal> } {
    if (this.pending.size >= this.pendingMax) {
      throw new DlmError(
        'RESOURCE_EXHAUSTED',
        `${this.pendingMax} writes are already pending on ${this.nodeId}`,
      );
    }
    const proposalId = `${this.nodeId}/${++this.sequence}`;
    const applied = new Promise<AppliedProposal>((resolve, reject) => {
      this.pending.set(proposalId, {
        resolve,
        reject,
        deadlineMs: nowMs + timeoutMs,
        index: null,
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

  fail(proposalId: string, error: DlmError): void {
    const proposal = this.pending.get(proposalId);
    if (proposal === undefined) return;
    this.pending.delete(proposalId);
    if (proposal.index !== null && this.placedAt.get(proposal.index) === proposalId) {
      this.placedAt.delete(proposal.index);
    }
    proposal.reject(error);
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
      if (proposal !== undefined) {
        this.pending.delete(proposalId);
        proposal.resolve({ index, result });
      }
    }
    if (placedId !== undefined && placedId !== proposalId) {
      this.fail(placedId, overwritten(placedId, index));
    }
  }

  /**
   * A snapshot replaced the log up to `index`: writes placed there can no longer be told
   * apart, so they fail as UNAVAILABLE and their clients retry with the same request id.
   */
  restored(index: LogIndex): void {
    this.appliedIndex = Math.max(this.appliedIndex, index);
    for (const [placedIndex, id] of [...this.placedAt]) {
      if (placedIndex <= index)
        this.fail(id, unavailable(`the entry for ${id} was replaced by a snapshot`));
    }
  }

  /** Fails writes past their deadline. */
  expire(nowMs: number): void {
    for (const [id, proposal] of this.pending) {
      if (proposal.deadlineMs <= nowMs) {
        this.fail(id, new DlmError('DEADLINE_EXCEEDED', `write ${id} did not apply in time`));
      }
    }
  }

  /** Fails the writes whose place in the log is still unknown. */
  failUnplaced(error: DlmError): void {
    for (const [id, proposal] of [...this.pending]) {
      if (proposal.index === null) this.fail(id, error);
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
