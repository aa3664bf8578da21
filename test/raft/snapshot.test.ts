/**
 * Raft paper §7 (log compaction): snapshots, and InstallSnapshot for followers whose
 * missing entries the leader has already discarded. Chunking follows Figure 13
 * (offset, data, done).
 */

import { describe, expect, it } from 'vitest';
import type { MessageOf } from '../../src/raft/index.ts';
import type { Storage } from '../../src/raft/storage.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import {
  bytes,
  drain,
  encodeState,
  ids,
  logTerms,
  loneRaft,
  msg,
  Network,
  ofType,
  storageWithLog,
} from './harness.ts';

const [a, b, c] = ids('a', 'b', 'c');
const CHUNK = 64;

/** A leader `a` that compacted 30 entries away while `c` was cut off. */
function compactedWhileCIsAway(seed: number) {
  const network = new Network({
    prng: new Prng(seed),
    voters: [a, b, c],
    options: { snapshotChunkBytesMax: CHUNK },
  });
  network.elect(a);
  network.isolate(c);
  for (let i = 0; i < 30; i++) network.propose(a, `value-${i}`);
  network.stabilize();
  const snapshot = network.snapshotAndCompact(a);
  network.heal();
  network.clearLogs();
  return { network, snapshot };
}

describe('§7 Log compaction and InstallSnapshot', () => {
  it('the leader compacts its log into a snapshot of the applied state; the compacted entries are gone', () => {
    const { network, snapshot } = compactedWhileCIsAway(80);
    const storage = network.node(a).storage;

    expect(snapshot.metadata).toEqual({
      index: 32,
      term: 2,
      config: { voters: [a, b, c], learners: [] },
    });
    expect(storage.firstIndex()).toBe(33);
    expect(storage.term(idx(32))).toBe(2);
    expect(storage.term(idx(31))).toBeUndefined();
    expect(network.raft(a).log.entriesFrom(idx(3), 1_000)).toBeUndefined();
    expect(snapshot.data.byteLength).toBeGreaterThan(4 * CHUNK);
  });

  it('a follower that needs compacted entries gets the snapshot in several chunks and ends with the same state', () => {
    const { network, snapshot } = compactedWhileCIsAway(81);

    network.tickAll(3);

    const chunks = network.sentOf('InstallSnapshot', { to: c });
    const expectedChunks = Math.ceil(snapshot.data.byteLength / CHUNK);
    expect(chunks.length).toBe(expectedChunks);
    expect(chunks.map((m) => m.offset)).toEqual(
      [...Array(expectedChunks).keys()].map((i) => i * CHUNK),
    );
    expect(chunks.every((m) => m.chunk.byteLength <= CHUNK)).toBe(true);
    expect(chunks.map((m) => m.done)).toEqual([...Array(expectedChunks - 1).fill(false), true]);
    expect(network.node(c).appliedSnapshots.map((m) => m.index)).toEqual([32]);
    expect(network.node(c).storage.snapshot().data).toEqual(snapshot.data);
    expect(network.state(c)).toEqual(network.state(a));
    expect(network.state(c)).toHaveLength(30);

    // Later entries reach it through ordinary AppendEntries after the snapshot.
    network.propose(a, 'after');
    network.stabilize();
    network.tickAll(1); // c acknowledges after b, so it learns the commit from the next heartbeat
    expect(network.state(c)).toEqual(network.state(a));
    expect(network.state(c).at(-1)).toBe('after');
    expect(network.raft(c).log.lastIndex()).toBe(33);
  });

  it('a leader whose snapshot data is still on its way from disk sends none, and sends it once it is in', () => {
    const { network, snapshot } = compactedWhileCIsAway(82);
    // A store that keeps the data on disk (src/storage/snapshot-read.ts) says not yet.
    const storage: Storage = network.node(a).storage;
    let ready = false;
    let asked = 0;
    storage.snapshotDataReady = () => {
      asked++;
      return ready;
    };

    network.tickAll(5);
    expect(network.sentOf('InstallSnapshot', { to: c })).toHaveLength(0);
    // Asked again at the follower's later answers, not once and forgotten.
    expect(asked).toBeGreaterThan(2);

    ready = true;
    network.tickAll(3);
    expect(network.node(c).appliedSnapshots.map((m) => m.index)).toEqual([32]);
    expect(network.node(c).storage.snapshot().data).toEqual(snapshot.data);
    expect(network.state(c)).toEqual(network.state(a));
  });

  it('an answer slower than the resend timer still moves the transfer on (no livelock)', () => {
    const { network } = compactedWhileCIsAway(83);
    const held: MessageOf<'InstallSnapshotResponse'>[] = [];
    const release = network.dropIf((m) => {
      if (m.type !== 'InstallSnapshotResponse') return false;
      held.push(m);
      return true;
    });
    network.tickAll(1);
    network.stabilize();
    expect(held.length).toBeGreaterThan(0);
    // Past the resend timer the leader rewinds and starts a new round...
    network.tickAll(12);
    release();
    const transfer = network.raft(a).progressOf(c)?.snapshotTransfer;
    const answer = held[0];
    if (answer === undefined || transfer == null) throw new Error('no answer held');
    expect(transfer.round).toBeGreaterThan(answer.round);
    expect(transfer.ackedOffset).toBeLessThan(answer.nextOffset);
    // ...yet the old round's answer, which reports progress, is still used.
    network.raft(a).step(answer);
    expect(transfer.ackedOffset).toBe(answer.nextOffset);
    network.processReady(a);
    network.stabilize();
    network.tickAll(2);
    network.stabilize();
    expect(network.state(c)).toEqual(network.state(a));
  });

  it('the log after a snapshot being streamed is held from compaction while the follower answers, and only then', () => {
    const { network } = compactedWhileCIsAway(84);
    const leader = network.raft(a);
    // c is behind the compacted log: holding anything would not spare it the snapshot.
    expect(leader.compactionFloor()).toBeNull();
    // Only the first chunk gets through: the transfer is under way, and c has answered it.
    const stall = network.dropIf((m) => m.type === 'InstallSnapshot' && m.offset > 0);
    network.propose(a, 'after-1');
    network.propose(a, 'after-2');
    network.tickAll(1);
    network.stabilize();
    expect(leader.progressOf(c)?.state).toBe('snapshot');
    expect(leader.compactionFloor()).toBe(32);
    expect(network.raft(b).compactionFloor()).toBeNull();
    // A follower that answers nothing for an election timeout holds nothing.
    const silence = network.dropIf((m) => m.from === c);
    network.tickAll(9);
    expect(leader.compactionFloor()).toBe(32);
    network.tickAll(1);
    expect(leader.compactionFloor()).toBeNull();
    // Once it answers again (a heartbeat will do) it holds the log again.
    silence();
    network.tickAll(1);
    expect(leader.compactionFloor()).toBe(32);
    // Installed, it continues from the held log; caught up, it holds nothing.
    stall();
    network.tickUntil(() => network.node(c).appliedSnapshots.length > 0, 50);
    network.tickAll(2);
    expect(network.node(c).appliedSnapshots.map((m) => m.index)).toEqual([32]);
    expect(network.raft(c).log.lastIndex()).toBe(34);
    expect(leader.compactionFloor()).toBeNull();
  });

  it('a lost chunk is sent again, and the transfer completes', () => {
    const { network } = compactedWhileCIsAway(82);
    let lost = false;
    network.dropIf((m) => {
      if (lost || m.type !== 'InstallSnapshot' || m.offset !== CHUNK) return false;
      lost = true;
      return true;
    });

    network.tickAll(20);

    expect(lost).toBe(true);
    const offsets = network.sentOf('InstallSnapshot', { to: c }).map((m) => m.offset);
    expect(offsets.filter((offset) => offset === CHUNK)).toHaveLength(2);
    expect(network.state(c)).toEqual(network.state(a));
  });

  it('a lost acknowledgement is recovered: the repeated chunk is answered with the offset the follower wants', () => {
    const { network } = compactedWhileCIsAway(83);
    let lost = false;
    network.dropIf((m) => {
      if (lost || m.type !== 'InstallSnapshotResponse' || m.nextOffset !== 2 * CHUNK) return false;
      lost = true;
      return true;
    });

    network.tickAll(20);

    expect(lost).toBe(true);
    expect(network.state(c)).toEqual(network.state(a));
  });

  it('a restarted follower rebuilds its state from its stored snapshot and the entries after it', () => {
    const { network } = compactedWhileCIsAway(84);
    network.tickAll(3);
    network.propose(a, 'after');
    network.stabilize();
    network.tickAll(1); // c acknowledges after b, so it learns the commit from the next heartbeat
    const before = [...network.state(c)];

    network.restart(c);
    network.tickAll(2);

    expect(network.state(c)).toEqual(before);
    expect(network.node(c).applied.map((en) => en.index)).toEqual([33]);
  });
});

