import type { Raft, ReadState } from '../raft/index.ts';
import type { LogIndex, NodeId } from '../util/ids.ts';
import { DlmError, unavailable } from './errors.ts';
import type { Clock } from './node.ts';

/** What the read path needs of its node. */
export interface ReadHost {
  readonly id: NodeId;
  /** Unique to this start of the process; see DlmNode. */
  readonly bootId: string;
  readonly raft: Raft;
  readonly clock: Clock;
  /** How long a read may take, its confirmation and the apply up to it (proposalTimeoutMs). */
  readonly timeoutMs: number;
  /**
   * How far the state machine has applied: ahead of the core's applied index while a
   * Ready's write runs (committed entries apply before it is durable, see ready.ts).
   */
  readonly stateAppliedIndex: () => number;
}

/** One read, as begin() starts it: its id for the core, and when it gives up. */
export interface ReadTicket {
  readonly context: string;
  readonly deadlineMs: number;
}

interface PendingRead {
  readonly resolve: (index: LogIndex) => void;
  readonly reject: (error: DlmError) => void;
  readonly deadlineMs: number;
}

/**
 * Linearizable reads (ReadIndex): each read asks the core for the commit index at its
 * start, then waits until this node has applied that far, so the answer is linearizable
 * wherever it is served. The node runs the query (DlmNode.read); this keeps the reads
 * waiting for their index and the waiters for an applied index.
 */
export class LinearizableReads {
  private readonly reads = new Map<string, PendingRead>();
  /** Reads confirmed at `index`, waiting for this node to apply it (until `deadlineMs`). */
  private readonly appliedWaiters: (ReadTicket & {
    readonly index: LogIndex;
    readonly resolve: () => void;
    readonly reject: (error: DlmError) => void;
  })[] = [];
  private readSequence = 0;

  constructor(private readonly host: ReadHost) {}

  /**
   * Asks the core for a read index; `index` resolves with it once the core confirmed it
   * (see confirmed). Throws UNAVAILABLE at once when the core cannot start a read now.
   * One deadline covers both halves of the read, the confirmation and the apply up to
   * it (waitApplied): a follower that hears the leader but gets no entries confirms a
   * read it can never apply.
   */
  begin(): ReadTicket & { readonly index: Promise<LogIndex> } {
    const { id, bootId, raft, clock } = this.host;
    // The boot id keeps an answer to a read of an earlier run from confirming this one.
    const context = `${id}/${bootId}/read/${++this.readSequence}`;
    const deadlineMs = clock.nowMs() + this.host.timeoutMs;
    const index = new Promise<LogIndex>((resolve, reject) => {
      this.reads.set(context, { resolve, reject, deadlineMs });
    });
    if (!raft.readIndex(context)) {
      this.reads.delete(context);
      throw unavailable(`${id} cannot start a linearizable read now`, raft.leaderId);
    }
    return { index, context, deadlineMs };
  }

  /**
   * Resolves once the core has applied up to `index` (see releaseApplied); rejects
   * DEADLINE_EXCEEDED once the read's deadline passes first (see expire).
   */
  waitApplied(index: LogIndex, read: ReadTicket): Promise<void> {
    if (this.host.raft.log.appliedIndex >= index) return Promise.resolve();
    const { context, deadlineMs } = read;
    return new Promise((resolve, reject) =>
      this.appliedWaiters.push({ index, context, deadlineMs, resolve, reject }),
    );
  }

  /** Reads whose index is known (a Ready's readStates). */
  confirmed(readStates: readonly ReadState[]): void {
    for (const readState of readStates) {
      const read = this.reads.get(readState.context);
      if (read === undefined) continue;
      this.reads.delete(readState.context);
      read.resolve(readState.index);
    }
  }

  /**
   * Reads the core will never serve (a Ready's refusedReads): the leader refused them
   * (its read queue full, or it no longer leads), or this node stopped leading. Failed
   * at once UNAVAILABLE, so a client retries now rather than at the read's deadline, and
   * a confirmation (EventHub) does not count a refusal as being cut off.
   */
  refused(contexts: readonly string[]): void {
    for (const context of contexts) {
      const read = this.reads.get(context);
      if (read === undefined) continue;
      this.reads.delete(context);
      read.reject(
        unavailable(
          `read ${context} was refused: the leader's read queue is full or leadership changed; retry`,
          this.host.raft.leaderId,
        ),
      );
    }
  }

  /** The core advanced its applied index: release the waiters it reached. */
  releaseApplied(): void {
    const applied = this.host.raft.log.appliedIndex;
    for (let i = this.appliedWaiters.length - 1; i >= 0; i--) {
      const waiter = this.appliedWaiters[i];
      if (waiter === undefined || waiter.index > applied) continue;
      this.appliedWaiters.splice(i, 1);
      waiter.resolve();
    }
  }

  expire(nowMs: number): void {
    for (const [context, read] of this.reads) {
      if (read.deadlineMs > nowMs) continue;
      this.reads.delete(context);
      read.reject(new DlmError('DEADLINE_EXCEEDED', `read ${context} was not confirmed in time`));
    }
    const applied = this.host.raft.log.appliedIndex;
    // A read whose index the state machine has reached is answered at the next release
    // (after the write in flight), not failed: its answer is there.
    const stateApplied = this.host.stateAppliedIndex();
    for (let i = this.appliedWaiters.length - 1; i >= 0; i--) {
      const waiter = this.appliedWaiters[i];
      if (waiter === undefined || waiter.deadlineMs > nowMs || waiter.index <= stateApplied) {
        continue;
      }
      this.appliedWaiters.splice(i, 1);
      waiter.reject(
        new DlmError(
          'DEADLINE_EXCEEDED',
          `read ${waiter.context} was confirmed at index ${waiter.index}, but ${this.host.id} applied only up to ${applied} in time`,
        ),
      );
    }
  }

  /** Fails every read not yet answered, UNAVAILABLE with `message`. */
  failAll(message: string): void {
    for (const read of this.reads.values()) read.reject(unavailable(message));
    this.reads.clear();
    // Those waiting to apply too: they waited for ever once the node stopped applying.
    for (const waiter of this.appliedWaiters.splice(0)) waiter.reject(unavailable(message));
  }
}
