/**
 * LevelStorage on a disk that really fills up: a small tmpfs (root only), filled with a
 * ballast file until the kernel answers ENOSPC.
 *
 * What this pins down (found by the Jepsen disk-full nemesis's review): after LevelDB
 * fails a write with ENOSPC, its write-ahead log may hold a torn record, and its log
 * writer's idea of where the next record goes no longer matches the file. Writes it
 * then accepts, once there is room again, are acknowledged (synced) but dropped when
 * the log is replayed at the next open. Measured on classic-level 3 / LevelDB 1.23: 50
 * synced puts after one failed batch all gone after a close and reopen. So after any
 * failed write, an address save included, the store must refuse every later one.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterConfig } from '../../src/raft/types.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { entry, hardState, ids } from '../raft/harness.ts';
import { isRoot, Tmpfs } from '../support/tmpfs.ts';

const [a, b, c] = ids('a', 'b', 'c');
const config: ClusterConfig = { voters: [a, b, c], learners: [] };
const TMPFS_BYTES = 1024 * 1024;
/** Each save is ~100 bytes; a filled tmpfs has at most a page of slack in the log's file. */
const SAVES_UNTIL_FULL_MAX = 1_000;

const tmpfs = new Tmpfs(TMPFS_BYTES, 'dlm-full-');

afterEach(() => {
  tmpfs.unmount();
});

describe.skipIf(!isRoot)('LevelStorage on a full disk (a tmpfs: needs root)', () => {
  it('after an address save fails with ENOSPC, refuses every later write, even with room again', async () => {
    const dir = tmpfs.mount();
    const path = join(dir, 'n1');
    const storage = await LevelStorage.open(path, { bootstrap: config });
    try {
      // A founder's log starts after its bootstrap snapshot.
      const first = storage.lastIndex() + 1;
      await storage.persist({ entries: [entry(first, 1)], hardState: hardState(1, a, first) });
      const ballast = join(dir, 'ballast');
      tmpfs.fill(ballast);

      let failure: unknown = null;
      for (let i = 0; i < SAVES_UNTIL_FULL_MAX && failure === null; i++) {
        const book = [{ id: b, peerAddress: `127.0.0.1:${7_000 + i}`, clientAddress: '' }];
        await storage.saveAddresses(book).catch((error: unknown) => {
          failure = error;
        });
      }
      expect(String(failure)).toContain('No space left on device');

      rmSync(ballast);
      const next = { entries: [entry(first + 1, 1)], hardState: hardState(1, a, first + 1) };
      await expect(storage.persist(next)).rejects.toThrow(/refusing to write after a failed write/);
      await expect(storage.saveIdentity({ clusterId: 'x', nodeId: a })).rejects.toThrow(
        /refusing to write after a failed write/,
      );
    } finally {
      await storage.close();
    }
    const reopened = await LevelStorage.open(path);
    expect(reopened.lastIndex()).toBe(storage.lastIndex());
    await reopened.close();
  });
});
