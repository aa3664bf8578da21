/**
 * The order of writes and messages (ready.ts). Raft thesis §10.2.1: "the leader can write
 * to its disk in parallel with replicating to the followers and them writing to their
 * disks", and "the leader may even commit an entry before it has been written to its own
 * disk, if a majority of followers have written it to their disks". What must wait for
 * the disk still waits: votes, acknowledgements, and the leader counting its own copy.
 */
import { describe, expect, it } from 'vitest';
import { MemoryStorage } from '../../src/raft/storage.ts';
import { AssertionError } from '../../src/util/assert.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import {
  bytes,
  drain,
  entry,
  hardState,
  ids,
  loneRaft,
  makeLeader,
  msg,
  ofType,
  storageWithLog,
} from './harness.ts';

const [a, b, c, l] = ids('a', 'b', 'c', 'l');

/** A leader of term 2 over [a, b, c] whose no-op (index 2) both followers acknowledged. */
function leaderWithCommittedNoop(seed: number) {
  const { raft, storage } = loneRaft(a, [a, b, c], new Prng(seed));
  makeLeader(raft, storage, true);
  raft.step(msg.appendResponse(b, a, 2, { matchIndex: idx(2) }));
  raft.step(msg.appendResponse(c, a, 2, { matchIndex: idx(2) }));
  drain(raft, storage);
  expect(raft.log.commitIndex).toBe(2);
  return { raft, storage };
}

describe('thesis §10.2.1: the leader replicates while it writes', () => {
  it('sends a new entry before its own write is durable, and counts its own copy only once the host reports it', () => {
    const { raft, storage } = leaderWithCommittedNoop(1);

    raft.propose(bytes('x'));
    const ready = raft.ready(); // the write of entry 3 is now in flight
    expect(ofType(ready.earlyMessages, 'AppendEntries').map((m) => m.to)).toEqual([b, c]);
    raft.step(msg.appendResponse(b, a, 2, { matchIndex: idx(3) }));

    // b's copy alone is one of three: the leader's own is not on its disk yet.
    expect(raft.log.commitIndex).toBe(2);
    storage.append(ready.entries);
    raft.persisted(idx(3), tm(2));
    expect(raft.log.commitIndex).toBe(3);
    raft.advance(ready);
  });

  it('commits on a majority of followers before its own write is durable', () => {
    const { raft } = leaderWithCommittedNoop(2);

    raft.propose(bytes('x'));
    raft.ready();
    raft.step(msg.appendResponse(b, a, 2, { matchIndex: idx(3) }));
    raft.step(msg.appendResponse(c, a, 2, { matchIndex: idx(3) }));

    expect(raft.log.commitIndex).toBe(3);
  });

  it('hands out, while its write is in flight, the appends that new proposals and commits produce', () => {
    const { raft } = leaderWithCommittedNoop(3);
    raft.propose(bytes('x'));
    raft.ready();

    raft.propose(bytes('y'));
    const forNewEntry = ofType(raft.takeEarlyMessages(), 'AppendEntries');
    raft.step(msg.appendResponse(b, a, 2, { matchIndex: idx(4) }));
    raft.step(msg.appendResponse(c, a, 2, { matchIndex: idx(4) }));
    const afterCommit = ofType(raft.takeEarlyMessages(), 'AppendEntries');

    expect(forNewEntry.map((m) => [m.to, m.entries.at(-1)?.index])).toEqual([
      [b, 4],
      [c, 4],
    ]);
    expect(afterCommit.map((m) => [m.to, m.leaderCommit])).toEqual([
      [b, 4],
      [c, 4],
    ]);
    expect(raft.takeEarlyMessages()).toEqual([]);
  });

  it('sends nothing early in a term that is not durable yet', () => {
    // A lone voter wins at once: its AppendEntries to the learner are in the Ready that
    // persists the new term. Sent early, a crash could let it lead term 2 again with
    // another log, which the learner would wrongly match.
    const storage = MemoryStorage.bootstrap({ voters: [a], learners: [l] });
    const { raft } = loneRaft(a, [a], new Prng(4), {}, storage);
    raft.campaign();
    expect(raft.role).toBe('leader');

    const ready = drain(raft, storage);
    expect(ready.hardState?.term).toBe(2);
    expect(ready.earlyMessages).toEqual([]);
    expect(ofType(ready.messages, 'AppendEntries').map((m) => [m.to, m.term])).toEqual([[l, 2]]);
    raft.tick(); // a heartbeat, now that term 2 is on disk
    expect(ofType(raft.ready().earlyMessages, 'Heartbeat').map((m) => m.to)).toEqual([l]);
  });

  it('a lone voter commits its entry once the host reports it durable, not when it appends it', () => {
    const { raft, storage } = loneRaft(a, [a], new Prng(5));
    raft.campaign();
    drain(raft, storage); // term 2 and the no-op at 2, committed once persisted
    drain(raft, storage); // applies the no-op
    expect(raft.log.commitIndex).toBe(2);

    raft.propose(bytes('x'));
    expect(raft.log.commitIndex).toBe(2);
    const ready = raft.ready();
    expect(ready.committedEntries).toEqual([]);
    storage.append(ready.entries);
    raft.persisted(idx(3), tm(2));
    expect(raft.log.commitIndex).toBe(3);
  });
});

