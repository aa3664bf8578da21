/**
 * Raft paper §5.3 (log replication), including Figure 7, the "fast backtracking"
 * optimization the section sketches, and the pipelining and batching of AppendEntries
 * that DESIGN.md §3 asks for.
 */
import { describe, expect, it } from 'vitest';
import { entrySizeBytes } from '../../src/raft/types.ts';
import { logIndex as idx, type NodeId, term as tm } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import {
  drain,
  entry,
  ids,
  logTerms,
  loneRaft,
  msg,
  Network,
  ofType,
  storageWithLog,
  storedTerms,
} from './harness.ts';

const [a, b, c, d, e] = ids('a', 'b', 'c', 'd', 'e');
const T = 10;

describe('§5.3 Log replication: the leader', () => {
  it('appends a proposal to its own log, persists it, and sends it to every follower without waiting for its own write', () => {
    const network = new Network({ prng: new Prng(20), voters: [a, b, c] });
    network.elect(a);

    const result = network.propose(a, 'x');
    const ready = network.processReady(a);

    expect(result).toEqual({ ok: true, index: 3, term: 2 });
    expect(ready?.entries.map((en) => [en.index, en.term, en.kind])).toEqual([[3, 2, 'normal']]);
    expect(ready?.mustSync).toBe(true);
    // Thesis §10.2.1: the appends may leave before the leader's own write is durable.
    expect(ofType(ready?.messages ?? [], 'AppendEntries')).toEqual([]);
    const appends = ofType(ready?.earlyMessages ?? [], 'AppendEntries');
    expect(appends.map((m) => m.to).sort()).toEqual([b, c]);
    for (const append of appends) {
      expect(append).toMatchObject({ term: 2, prevLogIndex: 2, prevLogTerm: 2, leaderCommit: 2 });
      expect(append.entries.map((en) => en.index)).toEqual([3]);
    }
  });

  it('refuses proposals when it is not the leader, naming the leader it knows', () => {
    const network = new Network({ prng: new Prng(21), voters: [a, b, c] });
    network.elect(a);

    expect(network.propose(b, 'x')).toEqual({ ok: false, reason: 'notLeader', leaderId: a });
  });

  it('commits an entry once a majority stores it (3 of 5), and the followers learn the commit and apply it', () => {
    const network = new Network({ prng: new Prng(22), voters: [a, b, c, d, e] });
    network.elect(a);
    network.dropTo(d);
    network.dropTo(e);

    network.propose(a, 'x');
    network.stabilize();

    for (const id of [a, b, c]) {
      expect(network.raft(id).log.commitIndex).toBe(3);
      expect(network.state(id)).toEqual(['x']);
    }
    expect(network.state(d)).toEqual([]);
    expect(network.state(e)).toEqual([]);
  });

  it('does not commit an entry that only a minority stores (2 of 5)', () => {
    const network = new Network({ prng: new Prng(23), voters: [a, b, c, d, e] });
    network.elect(a);
    network.dropTo(c);
    network.dropTo(d);
    network.dropTo(e);

    network.propose(a, 'x');
    network.stabilize();

    expect(network.raft(b).log.lastIndex()).toBe(3);
    expect(network.raft(a).log.commitIndex).toBe(2);
    expect(network.state(a)).toEqual([]);
    expect(network.state(b)).toEqual([]);
  });

  it('retries: a follower that missed entries while down catches up when it comes back', () => {
    const network = new Network({ prng: new Prng(24), voters: [a, b, c] });
    network.elect(a);
    network.isolate(c);
    for (let i = 0; i < 5; i++) network.propose(a, `v${i}`);
    network.stabilize();
    expect(network.state(c)).toEqual([]);

    network.heal();
    network.tickAll(2);

    expect(network.state(c)).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
    expect(network.raft(c).log.commitIndex).toBe(network.raft(a).log.commitIndex);
  });

  it('refuses proposals past uncommittedEntriesMax (backpressure) and accepts again once they commit', () => {
    const network = new Network({
      prng: new Prng(25),
      voters: [a, b, c],
      options: { uncommittedEntriesMax: 3 },
    });
    network.elect(a);
    network.dropTo(b);
    network.dropTo(c);

    const accepted = [1, 2, 3].map((i) => network.propose(a, `v${i}`).ok);
    const refused = network.propose(a, 'v4');

    expect(accepted).toEqual([true, true, true]);
    expect(refused).toEqual({ ok: false, reason: 'tooManyUncommitted', leaderId: a });

    network.heal();
    network.tickAll(2);
    expect(network.propose(a, 'v4').ok).toBe(true);
  });
});

