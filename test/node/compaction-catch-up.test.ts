/**
 * Compaction keeps up with the log (see src/node/snapshotter.ts): after each Ready it
 * deletes as many entries as the Ready appended plus a slice, and while no Ready waits
 * it goes on a slice at a time, so that an idle node ends with exactly snapshot − retain
 * compacted. One node on real LevelDB, a small slice so that a burst leaves a backlog.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { nodeId } from '../../src/util/ids.ts';

const n1 = nodeId('n1');
const RETAIN = 20;
const OPTIONS: NodeRuntimeOptions = {
  tickIntervalMs: 10,
  raft: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 1 },
  lock: { sessionTtlMsMin: 100 },
  pendingProposalsMax: 4_096,
  proposalTimeoutMs: 30_000,
  snapshotEntriesThreshold: 500,
  compactionRetainEntries: RETAIN,
  compactionSliceEntries: 10,
  shutdownTransferMs: 100,
};

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it('an idle node compacts, a slice at a time, up to exactly snapshot − retain', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dlm-compaction-catch-up-'));
  dirs.push(dir);
  const storage = await LevelStorage.open(join(dir, 'n1'), {
    bootstrap: { voters: [n1], learners: [] },
  });
  const node = new DlmNode(n1, storage, new MemoryNetwork().connect(n1), OPTIONS, undefined, 1);
  node.start();
  try {
    for (let i = 0; i < 300 && node.locks.rulesSetIndex === null; i++) await sleep(10);
    expect(node.locks.rulesSetIndex).not.toBeNull();
    // Bounded: 200 clients × 10 writes, many to a Ready.
    await Promise.all(
      Array.from({ length: 200 }, async () => {
        for (let w = 0; w < 10; w++) await node.write({ type: 'KeepAlive', sessionIds: [] });
      }),
    );
    const compactedTo = () => storage.firstIndex() - 1;
    const goal = () => storage.snapshot().metadata.index - RETAIN;
    // Idle from here: no Ready comes, only the idle slices (and the snapshot landing) move it.
    for (let i = 0; i < 400 && compactedTo() < goal(); i++) await sleep(5);
    expect(storage.snapshot().metadata.index).toBeGreaterThanOrEqual(1_500);
    expect(compactedTo()).toBe(goal());
  } finally {
    await node.stop();
  }
}, 60_000);