describe('what waits for the disk', () => {
  it('a follower acknowledges entries only after they are persisted', () => {
    const { raft } = loneRaft(b, [a, b, c], new Prng(6));
    raft.step(msg.append(a, b, 2, { entries: [entry(2, 2)], leaderCommit: idx(1) }));

    const ready = raft.ready();
    expect(ready.mustSync).toBe(true);
    expect(ready.earlyMessages).toEqual([]);
    expect(ofType(ready.messages, 'AppendEntriesResponse').map((m) => m.matchIndex)).toEqual([2]);
  });

  it('a candidate asks for votes, and a voter grants one, only after the term and vote are persisted', () => {
    const candidate = loneRaft(a, [a, b, c], new Prng(7), { preVote: false });
    candidate.raft.campaign();
    const asking = candidate.raft.ready();
    expect(asking.earlyMessages).toEqual([]);
    expect(ofType(asking.messages, 'RequestVote')).toHaveLength(2);

    const voter = loneRaft(b, [a, b, c], new Prng(8), { preVote: false });
    voter.raft.step(msg.requestVote(a, b, 2));
    const granting = voter.raft.ready();
    expect(granting.mustSync).toBe(true);
    expect(granting.earlyMessages).toEqual([]);
    expect(ofType(granting.messages, 'RequestVoteResponse').map((m) => m.granted)).toEqual([true]);
  });

  it('advance() before persisted() of the Ready’s entries is a programmer error', () => {
    const { raft } = leaderWithCommittedNoop(9);
    raft.propose(bytes('x'));
    const ready = raft.ready();

    expect(() => raft.advance(ready)).toThrow(AssertionError);
  });
});

describe('the commit index needs no sync', () => {
  it('a Ready that only moves the commit index asks for no sync', () => {
    const { raft, storage } = leaderWithCommittedNoop(10);
    raft.propose(bytes('x'));
    drain(raft, storage);
    raft.step(msg.appendResponse(b, a, 2, { matchIndex: idx(3) }));

    const ready = drain(raft, storage);
    expect(ready.entries).toEqual([]);
    expect(ready.hardState?.commitIndex).toBe(3);
    expect(ready.mustSync).toBe(false);
  });

  it('a node that lost its commit index in a crash applies only what it knows, then learns the rest from the leader', () => {
    // Entries 2..4 are durable and were committed, but the commit index on disk is 2.
    const storage = storageWithLog({ voters: [a, b, c] }, [2, 2, 2], { term: 2, commitIndex: 2 });
    const { raft } = loneRaft(b, [a, b, c], new Prng(11), {}, storage);

    expect(drain(raft, storage).committedEntries.map((en) => en.index)).toEqual([2]);
    raft.step(msg.heartbeat(a, b, 2, { leaderCommit: idx(4) }));
    const ready = drain(raft, storage);
    expect(ready.committedEntries.map((en) => en.index)).toEqual([3, 4]);
    expect(ready.hardState).toEqual(hardState(2, null, 4));
  });
});

