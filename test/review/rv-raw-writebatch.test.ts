/**
 * Adversarial review of b00409c: writeBatch straight to classic-level's `_batch`, dlm
 * adding the sublevel prefixes. Real LevelDB throughout.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ClusterConfig } from '../../src/raft/types.ts';
import {
  type BatchOp,
  type Db,
  openSublevels,
  putEntry,
  SUBLEVEL_NAMES,
  type Sublevels,
  writeBatch,
} from '../../src/storage/level-layout.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { entry, hardState, ids } from '../raft/harness.ts';
import { dumpRecords, openRawDb } from '../support/level-writes.ts';

const [a, b, c] = ids('a', 'b', 'c');
const config: ClusterConfig = { voters: [a, b, c], learners: [] };

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dlm-rv-raw-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const openDb = (name: string): Promise<Db> => openRawDb(join(dir, name));
const dump = dumpRecords;

/** Bytes in every shape a caller might hand over: fresh, views with an offset, Buffers, pooled. */
const shaped = (bytes: Uint8Array, shape: number): Uint8Array => {
  switch (shape) {
    case 0:
      return Uint8Array.from(bytes);
    case 1: {
      const host = new Uint8Array(bytes.byteLength + 13).fill(0xee);
      host.set(bytes, 7);
      return host.subarray(7, 7 + bytes.byteLength);
    }
    case 2: {
      const host = Buffer.alloc(bytes.byteLength + 9, 0xdd);
      host.set(bytes, 5);
      return host.subarray(5, 5 + bytes.byteLength);
    }
    case 3:
      return Buffer.from(bytes); // small ones come from the shared pool, non-zero byteOffset
    default: {
      const host = new Uint8Array(bytes.byteLength + 4).fill(0xcc);
      host.set(bytes, 4);
      return new Uint8Array(host.buffer, 4, bytes.byteLength);
    }
  }
};

const bytesArb = fc.oneof(
  fc.uint8Array({ maxLength: 12 }),
  fc.constantFrom(new Uint8Array(0), Uint8Array.of(0x21), Uint8Array.of(0xff, 0x00, 0x21)),
);
const opArb = fc.record({
  del: fc.boolean(),
  sub: fc.integer({ min: 0, max: SUBLEVEL_NAMES.length - 1 }),
  key: bytesArb,
  value: bytesArb,
  keyShape: fc.integer({ min: 0, max: 4 }),
  valueShape: fc.integer({ min: 0, max: 4 }),
});
type Op = typeof opArb extends fc.Arbitrary<infer T> ? T : never;

function toBatch(s: Sublevels, ops: readonly Op[]): BatchOp[] {
  return ops.map((op) => {
    const sublevel = s[SUBLEVEL_NAMES[op.sub] ?? 'log'];
    const key = shaped(op.key, op.keyShape);
    return op.del
      ? { type: 'del', sublevel, key }
      : { type: 'put', sublevel, key, value: shaped(op.value, op.valueShape) };
  });
}

describe('writeBatch against db.batch(ops), real LevelDB', () => {
  it('same records for random puts and deletions over every sublevel, views with offsets, empty keys and values', async () => {
    const array = await openDb('array');
    const raw = await openDb('raw');
    const sa = openSublevels(array);
    const sr = openSublevels(raw);
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(opArb, { maxLength: 20 }), { maxLength: 6 }),
          async (batches) => {
            await array.clear();
            await raw.clear();
            for (const ops of batches) {
              await array.batch(toBatch(sa, ops), { sync: false });
              await writeBatch(raw, toBatch(sr, ops), false);
            }
            expect(await dump(raw)).toEqual(await dump(array));
            // And reads back through each sublevel as written.
            for (const name of SUBLEVEL_NAMES) {
              const viaSub = await openSublevels(raw)[name].iterator().all();
              const want = await openSublevels(array)[name].iterator().all();
              expect(
                viaSub.map(([k, v]) => [
                  Buffer.from(k).toString('hex'),
                  Buffer.from(v).toString('hex'),
                ]),
              ).toEqual(
                want.map(([k, v]) => [
                  Buffer.from(k).toString('hex'),
                  Buffer.from(v).toString('hex'),
                ]),
              );
            }
          },
        ),
        { numRuns: 150, seed: 424242 },
      );
    } finally {
      await array.close();
      await raw.close();
    }
  });

  it('a 1 MB value given as a view with an offset into a larger buffer is stored whole, and reopens', async () => {
    let db = await openDb('big');
    const s = openSublevels(db);
    const host = new Uint8Array(3 * 1024 * 1024);
    for (let i = 0; i < host.length; i++) host[i] = (i * 31 + 7) & 0xff;
    const view = host.subarray(1024 * 1024 + 3, 2 * 1024 * 1024 + 3);
    await writeBatch(
      db,
      [{ type: 'put', sublevel: s.snapshotChunk, key: Uint8Array.of(1), value: view }],
      true,
    );
    await db.close();
    db = await openDb('big');
    const got = await openSublevels(db).snapshotChunk.get(Uint8Array.of(1));
    expect(got && Buffer.from(got).equals(Buffer.from(view))).toBe(true);
    await db.close();
  });
});

