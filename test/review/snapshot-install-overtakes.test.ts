/**
 * Review of perf-stalls: a follower's own snapshot is held between encoding slices while
 * it is cut off, the leader compacts past it and, once healed, sends its newer snapshot,
 * which the follower installs. Released, the follower's older snapshot must store
 * nothing; the follower (live, and restarted from its disk) must hold the leader's state.
 * Three DlmNodes on real LevelDB, in-memory network.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { encodeLockSnapshot } from '../../src/node/entry-codec.ts';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';

const ids = [nodeId('n1'), nodeId('n2'), nodeId('n3')];
const BASE: NodeRuntimeOptions = {
  tickIntervalMs: 10,
  raft: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 1 },
  lock: { sessionTtlMsMin: 100 },
  pendingProposalsMax: 4_096,
  proposalTimeoutMs: 30_000,
  snapshotEntriesThreshold: 200,
  compactionRetainEntries: 5,
  shutdownTransferMs: 100,
};

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1_500; i++) {
    if (check()) return;
    await sleep(10);
  }
  throw new Error(`timed out: ${what}`);
}

it("review(perf-stalls): a follower's snapshot overtaken by the leader's while encoding stores nothing; state equals the leader's", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dlm-review-overtake-'));
  dirs.push(dir);
  const network = new MemoryNetwork();
  const storages = new Map<NodeId, LevelStorage>();
  const nodes = new Map<NodeId, DlmNode>();
  let heldNode: NodeId | null = null;
  let release: () => void = () => {};
  let held = 0;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const start = async (id: NodeId, bootstrap: boolean): Promise<DlmNode> => {
    const storage = await LevelStorage.open(
      join(dir, id),
      bootstrap ? { bootstrap: { voters: ids, learners: [] } } : {},
    );
    storages.set(id, storage);
    // The Snapshotter reads `pause` from the node's options (SnapshotterOptions).
    const options = {
      ...BASE,
      pause: async () => {
        if (heldNode === id) {
          held++;
          await gate;
        }
        await new Promise((resolve) => setImmediate(resolve));
      },
    } as NodeRuntimeOptions;
    const node = new DlmNode(
      id,
      storage,
      network.connect(id),
      options,
      undefined,
      ids.indexOf(id) + 1,
    );
    node.start();
    nodes.set(id, node);
    return node;
  };
  for (const id of ids) await start(id, true);
  try {
    const leaderNow = (): DlmNode | undefined =>
      [...nodes.values()].find(
        (node) => node.status().role === 'leader' && node.locks.rulesSetIndex !== null,
      );
    await until(() => leaderNow() !== undefined, 'a leader');
    const leader = leaderNow() as DlmNode;
    const followerId = ids.find((id) => id !== leader.id) as NodeId;
    const follower = nodes.get(followerId) as DlmNode;
    let request = 0;
    const open = (count: number) =>
      Promise.all(
        Array.from({ length: count }, () =>
          leader.write({
            type: 'OpenSession',
            ttlMs: 60_000,
            clientName: 'c',
            requestId: `o-${++request}`,
          }),
        ),
      );

    // More than 1,000 remembered results, so that snapshots are encoded in slices.
    await open(1_100);

    await until(
      () => follower.locks.snapshot().dedupe.length >= 1_100,
      'the follower applied the sessions',
    );
    heldNode = followerId;
    await open(250);
    await until(() => held > 0, "the follower's snapshot held between slices");
    const followerSnapshotAtHold = storages.get(followerId)?.snapshot().metadata.index ?? 0;

    // Cut off; the leader moves on, snapshots and compacts past the follower's log.
    network.isolate(
      followerId,
      ids.filter((id) => id !== followerId),
    );
    const followerLast = storages.get(followerId)?.lastIndex() ?? 0;
    await open(700);
    const leaderStorage = storages.get(leader.id) as LevelStorage;
    await until(
      () => leaderStorage.firstIndex() > followerLast + 1,
      'the leader compacted past the follower',
    );
    network.heal();
    await until(
      () => (storages.get(followerId)?.snapshot().metadata.index ?? 0) > followerLast,
      "the leader's snapshot installed on the follower",
    );
    const installed = storages.get(followerId)?.snapshot().metadata.index ?? 0;

    release();
    await open(5);
    await until(
      () => follower.status().appliedIndex === leader.status().appliedIndex,
      'the follower caught up',
    );
    await sleep(200);

    // The follower's snapshot never went back below the leader's it installed.
    expect(held).toBeGreaterThan(0);
    expect(followerSnapshotAtHold).toBeLessThan(installed);
    expect(storages.get(followerId)?.snapshot().metadata.index).toBeGreaterThanOrEqual(installed);
    expect(
      Buffer.from(encodeLockSnapshot(follower.locks.snapshot())).equals(
        Buffer.from(encodeLockSnapshot(leader.locks.snapshot())),
      ),
    ).toBe(true);

    // Restarted from its disk, it answers as the leader does.
    await follower.stop();
    nodes.delete(followerId);
    heldNode = null;
    const restarted = await start(followerId, false);
    await open(5);
    await until(
      () => restarted.status().appliedIndex === leader.status().appliedIndex,
      'the restarted follower caught up',
    );
    expect(
      Buffer.from(encodeLockSnapshot(restarted.locks.snapshot())).equals(
        Buffer.from(encodeLockSnapshot(leader.locks.snapshot())),
      ),
    ).toBe(true);
  } finally {
    release();
    await Promise.all([...nodes.values()].map((node) => node.stop()));
  }
}, 120_000);
