/**
 * Review (skipped turns, ee229e2): random membership changes, snapshots installed from
 * the leader, takeSoon and restarts (a new Snapshotter over the same storage), with the
 * real Snapshotter, MemoryWritableStorage and LockStateMachine. Checks that the applied
 * index never runs more than snapshotEntriesMax + 2 thresholds past the stored snapshot
 * (the documented bound is max + one threshold; the second threshold allows for the
 * grid moving with the membership, see skp-offset-shift), and that the kept log's bytes
 * stay within the stored snapshot's + a threshold of entries.
 */
import { expect, it } from 'vitest';
import { type LockCommand, LockStateMachine } from '../../src/lock/index.ts';
import { encodeEntry, encodeLockSnapshot } from '../../src/node/entry-codec.ts';
import { type ClusterConfig, type Entry, entrySizeBytes } from '../../src/raft/types.ts';
import { MemoryWritableStorage } from '../../src/storage/memory-writable-storage.ts';
import { logIndex, sessionId, term } from '../../src/util/ids.ts';
import { ids } from '../raft/harness.ts';
import { testSnapshotter } from '../support/test-snapshotter.ts';

const [n0, n1, n2, n3, n4] = ids('n0', 'n1', 'n2', 'n3', 'n4');
const configs: ClusterConfig[] = [
  { voters: [n1, n2, n3], learners: [] },
  { voters: [n0, n1, n2], learners: [] },
  { voters: [n2, n3, n4], learners: [] },
  { voters: [n1, n2, n3], learners: [n4] },
  { voters: [n2], learners: [] },
];
const T = 30;
const MAX = 100;

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

it('skp: fuzz of config changes, installs, takeSoon and restarts keeps the log bounded', async () => {
  const problems: string[] = [];
  for (let seed = 1; seed <= 40; seed++) {
    const rand = prng(seed);
    let config = configs[0] as ClusterConfig;
    const storage = MemoryWritableStorage.bootstrap(config);
    const machine = new LockStateMachine();
    let applied = 1;
    let sessions = 0;
    const make = () =>
      testSnapshotter(
        { storage, nodeId: n2, machine, appliedIndex: () => applied, config: () => config },
        { snapshotEntriesThreshold: T, snapshotEntriesMax: MAX, compactionRetainEntries: 3 },
      );
    let snapshotter = make();
    for (let index = 2; index <= 3_000; index++) {
      const r = rand();
      let command: LockCommand | null = null;
      if (r < 0.3 || sessions === 0) {
        command = { type: 'OpenSession', ttlMs: 60_000, clientName: 'c', requestId: `r${index}` };
        sessions++;
      } else if (r < 0.4) {
        command = { type: 'KeepAlive', sessionIds: [sessionId(2)] };
      }
      const entry: Entry = {
        kind: 'normal',
        index: logIndex(index),
        term: term(1),
        data: command === null ? new Uint8Array() : encodeEntry({ proposalId: null, command }),
      };
      await storage.persist({ entries: [entry] });
      if (command !== null) machine.apply(logIndex(index), command);
      applied = index;
      const e = rand();
      if (e < 0.01) config = configs[Math.floor(rand() * configs.length)] as ClusterConfig;
      else if (e < 0.015) {
        // The leader's snapshot at this index replaces the log.
        await storage.persist({
          snapshot: {
            metadata: { index: logIndex(index), term: term(1), config },
            data: encodeLockSnapshot(machine.snapshot()),
          },
        });
      } else if (e < 0.018) snapshotter.takeSoon();
      else if (e < 0.022) snapshotter = make();
      snapshotter.maybeStart();
      while (snapshotter.busy) await new Promise((resolve) => setImmediate(resolve));
      while (snapshotter.compactionBacklog() > 0) await snapshotter.compactStep();
      const snap = storage.snapshot();
      const behind = applied - snap.metadata.index;
      let logBytes = 0;
      if (applied > snap.metadata.index) {
        for (const x of storage.entries(
          logIndex(snap.metadata.index + 1),
          logIndex(applied + 1),
          Infinity,
        ))
          logBytes += entrySizeBytes(x);
      }
      if (behind > MAX + 2 * T)
        problems.push(`seed ${seed}: ${behind} entries since snapshot at ${index}`);
      if (behind > T && logBytes > snap.data.byteLength + T * 200)
        problems.push(
          `seed ${seed}: ${logBytes} log bytes vs snapshot ${snap.data.byteLength} at ${index}`,
        );
      if (problems.length > 5) break;
    }
  }
  expect(problems).toEqual([]);
}, 150_000);
