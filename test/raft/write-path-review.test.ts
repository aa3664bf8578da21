/**
 * Adversarial review of the write-path branch (early appends, own copy counted once
 * persisted, commit index unsynced). Each test drives one interleaving the review
 * suspected, by hand, with a write held "in flight" between ready() and persisted().
 * They pass: they record what held, so that a later change that breaks one is caught.
 */
import { describe, expect, it } from 'vitest';
import { MemoryStorage } from '../../src/raft/storage.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import {
  bytes,
  drain,
  entry,
  ids,
  loneRaft,
  makeLeader,
  msg,
  ofType,
  storageWithLog,
} from './harness.ts';

const [a, b, c, l] = ids('a', 'b', 'c', 'l');

describe('review: a write in flight while the world changes', () => {
  it('a leader deposed mid-write: the late persisted() counts nothing, the new leader’s entries are written and acknowledged only after a second write', () => {
    const { raft, storage } = loneRaft(a, [a, b, c], new Prng(21), { preVote: false });
    makeLeader(raft, storage, false); // term 2, no-op at 2 persisted
    raft.step(msg.appendResponse(b, a, 2, { matchIndex: idx(2) }));
    drain(raft, storage);
    raft.propose(bytes('x')); // 3
    raft.propose(bytes('y')); // 4
    const inFlight = raft.ready(); // entries 3..4 of term 2, write held
    expect(inFlight.entries.map((e) => e.index)).toEqual([3, 4]);

    // c wins term 3 without a's entries 3..4 and overwrites them from index 3.
    raft.step(
      msg.append(c, a, 3, {
        prevLogIndex: idx(2),
        prevLogTerm: tm(2),
        entries: [entry(3, 3, 'c3')],
        leaderCommit: idx(2),
      }),
    );
    expect(raft.role).toBe('follower');
    // Nothing for c may leave before it is durable.
    expect(raft.takeEarlyMessages()).toEqual([]);

    // The old write lands; its report is about entries no longer in the log.
    storage.append(inFlight.entries);
    if (inFlight.hardState !== null) storage.setHardState(inFlight.hardState);
    raft.persisted(idx(4), tm(2));
    expect(raft.log.commitIndex).toBe(2);
    raft.advance(inFlight);

    const next = raft.ready();
    expect(next.entries.map((e) => [e.index, e.term])).toEqual([[3, 3]]);
    expect(next.mustSync).toBe(true);
    expect(next.earlyMessages).toEqual([]);
    expect(ofType(next.messages, 'AppendEntriesResponse').map((m) => m.matchIndex)).toEqual([3]);
    storage.append(next.entries);
    raft.persisted(idx(3), tm(3));
    raft.advance(next);
    expect(storage.lastIndex()).toBe(3); // the stale entry 4 of term 2 is gone from disk
  });

  it('a lone voter: nothing of a term that is still being written leaves early, even what new proposals produce mid-write', () => {
    const storage = MemoryStorage.bootstrap({ voters: [a], learners: [l] });
    const { raft } = loneRaft(a, [a], new Prng(22), {}, storage);
    raft.campaign();
    const termWrite = raft.ready(); // term 2 + no-op, held
    expect(termWrite.earlyMessages).toEqual([]);
    raft.propose(bytes('x'));
    raft.tick();
    expect(raft.takeEarlyMessages()).toEqual([]);
    expect(raft.log.commitIndex).toBe(1);
    storage.append(termWrite.entries);
    if (termWrite.hardState !== null) storage.setHardState(termWrite.hardState);
    raft.persisted(idx(2), tm(2));
    raft.advance(termWrite);
    // Entry 3 is not on disk: the lone voter may not commit it.
    expect(raft.log.commitIndex).toBe(2);
  });

  it('a follower acknowledges a duplicate of entries still being written only after a later write', () => {
    const { raft, storage } = loneRaft(b, [a, b, c], new Prng(23));
    raft.step(msg.append(a, b, 2, { entries: [entry(2, 2), entry(3, 2)], leaderCommit: idx(1) }));
    const inFlight = raft.ready();
    expect(inFlight.mustSync).toBe(true);
    // The leader resends (a probe, a heartbeat response's sendAppend): same entries.
    raft.step(msg.append(a, b, 2, { entries: [entry(2, 2), entry(3, 2)], leaderCommit: idx(3) }));
    expect(raft.takeEarlyMessages()).toEqual([]);
    storage.append(inFlight.entries);
    if (inFlight.hardState !== null) storage.setHardState(inFlight.hardState);
    raft.persisted(idx(3), tm(2));
    raft.advance(inFlight);
    const next = raft.ready();
    // Only the commit index changed: unsynced, and every entry it covers is on disk.
    expect(next.entries).toEqual([]);
    expect(next.mustSync).toBe(false);
    expect(next.hardState?.commitIndex).toBe(3);
    expect(storage.lastIndex()).toBeGreaterThanOrEqual(3);
  });

  it('a snapshot installed over a write in flight: the late persisted() is ignored, and the snapshot write drops the stale tail', () => {
    const storage = storageWithLog({ voters: [a, b, c] }, [2], { term: 2, commitIndex: 2 });
    const { raft } = loneRaft(b, [a, b, c], new Prng(24), {}, storage);
    raft.step(
      msg.append(a, b, 3, {
        prevLogIndex: idx(2),
        prevLogTerm: tm(2),
        entries: [entry(3, 3), entry(4, 3)],
        leaderCommit: idx(2),
      }),
    );
    const inFlight = raft.ready();
    raft.step(
      msg.installSnapshot(a, b, 3, {
        index: idx(10),
        term: tm(3),
        config: { voters: [a, b, c], learners: [] },
      }),
    );
    storage.append(inFlight.entries);
    if (inFlight.hardState !== null) storage.setHardState(inFlight.hardState);
    raft.persisted(idx(4), tm(3));
    raft.advance(inFlight);
    const next = raft.ready();
    expect(next.snapshot?.metadata.index).toBe(10);
    expect(next.earlyMessages).toEqual([]);
    expect(ofType(next.messages, 'InstallSnapshotResponse').map((m) => m.installed)).toEqual([
      true,
    ]);
  });
});