describe('close and status', () => {
  it('many writes in flight, then close: every one settles fulfilled and is on disk; one issued after close() is refused and absent', async () => {
    let db = await openDb('race');
    const s = openSublevels(db);
    const mk = (i: number) =>
      putEntry(s, {
        kind: 'normal',
        index: idx(i),
        term: tm(1),
        data: new Uint8Array(2_000).fill(i & 0xff),
      });
    const inFlight = Array.from({ length: 20 }, (_, w) =>
      writeBatch(
        db,
        Array.from({ length: 100 }, (_, i) => mk(w * 100 + i + 1)),
        w % 2 === 0,
      ),
    );
    const closed = db.close();
    const late = writeBatch(db, [mk(99_999)], true).then(
      () => 'written',
      (error: unknown) => String(error),
    );
    const results = await Promise.allSettled([...inFlight, closed]);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    expect(await late).toMatch(/database is closing, not open/);
    db = await openDb('race');
    expect(await dump(db)).toHaveLength(2_000);
    await db.close();
  });

  it('a write while the database is still opening is refused (abstract-level deferred it)', async () => {
    const db: Db = new Level<Uint8Array, Uint8Array>(join(dir, 'opening'), {
      keyEncoding: 'view',
      valueEncoding: 'view',
    });
    const s = openSublevels(db);
    expect(db.status).toBe('opening');
    await expect(
      writeBatch(
        db,
        [putEntry(s, { kind: 'normal', index: idx(1), term: tm(1), data: Uint8Array.of(1) })],
        true,
      ),
    ).rejects.toThrow(/opening/);
    await db.open();
    expect(await dump(db)).toEqual([]);
    await db.close();
  });

  it('LevelStorage: a write refused by writeBatch (database closed under it) refuses every later write', async () => {
    const path = join(dir, 'n1');
    const storage = await LevelStorage.open(path, { bootstrap: config });
    const first = storage.lastIndex() + 1;
    await storage.persist({ entries: [entry(first, 1)], hardState: hardState(1, a, first) });
    const db = (storage as unknown as { db: Db }).db;
    await db.close();
    await expect(
      storage.persist({ entries: [entry(first + 1, 1)], hardState: hardState(1, a, first + 1) }),
    ).rejects.toThrow(/database is closed/);
    await db.open();
    await expect(storage.saveIdentity({ clusterId: 'x', nodeId: a })).rejects.toThrow(
      /refusing to write after a failed write/,
    );
    await storage.close();
    const reopened = await LevelStorage.open(path);
    expect(reopened.lastIndex()).toBe(first);
    await reopened.close();
  });

  it('LevelStorage: a snapshot whose data is a view with an offset, in many chunks, reads back whole', async () => {
    const path = join(dir, 'n2');
    const storage = await LevelStorage.open(path, {
      bootstrap: config,
      snapshotChunkBytes: 1000,
      snapshotInstallChunkBytes: 1000,
    });
    const first = storage.lastIndex() + 1;
    await storage.persist({ entries: [entry(first, 1)], hardState: hardState(1, a, first) });
    const host = Buffer.alloc(10_777);
    for (let i = 0; i < host.length; i++) host[i] = (i * 13) & 0xff;
    const data = host.subarray(333, 333 + 9_999);
    await storage.createSnapshot(idx(first), config, data);
    await storage.close();
    const reopened = await LevelStorage.open(path);
    expect(Buffer.from(reopened.snapshot().data).equals(data)).toBe(true);
    await reopened.close();
  });
});
