import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LockCommand } from '../../src/lock/index.ts';
import { encodeEntry } from '../../src/node/entry-codec.ts';
import type { Entry } from '../../src/raft/types.ts';
import { LevelStorage } from '../../src/storage/index.ts';
import { logIndex, nodeId, term } from '../../src/util/ids.ts';

/**
 * Real LevelDB node directories, written with the project's storage, for the tests of
 * what the Jepsen run reads back after a run (raft-log.ts and the checks on it).
 */
export const BOOTSTRAP = { voters: [nodeId('n1'), nodeId('n2')], learners: [] };

export function normal(index: number, command: LockCommand, entryTerm = 1): Entry {
  return {
    kind: 'normal',
    term: term(entryTerm),
    index: logIndex(index),
    data: encodeEntry({ proposalId: `p${index}`, command }),
  };
}

/** Temporary directories, removed by removeAll (call it after each test). */
export class LogDirs {
  private readonly dirs: string[] = [];

  /** A fresh directory to hold node directories. */
  make(): string {
    const dir = mkdtempSync(join(tmpdir(), 'dlm-raft-log-'));
    this.dirs.push(dir);
    return dir;
  }

  /** A node directory holding `entries`, with `commit` as its persisted commit index. */
  async node(id: string, entries: readonly Entry[], commit: number): Promise<string> {
    const path = join(this.make(), id);
    const storage = await LevelStorage.open(path, { bootstrap: BOOTSTRAP });
    await storage.persist({
      entries,
      hardState: { term: term(2), votedFor: null, commitIndex: logIndex(commit) },
    });
    await storage.close();
    return path;
  }

  removeAll(): void {
    for (const dir of this.dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}
