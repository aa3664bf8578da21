import { afterEach, describe, expect, it } from 'vitest';
import type { PersistBatch } from '../../src/storage/index.ts';
import { logIndex } from '../../src/util/ids.ts';
import { TestCluster } from '../node/cluster-harness.ts';

/**
 * Review of early-apply2 (9c5eed7), what held: a follower answers a forwarded write
 * while its own write of the Ready that commits it is still held (a slow fsync, or one a
 * crash is about to lose). At the moment of that answer the entry must already be on a
 * majority of the voters' disks without this follower's copy, so that losing the held
 * write (kill -9) loses nothing acknowledged. Passes on early-apply2 and on its parent.
 */
let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.stopAll();
  cluster = null;
});

describe('review early-apply2: an early answer is durable without the answering node', () => {
  it('a follower answers a forwarded write only once the others hold it on disk', async () => {
    const c = new TestCluster();
    cluster = c;
    const leader = await c.leader();
    const follower = await c.follower();
    const storage = c.storages.get(follower.id);
    if (storage === undefined) throw new Error('no storage');
    // Hold every write of the follower that carries a commit index past the armed one,
    // for 500 ms each (bounded), so the answer can only come from an early apply. Since
    // a commit index alone waits for the next write (HeldCommit, 5ae8b73), that is
    // usually the follower's next entry write, so entry writes are held too: each round
    // still has a held write, though fewer answers now leave while one is held.
    let armed: number | null = null;
    let holding = 0;
    let held = 0;
    let answeredWhileHeld = 0;
    const persist = storage.persist.bind(storage);
    storage.persist = async (batch: PersistBatch) => {
      const carriesEntries = (batch.entries?.length ?? 0) > 0;
      if (armed !== null && (carriesEntries || (batch.hardState?.commitIndex ?? 0) > armed)) {
        held++;
        holding++;
        await new Promise((resolve) => setTimeout(resolve, 500));
        holding--;
      }
      await persist(batch);
    };
    for (let round = 0; round < 5; round++) {
      armed = follower.status().commitIndex;
      const { index } = await follower.write({
        type: 'OpenSession',
        ttlMs: 5_000,
        clientName: `r${round}`,
        requestId: `early-apply2-${round}`,
      });
      if (holding > 0) answeredWhileHeld++;
      const others = [...c.storages.entries()].filter(([id]) => id !== follower.id);
      const term = c.storages.get(leader.id)?.term(logIndex(index));
      const holders = others.filter(([, s]) => s.term(logIndex(index)) === term);
      expect(term).toBeDefined();
      // 2 of 3 voters without the follower: a majority, whatever happens to its write.
      expect(holders.length, `round ${round}: answered while held=${holding}`).toBe(2);
    }
    armed = null;
    expect(held).toBeGreaterThan(0);
    // 5 of 5 on early-apply2, 0 on its parent (there the answer waits for the write).
    console.log(`early-apply2 review: ${answeredWhileHeld}/5 answers left while held`);
  }, 30_000);
});