describe('§5.3 Log replication: the follower', () => {
  /** Follower a of term 3 whose log holds terms [2, 2, 3] at indexes 2..4. */
  function followerWithLog(terms: number[] = [2, 2, 3], hardTerm = 3) {
    const storage = storageWithLog({ voters: [a, b, c] }, terms, { term: hardTerm });
    return loneRaft(a, [a, b, c], new Prng(26), {}, storage);
  }

  it('rejects AppendEntries whose prevLogTerm does not match, hinting its term there and where that term starts', () => {
    const { raft, storage } = followerWithLog();

    raft.step(
      msg.append(b, a, 3, { prevLogIndex: idx(4), prevLogTerm: tm(2), entries: [entry(5, 3)] }),
    );
    raft.step(
      msg.append(b, a, 3, { prevLogIndex: idx(3), prevLogTerm: tm(3), entries: [entry(4, 3)] }),
    );

    expect(raft.log.lastIndex()).toBe(4);
    const responses = ofType(drain(raft, storage).messages, 'AppendEntriesResponse');
    expect(responses.map((m) => [m.success, m.rejectedIndex, m.hintTerm, m.hintIndex])).toEqual([
      [false, 4, 3, 4],
      [false, 3, 2, 2],
    ]);
    expect(storedTerms(storage)).toEqual([2, 2, 3]);
  });

  it('rejects AppendEntries whose prevLogIndex is past its last entry, hinting its next index', () => {
    const { raft, storage } = followerWithLog();

    raft.step(
      msg.append(b, a, 3, { prevLogIndex: idx(6), prevLogTerm: tm(3), entries: [entry(7, 3)] }),
    );

    const [response] = ofType(drain(raft, storage).messages, 'AppendEntriesResponse');
    expect(response).toMatchObject({
      success: false,
      rejectedIndex: 6,
      hintIndex: 5,
      hintTerm: null,
    });
    expect(raft.log.lastIndex()).toBe(4);
  });

  it('deletes a conflicting entry and all that follow it, then appends the new entries', () => {
    const { raft, storage } = followerWithLog([2, 2, 3, 3]);

    raft.step(
      msg.append(b, a, 4, { prevLogIndex: idx(3), prevLogTerm: tm(2), entries: [entry(4, 4)] }),
    );

    expect(logTerms(raft.log)).toEqual([2, 2, 4]);
    const ready = drain(raft, storage);
    expect(storedTerms(storage)).toEqual([2, 2, 4]);
    expect(storage.lastIndex()).toBe(4);
    const [response] = ofType(ready.messages, 'AppendEntriesResponse');
    expect(response).toMatchObject({ success: true, matchIndex: 4, term: 4 });
  });

  it('keeps entries after a matching prefix: a repeated or reordered AppendEntries does not truncate', () => {
    const { raft, storage } = followerWithLog();

    raft.step(
      msg.append(b, a, 3, { prevLogIndex: idx(2), prevLogTerm: tm(2), entries: [entry(3, 2)] }),
    );

    expect(logTerms(raft.log)).toEqual([2, 2, 3]);
    const [response] = ofType(drain(raft, storage).messages, 'AppendEntriesResponse');
    // It vouches only for what this message covered.
    expect(response).toMatchObject({ success: true, matchIndex: 3 });
  });

  it('advances its commit index to min(leaderCommit, index of the last new entry) and hands the entries to apply', () => {
    const { raft, storage } = followerWithLog([], 2);

    raft.step(
      msg.append(b, a, 2, {
        prevLogIndex: idx(1),
        prevLogTerm: tm(1),
        entries: [entry(2, 2), entry(3, 2)],
        leaderCommit: idx(5),
      }),
    );

    expect(raft.log.commitIndex).toBe(3);
    const ready = drain(raft, storage);
    expect(ready.entries.map((en) => en.index)).toEqual([2, 3]);
    expect(ready.committedEntries.map((en) => en.index)).toEqual([2, 3]);
    expect(ready.hardState?.commitIndex).toBe(3);
  });

  it('does not commit its own entries past the last new entry: the leader has vouched only for the prefix it sent', () => {
    // Entries 4 and 5 come from an old term-2 leader; the term-3 leader holds different ones there.
    const { raft, storage } = followerWithLog([2, 2, 2, 2], 3);

    raft.step(
      msg.append(b, a, 3, {
        prevLogIndex: idx(2),
        prevLogTerm: tm(2),
        entries: [entry(3, 2)],
        leaderCommit: idx(5),
      }),
    );

    expect(raft.log.commitIndex).toBe(3);
    expect(logTerms(raft.log)).toEqual([2, 2, 2, 2]);
    expect(drain(raft, storage).committedEntries.map((en) => en.index)).toEqual([2, 3]);
  });

  it('takes the commit index from a heartbeat, but never past its own last entry', () => {
    const { raft, storage } = followerWithLog([2, 2], 2);

    raft.step(msg.heartbeat(b, a, 2, { leaderCommit: idx(10) }));

    expect(raft.log.commitIndex).toBe(3);
    const ready = drain(raft, storage);
    expect(ready.committedEntries.map((en) => en.index)).toEqual([2, 3]);
    expect(ofType(ready.messages, 'HeartbeatResponse')).toHaveLength(1);
  });

  it('answers an AppendEntries below its commit index with its commit index, without touching the log', () => {
    const { raft, storage } = followerWithLog([2, 2, 3], 3);
    raft.step(
      msg.append(b, a, 3, { prevLogIndex: idx(4), prevLogTerm: tm(3), leaderCommit: idx(4) }),
    );
    drain(raft, storage);
    expect(raft.log.commitIndex).toBe(4);

    raft.step(
      msg.append(b, a, 3, { prevLogIndex: idx(2), prevLogTerm: tm(9), entries: [entry(3, 9)] }),
    );

    expect(logTerms(raft.log)).toEqual([2, 2, 3]);
    const [response] = ofType(drain(raft, storage).messages, 'AppendEntriesResponse');
    expect(response).toMatchObject({ success: true, matchIndex: 4 });
  });
});

