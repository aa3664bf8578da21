import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';

setFlagsFromString('--expose-gc');
/** A full collection: what drops the snapshot data a store holds only weakly. */
export const collectGarbage = runInNewContext('gc') as () => void;

const IDS = ['n1', 'n2', 'n3'].map(nodeId);
/** Snapshots every 50 entries, 5 kept behind them: a short log is soon compacted. */
const OPTIONS: NodeRuntimeOptions = {
  tickIntervalMs: 10,
  raft: { electionTimeoutTicks: 20, heartbeatIntervalTicks: 1, snapshotChunkBytesMax: 4096 },
  lock: { sessionTtlMsMin: 100 },
  pendingProposalsMax: 4096,
  proposalTimeoutMs: 30_000,
  snapshotEntriesThreshold: 50,
  compactionRetainEntries: 5,
  shutdownTransferMs: 200,
};

export interface CompactedAway {
  readonly network: MemoryNetwork;
  readonly nodes: ReadonlyMap<NodeId, DlmNode>;
  readonly leader: DlmNode;
  readonly leaderStorage: LevelStorage;
  /** The follower cut off (still cut off: heal the network to let it catch up). */
  readonly cut: NodeId;
  /** Stops the nodes and removes their data. */
  remove(): Promise<void>;
}

/**
 * Three nodes on real LevelDB and an in-process network. One follower is cut off while
 * the leader opens `writes` sessions and compacts its log past `compactedPast`, so the
 * follower can catch up only by a snapshot; then a full collection drops what the
 * leader held of that snapshot's data (src/storage/snapshot-read.ts).
 */
export async function followerCompactedAway(
  writes: number,
  compactedPast: number,
): Promise<CompactedAway> {
  const dir = mkdtempSync(join(tmpdir(), 'dlm-compacted-away-'));
  const network = new MemoryNetwork();
  const nodes = new Map<NodeId, DlmNode>();
  const storages = new Map<NodeId, LevelStorage>();
  const remove = async () => {
    await Promise.all([...nodes.values()].map((node) => node.stop().catch(() => {})));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const [i, id] of IDS.entries()) {
      const bootstrap = { voters: IDS, learners: [] };
      const storage = await LevelStorage.open(join(dir, id), {
        bootstrap,
        snapshotChunkBytes: 1000,
        snapshotInstallChunkBytes: 1000,
      });
      storages.set(id, storage);
      const node = new DlmNode(id, storage, network.connect(id), OPTIONS, undefined, i + 1);
      node.start();
      nodes.set(id, node);
    }
    const leader = await until(() => {
      const found = [...nodes.values()].find((node) => node.status().role === 'leader');
      return found?.locks.rulesSetIndex === null ? undefined : found;
    }, 'a leader');
    const cut = IDS.find((id) => id !== leader.id) as NodeId;
    network.isolate(cut, IDS);
    for (let i = 0; i < writes; i++) {
      const command = {
        type: 'OpenSession',
        ttlMs: 60_000,
        clientName: `c-${i}`,
        requestId: `r${i}`,
      } as const;
      await leader.write(command);
    }
    const leaderStorage = storages.get(leader.id) as LevelStorage;
    await until(() => leaderStorage.firstIndex() > compactedPast || undefined, 'the compaction');
    await new Promise((resolve) => setImmediate(resolve));
    collectGarbage();
    return { network, nodes, leader, leaderStorage, cut, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

/** Polls `check` every 10 ms until it gives something, for up to `ms`. */
export async function until<T>(check: () => T | undefined, what: string, ms = 20_000): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
