/**
 * Review of 78cc636. A leader's background read of its snapshot data fails (the store
 * keeps the failure and "throws to the next caller that wants the data", so that "the
 * node then stops, as on any storage failure"). The next caller is whatever calls
 * LeaderReplication.sendAppend for the lagging follower next. On a leader taking writes
 * that is a client write: raft.propose -> appendAsLeader -> broadcastAppend. That path is
 * outside the node's failure handling (receive / the Ready loop catch and stopOnFailure;
 * proposeLocal does not): the write rejects with the raw storage error, the node keeps
 * running as leader with the entry half-broadcast, and the write's registered proposal
 * is left unobserved, so the node's later failAll rejects it unhandled.
 * Three nodes on real LevelDB, in-process network (as test/node/snapshot-transfer-from-disk).
 *
 * FAILED on 78cc636 (the raw injected error out of write(), the node still leading).
 * Since the fix a failed background read is never thrown into the core: the store keeps
 * it like a failed write's, so the write's own persist is refused and the node stops.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Level } from 'level';
import { afterEach, expect, it, vi } from 'vitest';
import { DlmError } from '../../src/node/errors.ts';
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
  await Promise.all(running.splice(0).map((node) => node.stop().catch(() => {})));
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

it('a failed background snapshot read stops the node, not a client write', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dlm-review-bg-fail-'));
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
  // The first follower in the leader's progress order is the one cut off.
  const cut = ids.find((id) => id !== lead.id) as NodeId;
  network.isolate(cut, ids);
  for (let i = 0; i < 200; i++) {
    await lead.write({
      type: 'OpenSession',
      ttlMs: 60_000,
      clientName: `c-${i}`,
      requestId: `r${i}`,
    });
  }
  const ls = storages.get(lead.id) as LevelStorage;
  await until(() => ls.firstIndex() > 150, 'leader compacted');
  await new Promise((r) => setImmediate(r));
  gc();

  // The background read fails (a damaged disk, say). The follower that asked for it is
  // gone again at once (a flapping link), so its heartbeat answers do not ask again.
  let reads = 0;
  vi.spyOn(
    Level.prototype as unknown as Record<'_iterator', () => unknown>,
    '_iterator',
  ).mockImplementation(() => {
    reads++;
    network.isolate(cut, ids);
    throw new Error('injected: the disk failed under the background read');
  });
  network.heal();
  await until(() => reads > 0, 'background read started');
  await sleep(50);
  expect(lead.running).toBe(true); // nothing asked again yet

  // A client write on the leader: it must fail as the node's failure (INTERNAL, the
  // node stopped), not carry the storage error out of the core half-way through a step.
  let error: unknown = null;
  try {
    await lead.write({ type: 'OpenSession', ttlMs: 60_000, clientName: 'late', requestId: 'late' });
  } catch (caught) {
    error = caught;
  }
  // On 78cc636: the raw Error('injected: ...') thrown out of raft.propose, the node still
  // leading, and one election timeout later the write's orphaned proposal rejected with
  // no one listening (an unhandled rejection: in production, the process dies of it).
  expect(error).toBeInstanceOf(DlmError);
  expect((error as DlmError).code).toBe('INTERNAL');
  expect(lead.running).toBe(false);
}, 60_000);
