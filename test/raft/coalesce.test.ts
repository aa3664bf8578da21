import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { coalesceMessages } from '../../src/raft/coalesce.ts';
import type { Entry, Message, MessageOf } from '../../src/raft/index.ts';
import { type LogIndex, logIndex, type NodeId, term } from '../../src/util/ids.ts';

const LEADER = 'n1' as NodeId;
const BYTES_MAX = 64 * 1024;

function entry(index: number, entryTerm = 2, bytes = 10): Entry {
  return {
    kind: 'normal',
    term: term(entryTerm),
    index: logIndex(index),
    data: new Uint8Array(bytes),
  };
}

function append(
  to: string,
  prev: number,
  entries: Entry[],
  leaderCommit: number,
  messageTerm = 2,
): MessageOf<'AppendEntries'> {
  return {
    type: 'AppendEntries',
    from: LEADER,
    to: to as NodeId,
    term: term(messageTerm),
    prevLogIndex: logIndex(prev),
    prevLogTerm: term(prev === 0 ? 0 : 2),
    entries,
    leaderCommit: logIndex(leaderCommit),
  };
}

function ack(to: string, matchIndex: number, success = true, ackTerm = 2): Message {
  return {
    type: 'AppendEntriesResponse',
    from: 'n2' as NodeId,
    to: to as NodeId,
    term: term(ackTerm),
    success,
    matchIndex: logIndex(success ? matchIndex : 0),
    rejectedIndex: logIndex(success ? 0 : matchIndex),
    hintIndex: logIndex(0),
    hintTerm: null,
  };
}

const indexes = (message: Message): number[] =>
  message.type === 'AppendEntries' ? message.entries.map((each) => each.index) : [];

describe('coalesceMessages', () => {
  it('joins appends to one follower that continue each other, with the later commit index', () => {
    const out = coalesceMessages(
      [
        append('n2', 4, [entry(5)], 3),
        append('n3', 4, [entry(5)], 3),
        append('n2', 5, [entry(6), entry(7)], 4),
        append('n2', 7, [], 7),
        append('n3', 5, [entry(6)], 4),
      ],
      BYTES_MAX,
    );
    expect(out).toHaveLength(2);
    expect(out[0]).toMatchObject({ to: 'n2', prevLogIndex: 4, leaderCommit: 7 });
    expect(indexes(out[0] as Message)).toEqual([5, 6, 7]);
    expect(out[1]).toMatchObject({ to: 'n3', prevLogIndex: 4, leaderCommit: 4 });
    expect(indexes(out[1] as Message)).toEqual([5, 6]);
  });

  it('keeps apart appends that do not continue each other, of another term, or past the byte bound', () => {
    const resend = [append('n2', 4, [entry(5), entry(6)], 3), append('n2', 4, [entry(5)], 3)];
    expect(coalesceMessages(resend, BYTES_MAX)).toHaveLength(2);
    const newTerm = [append('n2', 4, [entry(5)], 3), append('n2', 5, [entry(6, 3)], 3, 3)];
    expect(coalesceMessages(newTerm, BYTES_MAX)).toHaveLength(2);
    const big = [append('n2', 4, [entry(5, 2, 600)], 3), append('n2', 5, [entry(6, 2, 600)], 3)];
    expect(coalesceMessages(big, 1_000)).toHaveLength(2);
    expect(coalesceMessages(big, 2_000)).toHaveLength(1);
  });

  it('does not join across another message to the same follower', () => {
    const heartbeat: Message = {
      type: 'Heartbeat',
      from: LEADER,
      to: 'n2' as NodeId,
      term: term(2),
      leaderCommit: logIndex(3),
      readSequence: 1,
    };
    const out = coalesceMessages(
      [append('n2', 4, [entry(5)], 3), heartbeat, append('n2', 5, [entry(6)], 3)],
      BYTES_MAX,
    );
    expect(out.map((message) => message.type)).toEqual([
      'AppendEntries',
      'Heartbeat',
      'AppendEntries',
    ]);
  });

  it('keeps every ack: the leader refills a pipeline one batch per ack it steps', () => {
    const acks = [ack('n1', 5), ack('n1', 7), ack('n1', 4, false), ack('n1', 8)];
    expect(coalesceMessages(acks, BYTES_MAX)).toEqual(acks);
  });

  it('leaves a follower in the same state as the messages one by one would (property)', () => {
    fc.assert(
      fc.property(leaderTurns(), ({ messages, followerLog }) => {
        const oneByOne = replay(followerLog, messages);
        const folded = coalesceMessages(messages, 300);
        const together = replay(followerLog, folded);
        expect(together).toEqual(oneByOne);
        for (const message of folded) {
          if (message.type !== 'AppendEntries') continue;
          const bytes = message.entries.reduce((sum, each) => sum + 24 + dataBytes(each), 0);
          const single = messages.some(
            (original) => original.type === 'AppendEntries' && original.entries === message.entries,
          );
          expect(single || bytes <= 300).toBe(true);
        }
        expect(folded.length).toBeLessThanOrEqual(messages.length);
      }),
      { numRuns: 1_000 },
    );
  });
});