describe('§5.3 Figure 7: the leader brings followers with logs (a)-(f) into agreement', () => {
  // Terms of indexes 1.. as drawn in Figure 7. Index 1 (term 1) is our bootstrap snapshot.
  const figure7: Record<string, number[]> = {
    leader: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6],
    a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
    b: [1, 1, 1, 4],
    c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    e: [1, 1, 1, 4, 4, 4, 4],
    f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  };

  it('after the leader of term 8 is elected, every log equals the leader log plus its no-op', () => {
    const names = Object.keys(figure7);
    const voters = names.map((name) => name as NodeId);
    const storages = Object.fromEntries(
      names.map((name) => {
        const terms = figure7[name] ?? [];
        const hardTerm = name === 'leader' ? 7 : Math.max(...terms);
        return [name, storageWithLog({ voters }, terms.slice(1), { term: hardTerm })];
      }),
    );
    const network = new Network({ prng: new Prng(27), voters: names, storages });
    const leader = 'leader' as NodeId;

    network.elect(leader);
    network.stabilize();
    // A follower that caught up after the commit moved learns it from the next heartbeat.
    network.tickAll(1);

    expect(network.raft(leader).term).toBe(8);
    const expected = [...(figure7.leader ?? []).slice(1), 8];
    for (const id of voters) {
      expect({ id, terms: storedTerms(network.node(id).storage) }).toEqual({ id, terms: expected });
      expect(network.raft(id).log.commitIndex).toBe(11);
    }
    // Every node applied the same entries 2..11 (the harness also checks this on every Ready).
    const appliedByLeader = network.node(leader).applied.map((en) => `${en.index}@${en.term}`);
    for (const id of voters) {
      expect(network.node(id).applied.map((en) => `${en.index}@${en.term}`)).toEqual(
        appliedByLeader,
      );
    }
  });
});

describe('§5.3 fast backtracking: one rejection per conflicting term, not per entry', () => {
  it('a follower 60 entries into a conflicting suffix of two terms is repaired after at most two rejections', () => {
    const voters = [a, b, c];
    const leaderLog = [...Array(30).fill(2), ...Array(60).fill(4)]; // indexes 2..91
    const followerLog = [...Array(30).fill(2), ...Array(30).fill(3), ...Array(30).fill(5)];
    const storages = {
      a: storageWithLog({ voters }, leaderLog, { term: 5 }),
      b: storageWithLog({ voters }, followerLog, { term: 5 }),
      c: storageWithLog({ voters }, Array(30).fill(2), { term: 5 }),
    };
    const network = new Network({ prng: new Prng(28), voters, storages });

    network.elect(a);
    network.stabilize();
    network.tickAll(1);

    const rejections = network
      .sentOf('AppendEntriesResponse', { from: b, to: a })
      .filter((m) => !m.success);
    expect(rejections.length).toBeGreaterThan(0);
    expect(rejections.length).toBeLessThanOrEqual(2);
    expect(storedTerms(network.node(b).storage)).toEqual([...leaderLog, 6]);
    expect(network.raft(b).log.commitIndex).toBe(92);
  });
});

