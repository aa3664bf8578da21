/**
 * The members take their snapshots in turns (Snapshotter.due): each one's fall every
 * threshold entries, offset by its place among the sorted member ids times threshold /
 * members, so that three nodes applying one log never all snapshot at the same index.
 */
import { describe, expect, it } from 'vitest';
import { type LockCommand, LockStateMachine } from '../../src/lock/index.ts';
import type { ClusterConfig, Entry } from '../../src/raft/types.ts';
import { MemoryWritableStorage } from '../../src/storage/memory-writable-storage.ts';
import { type LogIndex, logIndex, type NodeId, term } from '../../src/util/ids.ts';
import { ids } from '../raft/harness.ts';
import { testSnapshotter } from '../support/test-snapshotter.ts';

const [n1, n2, n3, n4] = ids('n1', 'n2', 'n3', 'n4');
const THRESHOLD = 30;

/**
 * Applies entries 2..`upTo` one at a time on a node, and lists the snapshots it took.
 * With `growing`, each entry opens a session, so the state (and every snapshot) grows
 * by a session's bytes an entry while entries stay small: the log never outgrows the
 * snapshot, and turns are skipped up to `snapshotEntriesMax` entries.
 */
async function snapshotIndexes(
  self: NodeId | undefined,
  config: ClusterConfig,
  upTo: number,
  growing?: { snapshotEntriesMax: number },
): Promise<number[]> {
  const storage = MemoryWritableStorage.bootstrap(config);
  const machine = new LockStateMachine();
  let applied = 1;
  const taken: LogIndex[] = [];
  const snapshotter = testSnapshotter(
    {
      storage,
      ...(self === undefined ? {} : { nodeId: self }),
      machine,
      appliedIndex: () => applied,
      config: () => config,
      snapshotted: (report) => taken.push(report.index),
    },
    { snapshotEntriesThreshold: THRESHOLD, ...growing, compactionRetainEntries: 2 },
  );
  for (let index = 2; index <= upTo; index++) {
    const entry: Entry = {
      kind: 'normal',
      index: logIndex(index),
      term: term(1),
      data: new Uint8Array(),
    };
    await storage.persist({ entries: [entry] });
    if (growing !== undefined) {
      const open: LockCommand = {
        type: 'OpenSession',
        ttlMs: 10_000,
        clientName: 'c',
        requestId: `r${index}`,
      };
      machine.apply(logIndex(index), open);
    }
    applied = index;
    snapshotter.maybeStart();
    // Each snapshot finishes before the next entry, as when the log moves slowly.
    while (snapshotter.busy) await new Promise((resolve) => setImmediate(resolve));
  }
  return taken;
}

describe('snapshot turns', () => {
  const three: ClusterConfig = { voters: [n3, n1, n2], learners: [] };

  it('each of three voters snapshots every threshold entries, a third of one apart from the next', async () => {
    expect(await snapshotIndexes(n1, three, 100)).toEqual([30, 60, 90]);
    expect(await snapshotIndexes(n2, three, 100)).toEqual([10, 40, 70, 100]);
    expect(await snapshotIndexes(n3, three, 100)).toEqual([20, 50, 80]);
  });

  it('learners take turns too; a node that is not a member, or has no id, takes the first', async () => {
    const withLearner: ClusterConfig = { voters: [n1, n2, n3], learners: [n4] };
    expect(await snapshotIndexes(n4, withLearner, 100)).toEqual([22, 52, 82]);
    expect(await snapshotIndexes(n4, three, 100)).toEqual([30, 60, 90]);
    expect(await snapshotIndexes(undefined, three, 100)).toEqual([30, 60, 90]);
  });
});

describe('turns are skipped while the log since the last snapshot is smaller than it', () => {
  const three: ClusterConfig = { voters: [n3, n1, n2], learners: [] };
  const gaps = (indexes: readonly number[]): number[] =>
    indexes.slice(1).map((index, i) => index - (indexes[i] as number));

  it('a state that outgrows its log is snapshotted on fewer turns, up to snapshotEntriesMax entries apart', async () => {
    const taken = await snapshotIndexes(n1, three, 1_000, { snapshotEntriesMax: 4 * THRESHOLD });
    const spacing = gaps(taken);
    // The first turn is taken: the log outgrew the empty snapshot. Each entry (24 bytes
    // of log) then adds a session of more bytes than that to every snapshot, so turns
    // are skipped until the maximum takes one.
    expect(taken[0]).toBe(THRESHOLD);
    for (const gap of spacing) {
      expect(gap % THRESHOLD).toBe(0);
      expect(gap).toBeLessThanOrEqual(4 * THRESHOLD);
    }
    expect(spacing.slice(-3)).toEqual([4 * THRESHOLD, 4 * THRESHOLD, 4 * THRESHOLD]);
    expect([...spacing].sort((a, b) => a - b)).toEqual(spacing);
  });

  it('with a maximum at the threshold, every turn is taken', async () => {
    const taken = await snapshotIndexes(n1, three, 300, { snapshotEntriesMax: THRESHOLD });
    expect(gaps(taken).every((gap) => gap === THRESHOLD)).toBe(true);
  });

  it('the members still take spread turns apart: no two snapshot at one index', async () => {
    const growing = { snapshotEntriesMax: 4 * THRESHOLD };
    const all = await Promise.all(
      [n1, n2, n3].map((id) => snapshotIndexes(id, three, 1_000, growing)),
    );
    const late = all.map((taken) => taken.filter((index) => index > 500));
    expect(late.every((taken) => taken.length > 0)).toBe(true);
    const flat = late.flat();
    expect(new Set(flat).size).toBe(flat.length);
  });
});
