import { afterEach, describe, expect, it } from 'vitest';
import type { PersistBatch } from '../../src/storage/index.ts';
import { OPTIONS, sleep, TestCluster, until } from '../node/cluster-harness.ts';

/**
 * Review of 616603e (takeEarlyCommitted). A leader's write of entry a is held; while it
 * runs, b is proposed (so it is in no write yet), both followers acknowledge a and b, and
 * the leader applies both early. When a's write returns, advance() marks b applied,
 * though b is not in the leader's storage: its write is the next Ready's, which is held
 * too. The snapshotter, started right after advance, snapshots at the core's applied
 * index (b) and asks the storage for the term at b: there is none, createSnapshot throws
 * and the leader stops on the failure. Before 616603e nothing past what the Ready's
 * write stored was ever marked applied at advance.
 */
let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.stopAll();
  cluster = null;
});

describe('review 616603e: early apply and the snapshotter', () => {
  it('the leader does not snapshot (and fail) at an index its storage does not hold yet', async () => {
    const c = new TestCluster({
      ...OPTIONS,
      snapshotEntriesThreshold: 1,
      compactionRetainEntries: 0,
    });
    cluster = c;
    const leader = await c.leader();
    const storage = c.storages.get(leader.id);
    if (storage === undefined) throw new Error('no storage');
    const failures: Error[] = [];
    leader.observe({ failed: (error) => failures.push(error) });
    await sleep(200);

    // Holds each write of entries while armed, until its gate is opened.
    let armed = false;
    const gates: (() => void)[] = [];
    const persist = storage.persist.bind(storage);
    storage.persist = async (batch: PersistBatch) => {
      if (armed && (batch.entries?.length ?? 0) > 0) {
        await new Promise<void>((resolve) => gates.push(resolve));
      }
      await persist(batch);
    };
    const openAll = () => {
      armed = false;
      for (const open of gates.splice(0)) open();
    };
    let a: ReturnType<typeof leader.write> | null = null;
    let b: ReturnType<typeof leader.write> | null = null;
    try {
      armed = true;
      a = leader.write({ type: 'OpenSession', ttlMs: 5_000, clientName: 'a', requestId: 'a' });
      await until(() => gates.length === 1, 'the write of a is held');
      b = leader.write({ type: 'OpenSession', ttlMs: 5_000, clientName: 'b', requestId: 'b' });
      // b is in the log now (proposed while a's write is held): both followers apply it.
      const raft = (leader as unknown as { raft: { log: { lastIndex(): number } } }).raft;
      const bIndex = raft.log.lastIndex();
      const followers = [...c.nodes.values()].filter((node) => node !== leader);
      await until(
        () => followers.every((node) => node.status().appliedIndex >= bIndex),
        'the followers apply b while the leader writes a',
      );
      expect(gates).toHaveLength(1);
      expect(storage.lastIndex()).toBeLessThan(bIndex);
      // a's write returns; the next Ready's (b) is held.
      gates.shift()?.();
      await until(() => gates.length === 1 || failures.length > 0, 'the write of b is held');
      await sleep(100);
      expect(failures.map((error) => error.message)).toEqual([]);
    } finally {
      openAll();
    }
    expect((await a)?.result).toMatchObject({ type: 'SessionOpened' });
    expect((await b)?.result).toMatchObject({ type: 'SessionOpened' });
    expect(failures.map((error) => error.message)).toEqual([]);
  });
});