describe('§7 InstallSnapshot on the follower', () => {
  const metadata = (index: number, snapshotTerm: number) => ({
    index: idx(index),
    term: tm(snapshotTerm),
    config: { voters: [a, b, c], learners: [] },
  });

  it('a stale snapshot (index <= commit) is acknowledged as installed, without restoring it', () => {
    const storage = storageWithLog({ voters: [a, b, c] }, [2, 2, 2], { term: 2, commitIndex: 4 });
    const { raft } = loneRaft(c, [a, b, c], new Prng(85), {}, storage);

    raft.step(msg.installSnapshot(b, c, 2, metadata(3, 2), { chunk: encodeState(['stale']) }));

    const ready = drain(raft, storage);
    expect(ready.snapshot).toBeNull();
    expect(ofType(ready.messages, 'InstallSnapshotResponse')).toEqual([
      expect.objectContaining({ snapshotIndex: 3, installed: true, matchIndex: 4 }),
    ]);
    expect(raft.log.lastIndex()).toBe(4);
    expect(storage.snapshot().metadata.index).toBe(1);
  });

  it('a snapshot whose last entry the follower already holds commits that prefix and keeps the log after it', () => {
    const storage = storageWithLog({ voters: [a, b, c] }, [2, 2, 2], { term: 2 });
    const { raft } = loneRaft(c, [a, b, c], new Prng(86), {}, storage);

    raft.step(msg.installSnapshot(b, c, 2, metadata(3, 2), { chunk: encodeState(['x']) }));

    const ready = drain(raft, storage);
    expect(ready.snapshot).toBeNull();
    expect(raft.log.commitIndex).toBe(3);
    expect(logTerms(raft.log)).toEqual([2, 2, 2]);
    expect(ready.committedEntries.map((en) => en.index)).toEqual([2, 3]);
  });

  it('a snapshot that conflicts with the follower’s log replaces the whole log, config included', () => {
    const storage = storageWithLog({ voters: [a, b] }, [2, 2, 2], { term: 3 });
    const { raft } = loneRaft(c, [a, b], new Prng(87), {}, storage);

    raft.step(msg.installSnapshot(b, c, 3, metadata(3, 3), { chunk: encodeState(['x']) }));

    expect(raft.config).toEqual({ voters: [a, b, c], learners: [] });
    const ready = drain(raft, storage);
    expect(ready.snapshot?.metadata.index).toBe(3);
    expect(ready.committedEntries).toEqual([]);
    expect(storage.firstIndex()).toBe(4);
    expect(storage.lastIndex()).toBe(3);
    expect(raft.log.appliedIndex).toBe(3);
    expect(raft.log.commitIndex).toBe(3);
  });

  it('chunks are accepted only in order: an unexpected offset is answered with the offset the follower wants', () => {
    const storage = storageWithLog({ voters: [a, b, c] }, [], { term: 2 });
    const { raft } = loneRaft(c, [a, b, c], new Prng(88), {}, storage);
    const data = bytes('0123456789');

    raft.step(
      msg.installSnapshot(b, c, 2, metadata(5, 2), {
        offset: 4,
        chunk: data.subarray(4, 8),
        done: false,
      }),
    );
    raft.step(
      msg.installSnapshot(b, c, 2, metadata(5, 2), {
        offset: 0,
        chunk: data.subarray(0, 4),
        done: false,
      }),
    );
    raft.step(
      msg.installSnapshot(b, c, 2, metadata(5, 2), {
        offset: 0,
        chunk: data.subarray(0, 4),
        done: false,
      }),
    );
    raft.step(
      msg.installSnapshot(b, c, 2, metadata(5, 2), {
        offset: 8,
        chunk: data.subarray(8),
        done: true,
      }),
    );
    raft.step(
      msg.installSnapshot(b, c, 2, metadata(5, 2), {
        offset: 4,
        chunk: data.subarray(4, 8),
        done: false,
      }),
    );
    raft.step(
      msg.installSnapshot(b, c, 2, metadata(5, 2), {
        offset: 8,
        chunk: data.subarray(8),
        done: true,
      }),
    );

    const ready = drain(raft, storage);
    expect(
      ofType(ready.messages, 'InstallSnapshotResponse').map((m) => [m.nextOffset, m.installed]),
    ).toEqual([
      [0, false],
      [4, false],
      [4, false], // offset 0 again restarts the transfer
      [4, false], // 8 is not what it waits for
      [8, false],
      [10, true],
    ]);
    expect(ready.snapshot?.data).toEqual(data);
  });
});
