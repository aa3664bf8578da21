import type { LockResult } from '../lock/index.ts';
import type { LogIndex, NodeId, Term } from '../util/ids.ts';
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
  term: Term | null;
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
        term: null,
      });
    });
    return { proposalId, applied };
  }

  /** The leader appended the write at (index, term). */
  placed(proposalId: string, index: LogIndex, term: Term): void {
    const proposal = this.pending.get(proposalId);
    if (proposal === undefined) return;
    proposal.index = index;
    proposal.term = term;
  }

  fail(proposalId: string, error: DlmError): void {
    const proposal = this.pending.get(proposalId);
    if (proposal === undefined) return;
    this.pending.delete(proposalId);
    proposal.reject(error);
  }

  /**
   * The entry at `index` was applied. It completes its own proposal, if it is ours, and
   * fails any of ours that had been placed at the same index: that slot now holds
   * another entry, so ours was overwritten after a leader change.
   */
  applied(index: LogIndex, proposalId: string | null, result: LockResult | null): void {
    if (proposalId !== null && result !== null) {
      const proposal = this.pending.get(proposalId);
      if (proposal !== undefined) {
        this.pending.delete(proposalId);
        proposal.resolve({ index, result });
      }
    }
    for (const [id, proposal] of this.pending) {
      if (proposal.index !== null && proposal.index <= index) {
        this.fail(
          id,
          unavailable(`the entry for ${id} at index ${proposal.index} was overwritten`),
        );
      }
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
