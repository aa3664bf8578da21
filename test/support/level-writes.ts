import { createRequire } from 'node:module';
import { Level } from 'level';
import { type MockInstance, vi } from 'vitest';
import { type Db, openSublevels, type Sublevels } from '../../src/storage/level-layout.ts';

/**
 * Seams on LevelDB's native writes, for storage tests that count, fail or hold them.
 * LevelStorage writes every batch as a chained batch (writeBatch in
 * src/storage/level-layout.ts): its ops go to the native batch one by one (`_put`,
 * `_del`), and `_write` writes them in one atomic, optionally synced, LevelDB write.
 */
type Native = (...args: unknown[]) => Promise<void>;
interface ChainedNative {
  _put: (...args: unknown[]) => void;
  _del: (...args: unknown[]) => void;
  _write: Native;
}

const chainedBatch = createRequire(import.meta.url)('classic-level/chained-batch.js') as {
  ChainedBatch: { prototype: ChainedNative };
};
/** The native chained batch's methods, shared by every database's batches. */
export const CHAINED_BATCH = chainedBatch.ChainedBatch.prototype;

export interface NativeWrites {
  /** One call per chained batch written; its first argument is the write options. */
  readonly batch: MockInstance<Native>;
  /** The array form, `db.batch(ops)`: LevelStorage uses it only for values of 64 KB and more. */
  readonly arrayBatch: MockInstance<Native>;
  readonly put: MockInstance<Native>;
  readonly del: MockInstance<Native>;
  readonly clear: MockInstance<Native>;
  /** The types of the ops of the `n`th batch written, in the order they were added. */
  opTypes(n: number): string[];
}

/** Spies on every native write LevelDB receives; restore with vi.restoreAllMocks(). */
export function spyOnNativeWrites(): NativeWrites {
  const level = Level.prototype as unknown as Record<'_batch' | '_put' | '_del' | '_clear', Native>;
  const batch = vi.spyOn(CHAINED_BATCH, '_write');
  const puts = vi.spyOn(CHAINED_BATCH, '_put');
  const dels = vi.spyOn(CHAINED_BATCH, '_del');
  const opsOf = (spy: MockInstance, type: string, context: unknown) =>
    spy.mock.contexts.flatMap((each, i) =>
      each === context ? [{ type, order: spy.mock.invocationCallOrder[i] ?? 0 }] : [],
    );
  return {
    batch,
    arrayBatch: vi.spyOn(level, '_batch'),
    put: vi.spyOn(level, '_put'),
    del: vi.spyOn(level, '_del'),
    clear: vi.spyOn(level, '_clear'),
    opTypes(n) {
      const context = batch.mock.contexts[n];
      return [...opsOf(puts, 'put', context), ...opsOf(dels, 'del', context)]
        .sort((x, y) => x.order - y.order)
        .map((op) => op.type);
    },
  };
}

/**
 * Wraps each native write (numbered from 1), chained or, for large values, the array
 * form (see writeBatch), or a range clear (a compaction's deletions, see
 * LevelStorage.compact), in `around`, which makes it by calling `native`, or does not
 * (a crash before the write), and may fail afterwards (a crash after it) or hold it.
 * Restore with vi.restoreAllMocks().
 */
export function interceptWrites(
  around: (write: number, native: () => Promise<void>) => Promise<void>,
): void {
  let writes = 0;
  const wrapped = (native: Native): Native =>
    function (this: unknown, ...args: unknown[]) {
      writes++;
      return around(writes, () => native.apply(this, args));
    };
  const level = Level.prototype as unknown as Record<'_batch' | '_clear', Native>;
  // Taken before the spies replace them.
  const [chained, array, clear] = [
    wrapped(CHAINED_BATCH._write),
    wrapped(level._batch),
    wrapped(level._clear),
  ];
  vi.spyOn(CHAINED_BATCH, '_write').mockImplementation(chained);
  vi.spyOn(level, '_batch').mockImplementation(array);
  vi.spyOn(level, '_clear').mockImplementation(clear);
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
  const [chained, array, clear] = [CHAINED_BATCH._write, level._batch, level._clear];
  vi.spyOn(CHAINED_BATCH, '_write').mockImplementation(function (this: unknown, ...args) {
    writes++;
    return around(writes, 'batch', () => chained.apply(this, args));
  });
  vi.spyOn(level, '_batch').mockImplementation(function (this: unknown, ...args) {
    writes++;
    return around(writes, 'batch', () => array.apply(this, args));
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
