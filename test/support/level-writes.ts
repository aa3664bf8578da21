import { Level } from 'level';
import { type MockInstance, vi } from 'vitest';
import { type Db, openSublevels, type Sublevels } from '../../src/storage/level-layout.ts';

/**
 * Seams on LevelDB's native writes, for storage tests that count, fail or hold them.
 * LevelStorage writes every batch through classic-level's `_batch` (writeBatch in
 * src/storage/level-layout.ts): one call per atomic, optionally synced, LevelDB write,
 * its ops already prefixed with their sublevel's.
 */
type Native = (...args: unknown[]) => Promise<void>;

export interface NativeWrites {
  /** One call per batch written: the ops, then the write options. */
  readonly batch: MockInstance<Native>;
  readonly put: MockInstance<Native>;
  readonly del: MockInstance<Native>;
  readonly clear: MockInstance<Native>;
  /** The types of the ops of the `n`th batch written, in order. */
  opTypes(n: number): string[];
}

/** Spies on every native write LevelDB receives; restore with vi.restoreAllMocks(). */
export function spyOnNativeWrites(): NativeWrites {
  const level = Level.prototype as unknown as Record<'_batch' | '_put' | '_del' | '_clear', Native>;
  const batch = vi.spyOn(level, '_batch');
  return {
    batch,
    put: vi.spyOn(level, '_put'),
    del: vi.spyOn(level, '_del'),
    clear: vi.spyOn(level, '_clear'),
    opTypes(n) {
      const ops = (batch.mock.calls[n]?.[0] ?? []) as readonly { type: string }[];
      return ops.map((op) => op.type);
    },
  };
}

/**
 * Wraps each native write (numbered from 1), a batch or a range clear (a compaction's
 * deletions, see LevelStorage.compact), in `around`, which makes it by calling
 * `native`, or does not (a crash before the write), and may fail afterwards (a crash
 * after it) or hold it. Restore with vi.restoreAllMocks().
 */
export function interceptWrites(
  around: (write: number, native: () => Promise<void>) => Promise<void>,
): void {
  let writes = 0;
  const wrapped = (native: Native): Native =>
    function (this: unknown, ...args: unknown[]) {
      writes++;
      return around(writes, () => {
        // A write held across a close would reach the native side after it: classic-level
        // crashes the process then, where writeBatch refuses the write by name.
        const status = (this as { status?: string }).status;
        if (status !== 'open') return Promise.reject(new Error(`held write after ${status}`));
        return native.apply(this, args);
      });
    };
  const level = Level.prototype as unknown as Record<'_batch' | '_clear', Native>;
  // Taken before the spies replace them.
  const [batch, clear] = [wrapped(level._batch), wrapped(level._clear)];
  vi.spyOn(level, '_batch').mockImplementation(batch);
  vi.spyOn(level, '_clear').mockImplementation(clear);
}

/**
 * The process dies at native write `k`: before it is made, or just after it `landed`;
 * every later write fails as a dead process's would. Restore with vi.restoreAllMocks().
 */
export function crashAtWrite(k: number, landed: boolean): void {
  let dead = false;
  interceptWrites(async (write, native) => {
    if (dead) throw new Error('the process died');
    if (write === k) {
      dead = true;
      if (!landed) throw new Error('the process died');
    }
    return native();
  });
}

/** Runs `before` ahead of each native write: it may hold it (a promise) or fail it (throw). */
export function beforeEachWrite(before: (write: number) => Promise<void> | void): void {
  interceptWrites(async (write, native) => {
    await before(write);
    return native();
  });
}

export type NativeWriteKind = 'batch' | 'clear';

/**
 * Like interceptWrites, and says which kind each write is; `run` may be given options of
 * its own for a range clear (`limit`, `reverse`: a clear cut part way, as a crash
 * between its internal batches, or a power loss, could leave it).
 */
export function interceptWritesByKind(
  around: (
    write: number,
    kind: NativeWriteKind,
    run: (options?: object) => Promise<void>,
  ) => Promise<void>,
): void {
  const level = Level.prototype as unknown as Record<'_batch' | '_clear', Native>;
  let writes = 0;
  // Taken before the spies replace them.
  const [batch, clear] = [level._batch, level._clear];
  vi.spyOn(level, '_batch').mockImplementation(function (this: unknown, ...args) {
    writes++;
    return around(writes, 'batch', () => batch.apply(this, args));
  });
  vi.spyOn(level, '_clear').mockImplementation(function (this: unknown, ...args) {
    writes++;
    const [options, ...rest] = args as [Record<string, unknown>, ...unknown[]];
    return around(writes, 'clear', (changed) =>
      clear.apply(this, [{ ...options, ...(changed ?? {}) }, ...rest]),
    );
  });
}

/** Opens the database at `path` behind LevelStorage's back (closed again afterwards). */
export async function withRawDb<T>(
  path: string,
  use: (sublevels: Sublevels, db: Db) => Promise<T>,
): Promise<T> {
  const db: Db = new Level<Uint8Array, Uint8Array>(path, {
    keyEncoding: 'view',
    valueEncoding: 'view',
  });
  await db.open();
  try {
    return await use(openSublevels(db), db);
  } finally {
    await db.close();
  }
}

/** A fresh database at `path`, keys and values raw bytes, as LevelStorage opens it. */
export async function openRawDb(path: string): Promise<Db> {
  const db: Db = new Level<Uint8Array, Uint8Array>(path, {
    keyEncoding: 'view',
    valueEncoding: 'view',
  });
  await db.open();
  return db;
}

/** Every record as `key=value` in hex, straight from the root database. */
export async function dumpRecords(db: Db): Promise<string[]> {
  const records: string[] = [];
  for await (const [key, value] of db.iterator()) {
    records.push(`${Buffer.from(key).toString('hex')}=${Buffer.from(value).toString('hex')}`);
  }
  return records;
}
