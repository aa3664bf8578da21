import { describe, expect, it } from 'vitest';
import { withoutSupersededAcks } from '../../src/node/superseded-acks.ts';
import type { Message } from '../../src/raft/index.ts';
import { Prng } from '../../src/util/prng.ts';
import { drain, ids, loneRaft, makeLeader, sentBy } from '../raft/harness.ts';

/**
 * Review of perf-cpu (46f110f): the leader refills a follower's AppendEntries pipeline
 * with one `sendAppend` per acknowledgement it steps (raft.ts handleAppendResponse), and
 * `sendAppend` sends ONE batch. So the number of acks is the number of batches that go
 * back out: a follower that acknowledges k pipelined batches in one Ready and has k-1
 * of those acks dropped as "superseded" gets one batch back instead of k, and a
 * follower catching up on a backlog larger than appendBatchBytesMax is fed one batch
 * per round trip (plus one per heartbeat) instead of a full window.
 *
 * The host loop below is the one node.ts runs: a follower steps every append that
 * arrived while it was busy, then sends the acks of one Ready together (sendRaft).
 */
const [a, b, c] = ids('a', 'b', 'c');
/** REVIEW_BACKLOG=2000 REVIEW_INFLIGHT=64 (the default window): 64 rounds vs 1002. */
const BACKLOG_ENTRIES = Number(process.env.REVIEW_BACKLOG ?? 120);

/** Rounds (leader tick, its sends, follower Ready, acks back) until the follower holds the leader's log. */
function roundsToCatchUp(filterAcks: boolean): number {
  const options = {
    appendBatchBytesMax: 1,
    inflightMessagesMax: Number(process.env.REVIEW_INFLIGHT ?? 8),
  };
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
    for (const message of filterAcks ? withoutSupersededAcks(acks) : acks) {
      leader.raft.step(message);
    }
    if (follower.raft.log.lastIndex() === leader.raft.log.lastIndex()) {
      return round;
    }
  }
  throw new Error('the follower never caught up');
}

describe('review perf-cpu: superseded acks and the leader pipeline', () => {
  it('dropping superseded acks does not slow a lagging follower catching up', () => {
    const everyAck = roundsToCatchUp(false);
    const lastAckOnly = roundsToCatchUp(true);
    // Same entries, same link: the leader should refill the window either way.
    expect(
      lastAckOnly,
      `rounds to catch up ${BACKLOG_ENTRIES} one-entry batches: every ack ${everyAck}, last ack only ${lastAckOnly}`,
    ).toBeLessThanOrEqual(everyAck);
  });
});