function dataBytes(each: Entry): number {
  return each.kind === 'normal' ? each.data.byteLength : 0;
}

/**
 * A leader's sends over one turn to one follower: batches that continue the log (as
 * proposals do), commit-only appends, resends from an earlier point (as after a
 * rejection), and heartbeats, in any mix; the follower may already hold a prefix.
 */
function leaderTurns(): fc.Arbitrary<{ messages: Message[]; followerLog: number }> {
  const step = fc.oneof(
    fc.record({ kind: fc.constant('batch' as const), count: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ kind: fc.constant('commit' as const), count: fc.constant(0) }),
    fc.record({ kind: fc.constant('resend' as const), count: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ kind: fc.constant('heartbeat' as const), count: fc.constant(0) }),
  );
  return fc
    .record({
      start: fc.integer({ min: 0, max: 5 }),
      followerLog: fc.integer({ min: 0, max: 5 }),
      steps: fc.array(step, { maxLength: 12 }),
      bytes: fc.array(fc.integer({ min: 1, max: 120 }), { minLength: 40, maxLength: 40 }),
    })
    .map(({ start, followerLog, steps, bytes }) => {
      let sent = start;
      let commit = 0;
      const messages: Message[] = [];
      for (const { kind, count } of steps) {
        if (kind === 'heartbeat') {
          messages.push({
            type: 'Heartbeat',
            from: LEADER,
            to: 'n2' as NodeId,
            term: term(2),
            leaderCommit: logIndex(Math.min(commit, followerLog)),
            readSequence: 0,
          });
          continue;
        }
        if (kind === 'commit') {
          commit = sent;
          messages.push(append('n2', sent, [], commit));
          continue;
        }
        const from = kind === 'resend' ? Math.max(0, sent - count) : sent;
        const last = kind === 'resend' ? sent : sent + count;
        const entries: Entry[] = [];
        for (let index = from + 1; index <= last; index++) {
          entries.push(entry(index, 2, bytes[index % bytes.length] ?? 1));
        }
        messages.push(append('n2', from, entries, commit));
        sent = last;
      }
      return { messages, followerLog: Math.min(followerLog, start) };
    });
}

/**
 * An independent follower: a log of (index, term) pairs and a commit index, changed by
 * AppendEntries as §5.3 says (a gap is rejected; the commit index is the leader's,
 * bounded by the last new entry) and by heartbeats. Every message is from one leader of
 * term 2, so no entry conflicts here; holding `held` entries first. A batch that is not
 * the run of entries right after its prevLogIndex is malformed: the state says so.
 */
function replay(held: number, messages: readonly Message[]): { log: number[]; commit: number } {
  const log: number[] = [];
  for (let index = 1; index <= held; index++) log.push(index);
  let commit = 0;
  for (const message of messages) {
    if (message.type === 'Heartbeat') {
      commit = Math.max(commit, Math.min(message.leaderCommit, log.length));
      continue;
    }
    if (message.type !== 'AppendEntries') continue;
    // A follower reads the batch as the entries right after prevLogIndex.
    const contiguous = message.entries.every(
      (each, at) => each.index === message.prevLogIndex + 1 + at,
    );
    if (!contiguous) return { log: [], commit: -1 };
    if (message.prevLogIndex > log.length) continue;
    for (const each of message.entries) log[each.index - 1] = each.index;
    const lastNew = (message.entries.at(-1)?.index ?? message.prevLogIndex) as LogIndex;
    commit = Math.max(commit, Math.min(message.leaderCommit, lastNew));
  }
  return { log, commit };
}
