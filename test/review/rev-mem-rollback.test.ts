/**
 * Review of mem12 (merge 294c14c): the on-disk format change against the previous
 * release (4e75144's storage, extracted with git archive into a directory under the
 * worktree so that it resolves `level` and `msgpackr`). What a rolling upgrade and its
 * rollback meet:
 *  - before a node's first chunked snapshot its data is still the old layout: the
 *    previous release opens it, entries written by the new release included;
 *  - a crash in the middle of the first conversion (chunks written, no manifest) leaves
 *    `latest` whole: the previous release opens it, and the new one again afterwards;
 *  - once a manifest is written the previous release REFUSES the data, loudly (it never
 *    starts blank or serves a partial state). That is the rollback limit the docs state.
 * HELD (passes on main). Skipped where 4e75144 is not in the repository.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ClusterConfig } from '../../src/raft/types.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { logIndex as idx } from '../../src/util/ids.ts';
import { entry, hardState, ids } from '../raft/harness.ts';
import { beforeEachWrite } from '../support/level-writes.ts';

const BEFORE = '4e75144';
const ROOT = resolve(import.meta.dirname, '../..');

function extract(): string | null {
  try {
    const dir = mkdtempSync(join(ROOT, '.rev-mem-old-'));
    const tar = execFileSync('git', ['archive', BEFORE, 'src/storage', 'src/raft', 'src/util']);
    execFileSync('tar', ['-x', '-C', dir], { input: tar });
    return dir;
  } catch {
    return null;
  }
}

const oldDir = extract();
const [a, b, c] = ids('a', 'b', 'c');
const config: ClusterConfig = { voters: [a, b, c], learners: [] };
// biome-ignore lint/suspicious/noExplicitAny: the previous release's class
type Old = any;

describe.skipIf(oldDir === null)('rev-mem: the previous release on data the new one wrote', () => {
  let OldStorage: Old;
  let dir: string;
  beforeAll(async () => {
    OldStorage = (await import(join(oldDir as string, 'src/storage/level-storage.ts')))
      .LevelStorage;
  });
  afterAll(() => {
    if (oldDir !== null) rmSync(oldDir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dlm-rev-mem-rb-'));
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await rm(dir, { recursive: true, force: true });
  });

  /** A database as the previous release leaves it: a snapshot at 3 and entries to 6. */
  async function previousRelease(path: string): Promise<void> {
    const old = await OldStorage.open(path, { bootstrap: config });
    await old.persist({
      entries: [2, 3, 4, 5, 6].map((i) => entry(i, 1)),
      hardState: hardState(1, a, 6),
    });
    await old.createSnapshot(idx(3), config, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    await old.close();
  }

  it('before the first chunked snapshot the previous release still opens the data', async () => {
    const path = join(dir, 'n1');
    await previousRelease(path);
    const current = await LevelStorage.open(path, {
      snapshotChunkBytes: 4,
      snapshotInstallChunkBytes: 4,
    });
    await current.persist({ entries: [entry(7, 2), entry(8, 2)], hardState: hardState(2, a, 8) });
    await current.close();
    const old = await OldStorage.open(path);
    expect(old.lastIndex()).toBe(8);
    expect(old.snapshot().data).toEqual(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    await old.close();
  });

  it('a crash during the first conversion leaves data both releases open', async () => {
    const path = join(dir, 'n1');
    await previousRelease(path);
    const current = await LevelStorage.open(path, {
      snapshotChunkBytes: 4,
      snapshotInstallChunkBytes: 4,
    });
    beforeEachWrite((write) => {
      // Two chunks land; the third chunk write and the manifest never do.
      if (write >= 3) throw new Error('the process died');
    });
    await expect(
      current.createSnapshot(idx(6), config, new Uint8Array(20).fill(7)),
    ).rejects.toThrow();
    vi.restoreAllMocks();
    await current.close();

    const old = await OldStorage.open(path);
    expect(old.snapshot().metadata.index).toBe(3);
    await old.createSnapshot(idx(5), config, Uint8Array.from([5, 5, 5]));
    await old.close();
    const again = await LevelStorage.open(path, {
      snapshotChunkBytes: 4,
      snapshotInstallChunkBytes: 4,
    });
    expect(again.snapshot().metadata.index).toBe(5);
    expect(again.snapshot().data).toEqual(Uint8Array.from([5, 5, 5]));
    await again.close();
  });

  it('after a chunked snapshot the previous release refuses the data loudly (the rollback limit)', async () => {
    const path = join(dir, 'n1');
    await previousRelease(path);
    const current = await LevelStorage.open(path, {
      snapshotChunkBytes: 4,
      snapshotInstallChunkBytes: 4,
    });
    await current.createSnapshot(idx(5), config, new Uint8Array(10).fill(9));
    await current.close();
    await expect(OldStorage.open(path)).rejects.toThrow('snapshot key latest: missing');
    // Nothing was lost: the new release opens it again.
    const again = await LevelStorage.open(path);
    expect(again.snapshot().metadata.index).toBe(5);
    await again.close();
  });
});
