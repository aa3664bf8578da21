import { describe, expect, it } from 'vitest';
import { coalesceMessages } from '../../src/raft/coalesce.ts';
import type { Message } from '../../src/raft/index.ts';
import { logIndex } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import { drain, ids, loneRaft, makeLeader, msg, sentBy } from '../raft/harness.ts';

/**
 * Review of coalesce (5e8f637). FAILS on the branch (liveness only, no safety).
 *
 * A real follower answers an AppendEntries whose prevLogIndex is below its commit index
 * with "success up to my commit index" and ignores the entries (raft.ts
 * handleAppendEntries). So two appends that continue each other are NOT always worth one:
 * if the first starts below the follower's commit index and the second does not, one by
 * one the follower takes the second's entries; folded it takes none. The property test in
 * test/raft/coalesce.test.ts misses this because its follower model lacks that rule.
 *
 * Reached here from a real leader: a probe resent after a heartbeat answer (P2) carries
 * a higher commit index than the first probe (P1); the leader turns to replicate on P1's
 * late ack, so its next append starts below what b already committed, and a proposal in
 * the same turn continues it. The leader finds out only at the next heartbeat answer or
 * append (a rejection, then a probe): a round trip or a heartbeat lost, per occurrence.
 */
const [a, b, c] = ids('a', 'b', 'c');
const data = new TextEncoder().encode('x');

function scenario(): {
  follower: ReturnType<typeof loneRaft>;
  turn: Message[];
  leaderLast: number;
} {
  const leader = loneRaft(a, [a, b, c], new Prng(1));
  const follower = loneRaft(b, [a, b, c], new Prng(2));
  makeLeader(leader.raft, leader.storage, true); // its first append to b is lost
  const step = (to: ReturnType<typeof loneRaft>, messages: readonly Message[]): Message[] => {
    for (const message of messages) if (message.to === to.raft.id) to.raft.step(message);
    return sentBy(drain(to.raft, to.storage));
  };
  for (let i = 0; i < 3; i++) leader.raft.propose(data);
  drain(leader.raft, leader.storage);
  // A heartbeat answer lets the probe out: P1 = prev 1, entries 2..5, commit 1.
  leader.raft.tick();
  const heartbeats1 = sentBy(drain(leader.raft, leader.storage));
  const p1 = step(leader, step(follower, heartbeats1)).filter((m) => m.to === b);
  expect(p1.map((m) => m.type)).toEqual(['AppendEntries']);
  const lateAck = step(follower, p1); // b acks 5; the ack is slow
  // Meanwhile c holds everything: the leader commits 7.
  for (let i = 0; i < 2; i++) leader.raft.propose(data);
  drain(leader.raft, leader.storage);
  leader.raft.step(msg.appendResponse(c, a, leader.raft.term, { matchIndex: logIndex(7) }));
  drain(leader.raft, leader.storage);
  expect(leader.raft.log.commitIndex).toBe(7);
  // Another heartbeat answer resends the probe: P2 = prev 1, entries 2..7, commit 7.
  leader.raft.tick();
  const heartbeats2 = sentBy(drain(leader.raft, leader.storage));
  const p2 = step(leader, step(follower, heartbeats2)).filter((m) => m.to === b);
  step(follower, p2);
  expect(follower.raft.log.commitIndex).toBe(7);
  // One leader turn: P1's late ack (replicate from 6: prev 5, entries 6..7) and a proposal (8).
  for (const message of lateAck) leader.raft.step(message);
  leader.raft.propose(data);
  const turn = sentBy(drain(leader.raft, leader.storage)).filter((m) => m.to === b);
  return { follower, turn, leaderLast: leader.raft.log.lastIndex() };
}

describe('review coalesce: a follower ignores an append that starts below its commit index', () => {
  it('the folded turn leaves the follower holding what the messages one by one would', () => {
    const oneByOne = scenario();
    expect(oneByOne.turn.length).toBe(2);
    for (const message of oneByOne.turn) oneByOne.follower.raft.step(message);
    expect(oneByOne.follower.raft.log.lastIndex()).toBe(oneByOne.leaderLast);

    const folded = scenario();
    const sent = coalesceMessages(folded.turn, 64 * 1024);
    for (const message of sent) folded.follower.raft.step(message);
    expect(
      folded.follower.raft.log.lastIndex(),
      `folded into ${sent.length} message(s) from prevLogIndex ${sent[0]?.type === 'AppendEntries' ? sent[0].prevLogIndex : '?'}`,
    ).toBe(oneByOne.leaderLast);
  });
});
