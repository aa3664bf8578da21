import { describe, expect, it } from 'vitest';
import type { Message } from '../../src/raft/index.ts';
import { Prng } from '../../src/util/prng.ts';
import { drain, ids, loneRaft, makeLeader, sentBy } from '../raft/harness.ts';

/**
 * Review of perf-cpu (46f110f, since reverted): the leader refills a follower's
 * AppendEntries pipeline with one `sendAppend` per acknowledgement it steps (raft.ts
 * handleAppendResponse), and `sendAppend` sends ONE batch. So every ack a follower sends
 * is a batch that goes back out: a host that drops "superseded" acks (k acks of one Ready
 * sent as 1) feeds a lagging follower one batch per round trip instead of a full window
 * (62 rounds instead of 19 here, 1002 instead of 64 with the default window and 2000
 * batches). The host must therefore send every ack; this test pins the catch-up pace.
 * Teeth: with only the last ack of each Ready stepped by the leader, it fails (injected once).
 *
 * The host loop below is the one node.ts runs: a follower steps every append that
 * arrived while it was busy, then sends the acks of one Ready together (sendRaft).
 */
const [a, b, c] = ids('a', 'b', 'c');
/** REVIEW_BACKLOG=2000 REVIEW_INFLIGHT=64 (the default window): 64 rounds. */
const BACKLOG_ENTRIES = Number(process.env.REVIEW_BACKLOG ?? 120);
const INFLIGHT_MESSAGES_MAX = Number(process.env.REVIEW_INFLIGHT ?? 8);

/** Rounds (leader tick, its sends, follower Ready, acks back) until the follower holds the leader's log. */
function roundsToCatchUp(): number {
  const options = { appendBatchBytesMax: 1, inflightMessagesMax: INFLIGHT_MESSAGES_MAX };
  const leader = loneRaft(a, [a, b, c], new Prng(1), options);
  const follower = loneRaft(b, [a, b, c], new Prng(2), options);
  makeLeader(leader.raft, leader.storage, true);
  for (let i = 0; i < BACKLOG_ENTRIES; i++) {
    expect(leader.raft.propose(new TextEncoder().encode(`v${i}`)).ok).toBe(true);
  }
  drain(leader.raft, leader.storage); // c is down and b is not reached yet: all of it is lost
  for (let round = 1; round <= 10 * BACKLOG_ENTRIES; round++) {
    leader.raft.tick();
    const toFollower = sentBy(drain(leader.raft, leader.storage)).filter((m) => m.to === b);
    for (const message of toFollower) follower.raft.step(message);
    const acks: readonly Message[] = sentBy(drain(follower.raft, follower.storage));
    for (const message of acks) leader.raft.step(message);
    if (follower.raft.log.lastIndex() === leader.raft.log.lastIndex()) {
      return round;
    }
  }
  throw new Error('the follower never caught up');
}

describe('review perf-cpu: every ack refills the leader pipeline', () => {
  it('a lagging follower catches up about one window per round', () => {
    const rounds = roundsToCatchUp();
    // One window of one-entry batches per round trip, plus a few rounds to find the
    // follower's match (probe) and for the window to fill.
    const boundRounds = Math.ceil(BACKLOG_ENTRIES / INFLIGHT_MESSAGES_MAX) + 5;
    expect(
      rounds,
      `rounds to catch up ${BACKLOG_ENTRIES} one-entry batches with a window of ${INFLIGHT_MESSAGES_MAX}`,
    ).toBeLessThanOrEqual(boundRounds);
  });
});