describe('§5.3 fast backtracking: the leader skips to the end of a term it shares with the follower', () => {
  it('when the leader also holds the follower’s conflicting term, it resends only the entries after that term', () => {
    const voters = [a, b, c];
    const leaderLog = [...Array(10).fill(2), ...Array(10).fill(4)]; // 2..11 term 2, 12..21 term 4
    const followerLog = Array(20).fill(2); // 2..21 term 2: the old leader's longer run
    const storages = {
      a: storageWithLog({ voters }, leaderLog, { term: 4 }),
      b: storageWithLog({ voters }, followerLog, { term: 4 }),
      c: storageWithLog({ voters }, leaderLog, { term: 4 }),
    };
    const network = new Network({ prng: new Prng(32), voters, storages });

    network.elect(a);

    const toB = network.sentOf('AppendEntries', { to: b });
    const rejections = network
      .sentOf('AppendEntriesResponse', { from: b })
      .filter((m) => !m.success);
    expect(rejections.map((m) => [m.rejectedIndex, m.hintTerm, m.hintIndex])).toEqual([[21, 2, 2]]);
    expect(toB.map((m) => m.prevLogIndex)).toEqual([21, 11]);
    expect(toB[1]?.entries.map((en) => en.index)).toEqual([...Array(11).keys()].map((i) => 12 + i));
    expect(storedTerms(network.node(b).storage)).toEqual([...leaderLog, 5]);
  });
});

describe('§5.3 pipelining and batching (flow control)', () => {
  it('in replicate state the leader keeps up to inflightMessagesMax AppendEntries in flight, then pauses', () => {
    const network = new Network({
      prng: new Prng(29),
      voters: [a, b, c],
      options: { inflightMessagesMax: 3 },
    });
    network.elect(a);
    network.clearLogs();

    for (let i = 0; i < 5; i++) network.propose(a, `v${i}`);
    network.processReady(a);

    const progress = network.raft(a).progressOf(b);
    expect(progress?.state).toBe('replicate');
    expect(progress?.inflight).toEqual([3, 4, 5]);
    expect(progress?.isPaused()).toBe(true);
    const toB = network.sentOf('AppendEntries', { to: b });
    expect(toB.map((m) => m.entries.map((en) => en.index))).toEqual([[3], [4], [5]]);

    // Acknowledgements open the window; the two entries that waited go out in one batch.
    network.stabilize();
    const after = network.sentOf('AppendEntries', { to: b }).filter((m) => m.entries.length > 0);
    expect(after.map((m) => m.entries.map((en) => en.index))).toEqual([[3], [4], [5], [6, 7]]);
    expect(network.state(b)).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
  });

  it('a follower whose pipelined AppendEntries were all lost is caught up once the network heals (§5.3: the leader retries indefinitely)', () => {
    const network = new Network({
      prng: new Prng(30),
      voters: [a, b, c],
      options: { inflightMessagesMax: 2 },
    });
    network.elect(a);
    network.dropTo(c);
    for (let i = 0; i < 3; i++) network.propose(a, `v${i}`);
    network.stabilize();

    network.heal();
    network.tickAll(5 * T);

    expect(network.state(c)).toEqual(['v0', 'v1', 'v2']);
  });

  it('AppendEntries batches stop at appendBatchBytesMax (a single larger entry still moves)', () => {
    const data = 'x'.repeat(26); // 24 header bytes + 26 = 50 bytes per entry
    const network = new Network({
      prng: new Prng(31),
      voters: [a, b, c],
      options: { appendBatchBytesMax: 100 },
    });
    network.elect(a);
    network.isolate(c);
    for (let i = 0; i < 7; i++) network.propose(a, `${data}`);
    network.propose(a, 'y'.repeat(200));
    network.stabilize();
    network.heal();
    network.clearLogs();

    network.tickAll(3);

    const batches = network.sentOf('AppendEntries', { to: c }).filter((m) => m.entries.length > 0);
    const sizes = batches.map((m) => m.entries.reduce((sum, en) => sum + entrySizeBytes(en), 0));
    for (const [i, batch] of batches.entries()) {
      if (batch.entries.length > 1) expect(sizes[i]).toBeLessThanOrEqual(100);
    }
    expect(Math.max(...batches.map((m) => m.entries.length))).toBe(2);
    expect(
      batches.some(
        (m) => m.entries.length === 1 && entrySizeBytes(m.entries[0] ?? entry(0, 0)) > 100,
      ),
    ).toBe(true);
    expect(network.state(c)).toEqual(network.state(a));
    expect(network.state(c)).toHaveLength(8);
  });
});
