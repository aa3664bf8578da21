/**
 * Raft paper §5.4 (safety): the election restriction (§5.4.1), committing entries from
 * previous terms (§5.4.2, Figure 8), and the no-op a new leader appends (§8).
 */
import { describe, expect, it } from 'vitest';
import type { MemoryStorage } from '../../src/raft/storage.ts';
import { AssertionError } from '../../src/util/assert.ts';
import { logIndex as idx, type NodeId, term as tm } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import {
  drain,
  ids,
  loneRaft,
  makeLeader,
  msg,
  Network,
  ofType,
  storageWithLog,
} from './harness.ts';

const [a, b, c] = ids('a', 'b', 'c');

describe('§5.4.1 Election restriction', () => {
  // The voter's log: terms [2, 3] at indexes 2..3, so its last entry is 3@3.
  it.each([
    {
      candidate: 'an older last term, even with a longer log',
      lastLogTerm: 2,
      lastLogIndex: 10,
      granted: false,
    },
    {
      candidate: 'the same last term but a shorter log',
      lastLogTerm: 3,
      lastLogIndex: 2,
      granted: false,
    },
    {
      candidate: 'the same last term and the same length',
      lastLogTerm: 3,
      lastLogIndex: 3,
      granted: true,
    },
    {
      candidate: 'the same last term and a longer log',
      lastLogTerm: 3,
      lastLogIndex: 4,
      granted: true,
    },
    {
      candidate: 'a newer last term, even with a shorter log',
      lastLogTerm: 4,
      lastLogIndex: 2,
      granted: true,
    },
  ])(
    'a voter whose last entry is 3@3, asked by a candidate with $candidate: granted = $granted',
    ({ lastLogTerm, lastLogIndex, granted }) => {
      const storage = storageWithLog({ voters: [a, b, c] }, [2, 3], { term: 3 });
      const { raft } = loneRaft(c, [a, b, c], new Prng(40), { preVote: false }, storage);

      raft.step(
        msg.requestVote(a, c, 5, { lastLogIndex: idx(lastLogIndex), lastLogTerm: tm(lastLogTerm) }),
      );

      const [response] = ofType(drain(raft, storage).messages, 'RequestVoteResponse');
      expect(response).toMatchObject({ to: a, term: 5, granted });
      expect(raft.votedFor).toBe(granted ? a : null);
    },
  );

  it('the same restriction applies to pre-votes, which change neither term nor vote', () => {
    const storage = storageWithLog({ voters: [a, b, c] }, [2, 3], { term: 3 });
    const { raft } = loneRaft(c, [a, b, c], new Prng(41), { preVote: true }, storage);

    raft.step(
      msg.requestVote(a, c, 4, { preVote: true, lastLogIndex: idx(9), lastLogTerm: tm(2) }),
    );
    raft.step(
      msg.requestVote(b, c, 4, { preVote: true, lastLogIndex: idx(3), lastLogTerm: tm(3) }),
    );

    const responses = ofType(drain(raft, storage).messages, 'RequestVoteResponse');
    expect(responses.map((m) => [m.to, m.granted, m.term, m.preVote])).toEqual([
      [a, false, 3, true],
      [b, true, 4, true],
    ]);
    expect(raft.term).toBe(3);
    expect(raft.votedFor).toBeNull();
  });

  it('Leader Completeness: a node that missed committed entries cannot become leader; the new leader holds them all', () => {
    const network = new Network({ prng: new Prng(42), voters: [a, b, c] });
    network.elect(a);
    network.isolate(c);
    for (let i = 0; i < 3; i++) network.propose(a, `v${i}`);
    network.stabilize();
    const committed = network.raft(a).log.commitIndex;
    expect(network.state(b)).toEqual(['v0', 'v1', 'v2']);

    // The old leader fails; c, which lacks the entries, comes back.
    network.heal();
    network.isolate(a);
    network.raft(c).campaign();
    network.stabilize();
    expect(network.raft(c).role).not.toBe('leader');

    network.tickUntil(() => network.leaders().some((id) => id !== a), 100);
    const newLeader = network.leaders().find((id) => id !== a);
    expect(newLeader).toBe(b);
    expect(network.raft(b).log.lastIndex()).toBeGreaterThanOrEqual(committed);
    network.tickAll(2);
    expect(network.state(c)).toEqual(['v0', 'v1', 'v2']);
  });
});

