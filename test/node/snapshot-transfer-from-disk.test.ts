/**
 * A follower cut off while the leader snapshots and compacts past it catches up by
 * InstallSnapshot whose data the leader no longer holds (a forced collection dropped it,
 * src/storage/snapshot-read.ts) and reads back from disk in the background, never with
 * its event loop held. Three nodes on real LevelDB, an in-process network.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Level } from 'level';
import { afterEach, expect, it, vi } from 'vitest';
import { encodeLockSnapshot } from '../../src/node/entry-codec.ts';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const ids = ['n1', 'n2', 'n3'].map(nodeId);
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
const dirs: string[] = [];
const running: DlmNode[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(running.splice(0).map((node) => node.stop()));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(check: () => boolean, what: string, ms = 20_000) {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) throw new Error(`timeout: ${what}`);
    await sleep(10);
  }
}

it('a cut-off follower installs the leader snapshot, read back from disk in the background', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dlm-transfer-from-disk-'));
  dirs.push(dir);
  const network = new MemoryNetwork();
  const storages = new Map<NodeId, LevelStorage>();
  const nodes = new Map<NodeId, DlmNode>();
  for (const [i, id] of ids.entries()) {
    const storage = await LevelStorage.open(join(dir, id), {
      bootstrap: { voters: ids, learners: [] },
      snapshotChunkBytes: 1000,
    });
    storages.set(id, storage);
    const node = new DlmNode(id, storage, network.connect(id), OPTIONS, undefined, i + 1);
    node.start();
    nodes.set(id, node);
    running.push(node);
  }
  let leader: DlmNode | undefined;
  await until(() => {
    leader = [...nodes.values()].find((n) => n.status().role === 'leader');
    return leader !== undefined && leader.locks.rulesSetIndex !== null;
  }, 'leader');
  const lead = leader as DlmNode;
  const cut = ids.find((id) => id !== lead.id) as NodeId;
  network.isolate(cut, ids);
  for (let i = 0; i < 400; i++) {
    await lead.write({
      type: 'OpenSession',
      ttlMs: 60_000,
      clientName: `client-${i}`,
      requestId: `r${i}`,
    });
  }
  const ls = storages.get(lead.id) as LevelStorage;
  await until(() => ls.firstIndex() > 300, 'leader compacted');
  await new Promise((r) => setImmediate(r));
  gc();
  const level = Level.prototype as unknown as Record<'_getSync', (...args: unknown[]) => unknown>;
  const getSync = vi.spyOn(level, '_getSync');
  const iterators = vi.spyOn(
    Level.prototype as unknown as Record<'_iterator', (...args: unknown[]) => unknown>,
    '_iterator',
  );
  network.heal();
  const follower = nodes.get(cut) as DlmNode;
  await until(() => follower.status().appliedIndex >= lead.status().commitIndex, 'caught up');
  // Read in the background, through an iterator (the only one any node opened), and
  // nothing read it with the event loop held.
  expect(iterators).toHaveBeenCalledTimes(1);
  expect(getSync).not.toHaveBeenCalled();
  expect(ls.snapshotDataBytes()).toBeGreaterThan(0);
  expect(follower.status().role).toBe('follower');
  expect(Buffer.from(encodeLockSnapshot(follower.locks.snapshot()))).toEqual(
    Buffer.from(encodeLockSnapshot(lead.locks.snapshot())),
  );
}, 60_000);
