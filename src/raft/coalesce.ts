import type { LogIndex, Term } from '../util/ids.ts';
import { withFields } from '../util/objects.ts';
import { entrySizeBytes, type Message, type MessageOf } from './types.ts';

/**
 * Folds the messages one node sends within one turn into fewer, equivalent ones.
 *
 * A leader makes one AppendEntries per follower for every proposal, and another for
 * every commit advance; under concurrent clients that is several messages per write,
 * each paying its encoding, framing and a step on the receiver. Two of them in a row to
 * one follower, the second continuing exactly where the first ends, say the same as one
 * carrying both batches and the later commit index (a follower takes the part past its
 * commit index even when the batch starts below it: follower-replication.ts
 * pastCommitIndex).
 *
 * Acknowledgements are not folded, though a later one implies an earlier: the leader
 * sends a follower one new batch per acknowledgement it steps, so folding k of them into
 * one would shrink a lagging follower's pipeline to a batch per round trip
 * (test/review/coalesce-ack-window.test.ts).
 *
 * Only messages adjacent in one recipient's sequence are folded, so each link still
 * carries its messages in the order they were made; nothing is ever sent earlier than
 * it was made, so what had to wait for the disk still did.
 */
export function coalesceMessages(messages: readonly Message[], batchBytesMax: number): Message[] {
  const out: Message[] = [];
  /** Per recipient: where its latest message sits in `out`. */
  const lastSlot = new Map<string, number>();
  for (const message of messages) {
    const slot = lastSlot.get(message.to);
    const previous = slot === undefined ? undefined : out[slot];
    if (slot !== undefined && previous !== undefined) {
      const merged = appendAfter(previous, message, batchBytesMax);
      if (merged !== null) {
        out[slot] = merged;
        continue;
      }
    }
    lastSlot.set(message.to, out.length);
    out.push(message);
  }
  return out;
}

/** `next` appended to `previous` as one AppendEntries, or null when they do not join. */
function appendAfter(
  previous: Message,
  next: Message,
  batchBytesMax: number,
): MessageOf<'AppendEntries'> | null {
  if (previous.type !== 'AppendEntries' || next.type !== 'AppendEntries') return null;
  if (previous.term !== next.term) return null;
  const end = lastOf(previous);
  if (next.prevLogIndex !== end.index || next.prevLogTerm !== end.term) return null;
  if (next.entries.length > 0 && batchBytes(previous) + batchBytes(next) > batchBytesMax)
    return null;
  const { commitNotice: _, ...rest } = previous;
  const joined = {
    ...rest,
    entries: next.entries.length === 0 ? previous.entries : [...previous.entries, ...next.entries],
    // A leader's commit index only rises within its term.
    leaderCommit: next.leaderCommit,
  };
  // Unanswered only if neither part wanted an answer: a batch of entries always does.
  return previous.commitNotice === true && next.commitNotice === true
    ? withFields(joined, { commitNotice: true as const })
    : joined;
}

function lastOf(append: MessageOf<'AppendEntries'>): { index: LogIndex; term: Term } {
  const last = append.entries.at(-1);
  return last === undefined
    ? { index: append.prevLogIndex, term: append.prevLogTerm }
    : { index: last.index, term: last.term };
}

function batchBytes(append: MessageOf<'AppendEntries'>): number {
  let bytes = 0;
  for (const entry of append.entries) bytes += entrySizeBytes(entry);
  return bytes;
}
