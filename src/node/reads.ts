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
  /** How long a read waits for the core to confirm its index (proposalTimeoutMs). */
  readonly timeoutMs: number;
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
  private readonly appliedWaiters: { index: LogIndex; resolve: () => void }[] = [];
  private readSequence = 0;

  constructor(private readonly host: ReadHost) {}

  /**
   * Asks the core for a read index; resolves with it once the core confirmed it (see
   * confirmed). Throws UNAVAILABLE at once when the core cannot start a read now.
   */
  begin(): Promise<LogIndex> {
    const { id, bootId, raft, clock } = this.host;
    // The boot id keeps an answer to a read of an earlier run from confirming this one.
    const context = `${id}/${bootId}/read/${++this.readSequence}`;
    const index = new Promise<LogIndex>((resolve, reject) => {
      this.reads.set(context, {
        resolve,
        reject,
        deadlineMs: clock.nowMs() + this.host.timeoutMs,
      });
    });
    if (!raft.readIndex(context)) {
      this.reads.delete(context);
      throw unavailable(`${id} cannot start a linearizable read now`, raft.leaderId);
    }
    return index;
  }

  /** Resolves once the core has applied up to `index` (see releaseApplied). */
  waitApplied(index: LogIndex): Promise<void> {
    if (this.host.raft.log.appliedIndex >= index) return Promise.resolve();
    return new Promise((resolve) => this.appliedWaiters.push({ index, resolve }));
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
  }

  /** Fails every read still waiting for its index, UNAVAILABLE with `message`. */
  failAll(message: string): void {
    for (const read of this.reads.values()) read.reject(unavailable(message));
    this.reads.clear();
  }
}