describe('entries committed while a write is in flight are handed out at once (takeEarlyCommitted)', () => {
  it('hands each one out once, in order, after the Ready’s own, only if this node stores it, and counts them applied at advance', () => {
    const { raft, storage } = leaderWithCommittedNoop(12);
    raft.propose(bytes('x'));
    const ready = raft.ready(); // the write of entry 3 is in flight
    expect(raft.takeEarlyCommitted()).toEqual([]); // nothing newly committed

    raft.propose(bytes('y'));
    raft.takeEarlyMessages();
    raft.step(msg.appendResponse(b, a, 2, { matchIndex: idx(4) }));
    raft.step(msg.appendResponse(c, a, 2, { matchIndex: idx(4) }));
    // Both followers have 3 and 4 on disk: committed, though the leader's own write of 3
    // has not returned. 4 is not even in a write yet: counted applied at advance, it
    // would put the applied index past what this node stores (a snapshot taken there
    // would name an entry it does not have), so it waits for its own Ready.
    expect(raft.takeEarlyCommitted().map((en) => en.index)).toEqual([3]);
    expect(raft.takeEarlyCommitted()).toEqual([]);

    storage.append(ready.entries);
    raft.persisted(idx(3), tm(2));
    raft.advance(ready);
    expect(raft.log.appliedIndex).toBe(3);
    const next = drain(raft, storage);
    expect(next.entries.map((en) => en.index)).toEqual([4]);
    expect(next.committedEntries.map((en) => en.index)).toEqual([4]); // 3 not again
  });

  it('hands out no entry a follower replaced while its write ran: the replacement is not stored yet', () => {
    // b writes 2..3 of term 2 from a; meanwhile c, leader of term 3, replaces 3 and
    // commits it. The committed entry 3 is c's, which only a later Ready stores.
    const storage = storageWithLog({ voters: [a, b, c] }, [1], { term: 1, commitIndex: 1 });
    const { raft } = loneRaft(b, [a, b, c], new Prng(15), {}, storage);
    drain(raft, storage);
    raft.step(
      msg.append(a, b, 2, { entries: [entry(2, 2, 'x'), entry(3, 2, 'y')], leaderCommit: idx(1) }),
    );
    const ready = raft.ready();
    expect(ready.entries.map((en) => [en.index, en.term])).toEqual([
      [2, 2],
      [3, 2],
    ]);
    raft.step(
      msg.append(c, b, 3, {
        prevLogIndex: idx(2),
        prevLogTerm: tm(2),
        entries: [entry(3, 3, 'z')],
        leaderCommit: idx(3),
      }),
    );
    expect(raft.log.commitIndex).toBe(3);
    expect(raft.takeEarlyCommitted().map((en) => [en.index, en.term])).toEqual([[2, 2]]);
  });

  it('hands out nothing outside a Ready, and stops before a config entry, which waits for its Ready', () => {
    const { raft, storage } = leaderWithCommittedNoop(13);
    expect(raft.takeEarlyCommitted()).toEqual([]); // no Ready in progress

    raft.propose(bytes('x'));
    const ready = raft.ready();
    expect(raft.proposeConfigChange({ type: 'removeNode', nodeId: c }).ok).toBe(true);
    raft.propose(bytes('y'));
    raft.takeEarlyMessages();
    raft.step(msg.appendResponse(b, a, 2, { matchIndex: idx(5) }));
    raft.step(msg.appendResponse(c, a, 2, { matchIndex: idx(5) }));
    expect(raft.log.commitIndex).toBe(5);
    // Entry 4 changes the configuration, which the core applies in advance(): the early
    // hand-out stops before it, and it and 5 come in the next Ready, in order.
    expect(raft.takeEarlyCommitted().map((en) => en.index)).toEqual([3]);

    storage.append(ready.entries);
    raft.persisted(idx(3), tm(2));
    raft.advance(ready);
    const next = drain(raft, storage);
    expect(next.committedEntries.map((en) => [en.index, en.kind])).toEqual([
      [4, 'config'],
      [5, 'normal'],
    ]);
    expect(raft.config.voters).toEqual([a, b]);
  });

  it('hands out nothing while the Ready in progress holds a snapshot', () => {
    // A follower installing a snapshot: what commits after it waits until it is stored.
    const storage = storageWithLog({ voters: [a, b, c] }, [], { term: 1, commitIndex: 1 });
    const { raft } = loneRaft(b, [a, b, c], new Prng(14), {}, storage);
    drain(raft, storage);
    raft.step(
      msg.installSnapshot(a, b, 2, {
        index: idx(5),
        term: tm(2),
        config: { voters: [a, b, c], learners: [] },
      }),
    );
    const ready = raft.ready();
    expect(ready.snapshot?.metadata.index).toBe(5);
    raft.step(
      msg.append(a, b, 2, {
        prevLogIndex: idx(5),
        prevLogTerm: tm(2),
        entries: [entry(6, 2, 'z')],
        leaderCommit: idx(6),
      }),
    );
    expect(raft.takeEarlyCommitted()).toEqual([]);
  });
});