describe('review: the term-durability rule for early appends, by its consequence', () => {
  // No simulator seed exercises it (they run 3, 5 or 7 voters, where a leader's term is
  // always durable before it wins; 60 seeds of a one-voter cluster with learners did not
  // catch its removal either), so this is its only consequence-level check.
  it('a lone voter that crashes before its new term is durable does not leave a learner holding an entry that its second reign of that term replaces', () => {
    const config = { voters: [a], learners: [l] };
    const voterDisk = MemoryStorage.bootstrap(config);
    const learnerDisk = MemoryStorage.bootstrap(config);
    const learner = loneRaft(l, [a], new Prng(31), {}, learnerDisk).raft;
    const first = loneRaft(a, [a], new Prng(32), {}, voterDisk).raft;
    const applied = new Map<string, string[]>([
      ['a', []],
      ['l', []],
    ]);
    const runLearner = (messages: readonly import('../../src/raft/types.ts').Message[]) => {
      const replies = [];
      for (const m of messages) if (m.to === l) learner.step(m);
      while (learner.hasReady()) {
        const r = drain(learner, learnerDisk);
        for (const e of r.committedEntries)
          if (e.kind === 'normal') applied.get('l')?.push(new TextDecoder().decode(e.data));
        replies.push(...r.earlyMessages, ...r.messages);
      }
      return replies;
    };

    first.campaign(); // term 2 at once: a lone voter
    expect(first.role).toBe('leader');
    first.propose(bytes('x')); // index 3, term 2
    const lost = first.ready(); // holds term 2, the no-op and x; the process dies mid-write
    // The learner answers; a's probe turns into replication, and x follows, all while
    // the write of term 2 is still in flight.
    for (const reply of runLearner([...lost.earlyMessages, ...first.takeEarlyMessages()]))
      first.step(reply);
    runLearner(first.takeEarlyMessages());

    // Restart from the disk: term 1, so it leads term 2 again, with y at index 3.
    const second = loneRaft(a, [a], new Prng(33), {}, voterDisk).raft;
    second.campaign();
    expect(second.term).toBe(2);
    second.propose(bytes('y'));
    for (let round = 0; round < 20; round++) {
      const out = [];
      while (second.hasReady()) {
        const r = drain(second, voterDisk);
        for (const e of r.committedEntries)
          if (e.kind === 'normal') applied.get('a')?.push(new TextDecoder().decode(e.data));
        out.push(...r.earlyMessages, ...r.messages);
      }
      for (const reply of runLearner(out)) second.step(reply);
      second.tick();
    }
    expect(applied.get('a')).toEqual(['y']);
    expect(applied.get('l')).toEqual(applied.get('a'));
  });
});
