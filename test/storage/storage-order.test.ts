import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ClusterConfig } from '../../src/raft/types.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { entry, hardState, ids } from '../raft/harness.ts';
import { beforeEachWrite } from '../support/level-writes.ts';

/**
 * From the review of the fail-stop storage: two LevelDB batches in flight at once finish
 * on different threads in either order, so a persist LevelDB wrote after an address
 * save's torn record (ENOSPC) could resolve before that failure is known, and the node
 * would acknowledge an entry the next open drops. So writes take turns: a persist issued
 * while a save is in flight starts only once the save has settled, and is refused if it
 * failed. Real LevelDB; the save's batch is held and failed by a wrapper.
 */
const [a, b, c] = ids('a', 'b', 'c');
const config: ClusterConfig = { voters: [a, b, c], learners: [] };
const dirs: string[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function heldSave(saveFails: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'dlm-storage-order-'));
  dirs.push(dir);
  const storage = await LevelStorage.open(join(dir, 'n1'), { bootstrap: config });
  let finishSave: () => void = () => {};
  const saveHeld = new Promise<void>((resolve) => {
    finishSave = resolve;
  });
  let batches = 0;
  beforeEachWrite(async (write) => {
    batches = write;
    if (write === 1) {
      await saveHeld;
      if (saveFails)
        throw Object.assign(new Error('IO error: No space left on device'), { code: 'ENOSPC' });
    }
  });
  const save = storage
    .saveAddresses([{ id: b, peerAddress: '127.0.0.1:7001', clientAddress: '' }])
    .then(
      () => 'saved',
      (error: unknown) => String(error),
    );
  await new Promise((resolve) => setImmediate(resolve));
  const first = storage.lastIndex() + 1;
  const persist = storage
    .persist({ entries: [entry(first, 1)], hardState: hardState(1, a, first) })
    .then(
      () => 'acknowledged',
      (error: unknown) => String(error),
    );
  await new Promise((resolve) => setTimeout(resolve, 50));
  const batchesWhileSaveHeld = batches;
  finishSave();
  const outcome = { batchesWhileSaveHeld, save: await save, persist: await persist };
  await storage.close().catch(() => {});
  return outcome;
}

describe('LevelStorage writes take turns', () => {
  it('holds a persist behind a save in flight, and refuses it when the save failed', async () => {
    const outcome = await heldSave(true);
    expect(outcome.batchesWhileSaveHeld).toBe(1);
    expect(outcome.save).toContain('No space left on device');
    expect(outcome.persist).toContain('refusing to write after a failed write');
  });

  it('runs the persist once the save succeeded', async () => {
    const outcome = await heldSave(false);
    expect(outcome.batchesWhileSaveHeld).toBe(1);
    expect(outcome).toMatchObject({ save: 'saved', persist: 'acknowledged' });
  });
});