describe('§5.4.2 Committing entries from previous terms (Figure 8)', () => {
  const s = ids('s1', 's2', 's3', 's4', 's5');
  const [s1, s2, s3, s4, s5] = s;

  /**
   * Figure 8 (c), shifted by one index (index 1 is the bootstrap snapshot): S1 leads
   * term 4 and has re-replicated its term-2 entry at index 2 to S3, so that entry is on
   * a majority (S1, S2, S3). S5 holds the competing entry 2@3. S1's own no-op (3@4) has
   * reached S2 only.
   */
  function figure8c(seed: number) {
    const voters = [...s];
    const storages: Record<string, MemoryStorage> = {
      s1: storageWithLog({ voters }, [2], { term: 3 }),
      s2: storageWithLog({ voters }, [2], { term: 3 }),
      s3: storageWithLog({ voters }, [], { term: 3 }),
      s4: storageWithLog({ voters }, [], { term: 3 }),
      s5: storageWithLog({ voters }, [3], { term: 3 }),
    };
    const network = new Network({
      prng: new Prng(seed),
      voters,
      storages,
      // One entry per AppendEntries, so that 2@2 and the no-op travel separately.
      options: { preVote: false, checkQuorum: false, appendBatchBytesMax: 1 },
    });
    network.dropTo(s4);
    network.dropTo(s5);
    // S3 gets 2@2 but not the no-op: drop any AppendEntries carrying 3@4 once S3 holds index 2.
    const holdNoopFromS3 = network.dropIf(
      (m) =>
        m.type === 'AppendEntries' &&
        m.to === s3 &&
        m.entries.some((en) => en.term === 4) &&
        network.raft(s3).log.lastIndex() >= 2,
    );
    network.elect(s1);
    network.stabilize();
    return { network, holdNoopFromS3 };
  }

  function termAt(network: Network, id: NodeId, index: number): number | undefined {
    return network.raft(id).log.term(idx(index));
  }

  it('a leader does not commit an entry from an earlier term by counting replicas, even on a majority', () => {
    const { network } = figure8c(50);

    expect(network.raft(s1).term).toBe(4);
    const holders = s.filter((id) => termAt(network, id, 2) === 2);
    expect(holders).toEqual([s1, s2, s3]); // a majority of five
    expect(network.raft(s1).progressOf(s3)?.matchIndex).toBe(2);
    expect(network.raft(s1).log.commitIndex).toBe(1);
    for (const id of s) expect(network.node(id).applied).toEqual([]);
  });

  it('Figure 8 (d): that entry was indeed not safe to commit, since S5 can still be elected and overwrite it', () => {
    const { network } = figure8c(51);

    network.heal();
    network.isolate(s1); // S1 crashes
    // S5 campaigns in term 4 first, but S3 already gave its term-4 vote to S1.
    network.raft(s5).campaign();
    network.stabilize();
    expect(network.raft(s5).role).toBe('candidate');
    // In term 5 it wins with S3 and S4 (S2 holds the newer 3@4 and refuses).
    network.elect(s5);
    network.stabilize();

    expect(network.raft(s5).term).toBe(5);
    for (const id of [s2, s3, s4, s5]) expect(termAt(network, id, 2)).toBe(3);
    // Nobody ever applied 2@2; the harness would have thrown if two nodes applied different entries at 2.
    network.tickAll(1);
    expect(network.node(s3).applied.map((en) => `${en.index}@${en.term}`)).toEqual(['2@3', '3@5']);
  });

  it('Figure 8 (e): once an entry of the leader’s term (its no-op) is on a majority, it commits, and every earlier entry with it', () => {
    const { network, holdNoopFromS3 } = figure8c(52);

    holdNoopFromS3();
    network.tickAll(1);

    expect(network.raft(s1).log.commitIndex).toBe(3);
    expect(network.node(s3).applied.map((en) => `${en.index}@${en.term}`)).toEqual(['2@2', '3@4']);

    // Now S5 can no longer win: S2 and S3 hold a newer last term than it does.
    network.heal();
    network.isolate(s1);
    network.raft(s5).campaign();
    network.stabilize();
    expect(network.raft(s5).role).not.toBe('leader');
    for (const id of [s2, s3]) expect(termAt(network, id, 2)).toBe(2);
  });
});

