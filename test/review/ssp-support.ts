/**
 * Review helper (snapshot-spacing): drives a real Snapshotter over MemoryWritableStorage
 * and a real LockStateMachine, one entry at a time (as test/node/snapshot-turns.test.ts),
 * with entries encoded as the node encodes them (encodeEntry).
 */
import { type LockCommand, LockStateMachine } from '../../src/lock/index.ts';
import { encodeEntry } from '../../src/node/entry-codec.ts';
import type { Snapshotter } from '../../src/node/snapshotter.ts';
import { type ClusterConfig, type Entry, entrySizeBytes } from '../../src/raft/types.ts';
import { MemoryWritableStorage } from '../../src/storage/memory-writable-storage.ts';
import { logIndex, type NodeId, term } from '../../src/util/ids.ts';
import { testSnapshotter } from '../support/test-snapshotter.ts';

export interface Taken {
  readonly index: number;
  readonly bytes: number;
  /** Bytes (entrySizeBytes) of the entries after the previous snapshot up to this one. */
  readonly logBytes: number;
}

/** Applies `commands[i]` at index i + 2 and lists the snapshots taken. */
export async function drive(
  self: NodeId,
  config: ClusterConfig,
  commands: readonly LockCommand[],
  options: { threshold: number; snapshotEntriesMax: number; restartAfter?: number },
): Promise<{ taken: Taken[]; peakKeptLogBytes: number }> {
  const storage = MemoryWritableStorage.bootstrap(config);
  const machine = new LockStateMachine();
  let applied = 1;
  const taken: Taken[] = [];
  const sizes: number[] = [];
  let last = 1;
  const make = (): Snapshotter =>
    testSnapshotter(
      {
        storage,
        nodeId: self,
        machine,
        appliedIndex: () => applied,
        config: () => config,
        snapshotted: (report) => {
          let logBytes = 0;
          for (let i = last + 1; i <= report.index; i++) logBytes += sizes[i] ?? 0;
          last = report.index;
          taken.push({ index: report.index, bytes: report.bytes, logBytes });
        },
      },
      {
        snapshotEntriesThreshold: options.threshold,
        snapshotEntriesMax: options.snapshotEntriesMax,
        compactionRetainEntries: 0,
      },
    );
  let snapshotter = make();
  let peakKeptLogBytes = 0;
  let kept = 0;
  for (let i = 0; i < commands.length; i++) {
    const index = i + 2;
    const command = commands[i] as LockCommand;
    const entry: Entry = {
      kind: 'normal',
      index: logIndex(index),
      term: term(1),
      data: encodeEntry({ proposalId: null, command }),
    };
    sizes[index] = entrySizeBytes(entry);
    await storage.persist({ entries: [entry] });
    machine.apply(logIndex(index), command);
    applied = index;
    snapshotter.maybeStart();
    while (snapshotter.busy) await new Promise((resolve) => setImmediate(resolve));
    while (snapshotter.compactionBacklog() > 0) await snapshotter.compactStep();
    kept = 0;
    for (let j = storage.firstIndex(); j <= storage.lastIndex(); j++) kept += sizes[j] ?? 0;
    peakKeptLogBytes = Math.max(peakKeptLogBytes, kept);
    // A restart: the same storage and state (as a node reopening them), a new Snapshotter.
    if (index === options.restartAfter) snapshotter = make();
  }
  return { taken, peakKeptLogBytes };
}

export function openSessions(from: number, count: number): LockCommand[] {
  return Array.from({ length: count }, (_, i) => ({
    type: 'OpenSession',
    ttlMs: 60_000,
    clientName: 'client',
    requestId: `open-${from + i}`,
  }));
}
