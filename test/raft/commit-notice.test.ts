/**
 * Commit notices: the empty AppendEntries a leader sends a replicating follower only to
 * carry a new commit index. The follower answers one only with a refusal; every other
 * append is answered as before, so an acknowledgement that is lost is still made up.
 */
import { describe, expect, it } from 'vitest';
import { coalesceMessages } from '../../src/raft/coalesce.ts';
import type { MessageOf } from '../../src/raft/types.ts';
import { NoticesLaggingFollowers } from '../../src/tools/simulate/bugs.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import { entry, ids, Network, type NetworkConfig, ofType } from './harness.ts';

const [a, b, c] = ids('a', 'b', 'c');

function notices(network: Network): MessageOf<'AppendEntries'>[] {
  return ofType(network.sent, 'AppendEntries').filter((m) => m.commitNotice === true);
}

describe('commit notices', () => {
  it('a leader tells caught-up followers of a commit with a notice, which they apply and do not answer', () => {
    const network = new Network({ prng: new Prng(51), voters: [a, b, c] });
    network.elect(a);
    const sentBefore = network.sent.length;

    network.propose(a, 'x');
    network.stabilize();

    const sent = network.sent.slice(sentBefore);
    const appends = ofType(sent, 'AppendEntries');
    const sentNotices = appends.filter((m) => m.commitNotice === true);
    expect(sentNotices.map((m) => m.to).sort()).toEqual([b, c]);
    for (const notice of sentNotices) {
      expect(notice.entries).toEqual([]);
      expect(notice.leaderCommit).toBe(3);
    }
    // One answer per follower: to the batch that carried x, none to the notice.
    const answers = ofType(sent, 'AppendEntriesResponse');
    expect(answers.map((m) => m.from).sort()).toEqual([b, c]);
    for (const follower of [b, c]) expect(network.state(follower)).toEqual(['x']);
  });

  it('a follower that cannot match a notice refuses it, so the leader learns it is short', () => {
    const network = new Network({ prng: new Prng(52), voters: [a, b, c] });
    network.elect(a);
    network.stabilize();
    const raftB = network.raft(b);
    const term = raftB.term;

    // A notice that claims b holds index 9 of this term, which it does not.
    raftB.step({
      type: 'AppendEntries',
      from: a,
      to: b,
      term,
      prevLogIndex: idx(9),
      prevLogTerm: term,
      entries: [],
      leaderCommit: idx(2),
      commitNotice: true,
    });
    const ready = raftB.ready();
    const refusals = ofType(ready.messages, 'AppendEntriesResponse');
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ to: a, success: false, rejectedIndex: 9 });
    raftB.advance(ready);
  });

  it('a lost acknowledgement is made up: the append a heartbeat answer prompts is answered', () => {
    const network = new Network({ prng: new Prng(53), voters: [a, b, c] });
    network.elect(a);
    network.isolate(c);
    // b's acknowledgement of x is lost; without c, a needs b to commit x.
    let dropped = 0;
    const stopDropping = network.dropIf((m) => {
      if (m.type !== 'AppendEntriesResponse' || m.from !== b || dropped > 0) return false;
      dropped++;
      return true;
    });
    const { index } = network.propose(a, 'x') as { index: number };
    network.stabilize();
    stopDropping();
    expect(dropped).toBe(1);
    expect(network.raft(a).log.commitIndex).toBeLessThan(index);

    network.tickUntil(() => network.raft(a).log.commitIndex >= index, 20);
    expect(network.state(b)).toEqual(['x']);
  });

  it('catches the planted bug: a leader that sends a lagging follower a notice never commits', () => {
    const network = new Network({
      prng: new Prng(53),
      voters: [a, b, c],
      createRaft: (config) => new NoticesLaggingFollowers(config),
    });
    network.elect(a);
    network.isolate(c);
    let dropped = 0;
    network.dropIf((m) => {
      if (m.type !== 'AppendEntriesResponse' || m.from !== b || dropped > 0) return false;
      dropped++;
      return true;
    });
    const { index } = network.propose(a, 'x') as { index: number };
    network.stabilize();

    expect(() => network.tickUntil(() => network.raft(a).log.commitIndex >= index, 20)).toThrow(
      /not reached/,
    );
    // What b was sent after x, prompted by its heartbeat answers, went as notices, unanswered.
    expect(notices(network).some((m) => m.to === b && m.prevLogIndex >= index)).toBe(true);
    expect(network.raft(a).progressOf(b)?.matchIndex).toBeLessThan(index);
  });

  it('catches the planted bug in a leadership transfer: the transferee whose acknowledgement was lost never gets TimeoutNow', () => {
    const transferFinishes = (createRaft?: NetworkConfig['createRaft']): boolean => {
      const network = new Network({
        prng: new Prng(101),
        voters: [a, b, c],
        options: { heartbeatIntervalTicks: 4, electionTimeoutTicks: 10 },
        ...(createRaft === undefined ? {} : { createRaft }),
      });
      network.elect(a);
      network.stabilize();
      // b's answers to x and to the append the transfer sends are lost; c commits x.
      let dropped = 0;
      network.dropIf((m) => {
        if (m.type !== 'AppendEntriesResponse' || m.from !== b || dropped >= 2) return false;
        dropped++;
        return true;
      });
      network.propose(a, 'x');
      expect(network.raft(a).transferLeadership(b)).toEqual({ ok: true });
      network.stabilize();
      try {
        network.tickUntil(() => network.raft(b).role === 'leader', 9);
        return true;
      } catch {
        return false;
      }
    };
    expect(transferFinishes()).toBe(true);
    expect(transferFinishes((config) => new NoticesLaggingFollowers(config))).toBe(false);
  });

  it('a notice folded with a batch of entries is answered: only two notices fold into one', () => {
    const base = { from: a, to: b, term: tm(2), prevLogTerm: tm(2) } as const;
    const notice: MessageOf<'AppendEntries'> = {
      ...base,
      type: 'AppendEntries',
      prevLogIndex: idx(3),
      entries: [],
      leaderCommit: idx(3),
      commitNotice: true,
    };
    const batch: MessageOf<'AppendEntries'> = {
      ...base,
      type: 'AppendEntries',
      prevLogIndex: idx(3),
      entries: [entry(4, 2, 'y')],
      leaderCommit: idx(3),
    };
    const later = { ...notice, leaderCommit: idx(4) };

    const [noticeThenBatch] = coalesceMessages([notice, batch], 1 << 20);
    expect(noticeThenBatch).toMatchObject({ entries: [{ index: 4 }] });
    expect(noticeThenBatch).not.toHaveProperty('commitNotice');
    const [twoNotices] = coalesceMessages([notice, later], 1 << 20);
    expect(twoNotices).toMatchObject({ commitNotice: true, leaderCommit: 4, entries: [] });
    // An empty append that wants its answer (a heartbeat answer's prompt) keeps wanting
    // it when folded with a notice, in either order.
    const { commitNotice: _, ...prompted } = later;
    for (const pair of [
      [notice, prompted],
      [prompted, later],
    ]) {
      const [folded] = coalesceMessages(pair, 1 << 20);
      expect(folded).toMatchObject({ entries: [], leaderCommit: 4 });
      expect(folded).not.toHaveProperty('commitNotice');
    }
  });
});
