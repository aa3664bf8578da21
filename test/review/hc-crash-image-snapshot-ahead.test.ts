import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { nodeId } from '../../src/util/ids.ts';
import { OPTIONS, until } from '../node/cluster-harness.ts';

/**
 * Review of 5ae8b73 (HeldCommit): the image a kill -9 leaves while a commit index is
 * held, after a snapshot (and compaction) went past the durable commit index. The copy
 * of a quiet LevelDB directory is what SIGKILL leaves (unsynced writes are in the OS
 * cache). The restarted node must load it (level-load: snapshot and compaction point
 * above the stored commit), and come back with every acknowledged write.
 */
const N1 = nodeId('n1');
const SLOW_TICK: NodeRuntimeOptions = {
  ...OPTIONS,
  // A wide window for the held commit index (it is written after a tick of quiet).
  tickIntervalMs: 150,
  raft: { electionTimeoutTicks: 4, heartbeatIntervalTicks: 1 },
  snapshotEntriesThreshold: 4,
  compactionRetainEntries: 0,
};
let dir: string | null = null;
const running: DlmNode[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((node) => node.stop()));
  if (dir !== null) await rm(dir, { recursive: true, force: true });
  dir = null;
});

// biome-ignore lint/suspicious/noExplicitAny: reaching into the node
type Internals = any;

async function startNode(path: string, bootstrap: boolean): Promise<DlmNode> {
  const storage = await LevelStorage.open(
    path,
    bootstrap ? { bootstrap: { voters: [N1], learners: [] } } : {},
  );
  const node = new DlmNode(N1, storage, new MemoryNetwork().connect(N1), SLOW_TICK, undefined, 7);
  running.push(node);
  node.start();
  await until(
    () => node.status().role === 'leader' && node.locks.rulesSetIndex !== null,
    'n1 leads with the rules set',
  );
  return node;
}

describe('review 5ae8b73: kill -9 while a commit index is held behind a snapshot', () => {
  it('restarts from a snapshot and compaction point above the durable commit index', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hc-image-'));
    const path = join(dir, 'n1');
    const node = await startNode(path, true);
    const sessions: number[] = [];
    let imaged = false;
    for (let attempt = 0; attempt < 40 && !imaged; attempt++) {
      const { result } = await node.write({
        type: 'OpenSession',
        ttlMs: 60_000,
        clientName: `c${attempt}`,
        requestId: `r${attempt}`,
      });
      if (result.type !== 'SessionOpened') throw new Error(result.type);
      sessions.push(result.sessionId);
      // Let the snapshot (taken in turns every 4 entries) and the compaction behind it land.
      await new Promise((resolve) => setTimeout(resolve, 20));
      const storage = (node as Internals).storage as LevelStorage;
      const held = (node as Internals).heldCommit.held;
      const snapshotIndex = storage.snapshot().metadata.index;
      const durableCommit = storage.initialState().hardState.commitIndex;
      if (held === null || snapshotIndex <= durableCommit) continue;
      if (storage.firstIndex() - 1 <= durableCommit) continue;
      // Quiet, commit held, snapshot and compaction point above the durable commit: image it.
      await cp(path, join(dir, 'image'), { recursive: true });
      imaged = (node as Internals).heldCommit.held !== null;
    }
    expect(imaged, 'an image with the commit index held behind snapshot and compaction').toBe(true);
    await node.stop();
    running.splice(running.indexOf(node), 1);
    const image = await LevelStorage.open(join(dir, 'image'));
    const stored = {
      commit: image.initialState().hardState.commitIndex,
      snapshot: image.snapshot().metadata.index,
      compacted: image.firstIndex() - 1,
      last: image.lastIndex(),
    };
    await image.close();
    expect(stored.commit).toBeLessThan(stored.snapshot);
    const restarted = await startNode(join(dir, 'image'), false);
    for (const id of sessions) expect(restarted.locks.session(id as never)).toBeDefined();
    console.log(`hc image: ${JSON.stringify(stored)}, ${sessions.length} sessions all back`);
  }, 30_000);
});
