/**
 * The corrupt-record nemesis must damage a record the node reads at open, so that the
 * node refuses to start. A crash inside a range clear (after a compaction, or after
 * installing the leader's snapshot) leaves log entries at or below the compaction point,
 * which open deletes unread: damage there would let the node start, and the run would
 * report a node that ran on a damaged database (found in review).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { encodeEntry } from '../../src/storage/codec.ts';
import { encodeIndexKey } from '../../src/storage/keys.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { flipOneBit } from '../../src/tools/jepsen/corrupt-record.ts';
import { logIndex } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import { entry, hardState, ids } from '../raft/harness.ts';
import { withRawDb } from '../support/level-writes.ts';

const [a, b, c] = ids('a', 'b', 'c');
const config = { voters: [a, b, c], learners: [] };
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dlm-corrupt-pick-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A store compacted to 8 whose entries 2..8 are still there, as a cut clear leaves them. */
async function storeWithLeftovers(path: string): Promise<void> {
  const storage = await LevelStorage.open(path, { bootstrap: config });
  await storage.persist({
    entries: Array.from({ length: 11 }, (_, i) => entry(i + 2, 1)),
    hardState: hardState(1, a, 12),
  });
  await storage.createSnapshot(logIndex(8), config, new Uint8Array([1, 2, 3]));
  await storage.compact(logIndex(8));
  await storage.close();
  await withRawDb(path, async ({ log }) => {
    for (let index = 2; index <= 8; index++) {
      await log.put(encodeIndexKey(logIndex(index)), encodeEntry(entry(index, 1)));
    }
  });
}

it('damages only records that open reads: 60 seeds over a store with leftovers behind its compaction point', async () => {
  for (let seed = 1; seed <= 60; seed++) {
    const path = join(dir, `n${seed}`);
    await storeWithLeftovers(path);

    const damage = await flipOneBit(path, new Prng(seed));

    await expect(LevelStorage.open(path), `seed ${seed}: ${damage.where}`).rejects.toThrow();
  }
}, 60_000);