describe('§5.4.3 State Machine Safety across crashes', () => {
  it('after every node restarts from what it persisted, committed entries survive and are applied again in order', () => {
    const network = new Network({ prng: new Prng(56), voters: [a, b, c] });
    network.elect(a);
    for (let i = 0; i < 4; i++) network.propose(a, `v${i}`);
    network.stabilize();
    network.tickAll(1);
    const terms = [a, b, c].map((id) => network.raft(id).term);

    for (const id of [a, b, c]) network.restart(id);
    for (const id of [a, b, c]) {
      expect(network.raft(id).role).toBe('follower');
      expect(network.raft(id).term).toBe(terms[0]);
      expect(network.raft(id).votedFor).toBe(
        network.node(id).storage.initialState().hardState.votedFor,
      );
    }
    network.processReadies(); // each node re-applies what it knew to be committed
    network.tickUntil(() => network.leaders().length === 1, 100);
    network.propose(network.leaders()[0] ?? a, 'after');
    network.stabilize();
    network.tickAll(1);

    for (const id of [a, b, c]) {
      expect(network.state(id)).toEqual(['v0', 'v1', 'v2', 'v3', 'after']);
    }
  });

  it('committed entries reach the host in pages of committedEntriesBytesMax, in order, and all of them', () => {
    const network = new Network({
      prng: new Prng(57),
      voters: [a],
      options: { committedEntriesBytesMax: 110 },
    });
    network.elect(a);
    for (let i = 0; i < 5; i++) network.propose(a, `${'x'.repeat(26)}${i}`); // 24 + 27 = 51 bytes each

    const pages: number[][] = [];
    for (let ready = network.processReady(a); ready !== null; ready = network.processReady(a)) {
      pages.push(ready.committedEntries.map((en) => en.index));
    }

    // The first Ready writes the entries; a lone voter commits them once they are durable.
    expect(pages).toEqual([[], [3, 4], [5, 6], [7]]);
    expect(network.state(a)).toHaveLength(5);
  });
});

describe('§5.2 Election Safety is asserted, not assumed', () => {
  it('a leader that receives AppendEntries from another leader of its own term stops with an AssertionError', () => {
    const { raft, storage } = loneRaft(a, [a, b, c], new Prng(54), { preVote: false });
    makeLeader(raft, storage, false);

    expect(() => raft.step(msg.append(b, a, raft.term))).toThrow(AssertionError);
  });

  it('a follower that hears two different leaders in one term stops with an AssertionError', () => {
    const { raft } = loneRaft(c, [a, b, c], new Prng(55), { preVote: false });
    raft.step(msg.heartbeat(a, c, 2));

    expect(() => raft.step(msg.heartbeat(b, c, 2))).toThrow(AssertionError);
  });
});

describe('§5.4.2 / §8 the no-op of a new leader', () => {
  it('a new leader appends a no-op of its term right after its log and commits it', () => {
    const network = new Network({ prng: new Prng(53), voters: [a, b, c] });
    network.elect(a);
    network.propose(a, 'x');
    network.stabilize();
    network.isolate(a);

    network.tickUntil(() => network.leaders().some((id) => id !== a), 100);

    const leader = network.leaders().find((id) => id !== a) ?? a;
    const raft = network.raft(leader);
    const last = raft.log.lastIndex();
    expect(last).toBe(4);
    const [noop] = raft.log.entriesFrom(last, Number.MAX_SAFE_INTEGER) ?? [];
    expect(noop).toEqual({ kind: 'noop', index: 4, term: raft.term });
    expect(raft.log.commitIndex).toBe(4);
  });
});
