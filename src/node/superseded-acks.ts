import type { Message } from '../raft/index.ts';

/**
 * Drops each successful AppendEntriesResponse that a later one in the same list, to
 * the same leader and of the same term, supersedes (its matchIndex is at least as
 * high). A follower that persisted several appends in one write acknowledges each; the
 * leader takes only the highest match from them (matchIndex, nextIndex and the
 * inflight window only move forward), so the last one says all the others do, and each
 * one sent costs both ends an encode, a decode, a step and often a commit broadcast.
 * Rejections and every other message are kept, in order.
 */
export function withoutSupersededAcks(messages: readonly Message[]): readonly Message[] {
  if (messages.length < 2) return messages;
  /** Per recipient and term, the highest successful match acknowledged later in the list. */
  const laterMatch = new Map<string, number>();
  const kept: Message[] = [];
  let dropped = false;
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i] as Message;
    if (message.type === 'AppendEntriesResponse' && message.success) {
      const key = `${message.to}\u0000${message.term}`;
      const later = laterMatch.get(key);
      if (later !== undefined && later >= message.matchIndex) {
        dropped = true;
        continue;
      }
      laterMatch.set(key, Math.max(later ?? 0, message.matchIndex));
    }
    kept.push(message);
  }
  return dropped ? kept.reverse() : messages;
}
