import { coalesceMessages } from '../raft/coalesce.ts';
import type { Message } from '../raft/index.ts';
import type { Scheduler } from './scheduler.ts';

/**
 * The Raft messages a node makes within one turn of the event loop leave together, at
 * its end, folded by coalesceMessages: under concurrent clients a leader would otherwise
 * send one AppendEntries per follower for every proposal and every commit advance. A
 * message waits at most for the turn to end; none leaves earlier than it was made.
 */
export class RaftOutbox {
  private pending: Message[] = [];
  private flushScheduled = false;

  constructor(
    private readonly deliver: (message: Message) => void,
    private readonly scheduler: Scheduler,
    /** appendBatchBytesMax: a folded AppendEntries carries no more entry bytes than this. */
    private readonly batchBytesMax: number,
  ) {}

  add(messages: readonly Message[]): void {
    if (messages.length === 0) return;
    for (const message of messages) this.pending.push(message);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.scheduler.soon(() => this.flush());
  }

  /** Sends what is pending now; also called before the transport closes. */
  flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    for (const message of coalesceMessages(batch, this.batchBytesMax)) this.deliver(message);
  }
}
