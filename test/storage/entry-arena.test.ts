/**
 * EntryArena: the log's kept entries carry the same bytes, in slabs of the arena's own
 * (so they neither keep the buffers they came in nor change when those are reused), and
 * LevelStorage keeps its entries that way.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Entry } from '../../src/raft/types.ts';
import { EntryArena } from '../../src/storage/entry-arena.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { AssertionError } from '../../src/util/assert.ts';
import { logIndex, term } from '../../src/util/ids.ts';

function normal(index: number, data: Uint8Array): Entry {
  return { kind: 'normal', term: term(1), index: logIndex(index), data };
}

function dataOf(entry: Entry | undefined): Uint8Array {
  if (entry?.kind !== 'normal') throw new Error(`not a normal entry: ${JSON.stringify(entry)}`);
  return entry.data;
}

describe('EntryArena', () => {
  it('keeps every entry as it was, whatever the sizes, across slabs', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 60 }),
        fc.integer({ min: 8, max: 128 }),
        (datas, slabBytes) => {
          const arena = new EntryArena(slabBytes);
          const entries = datas.map((data, i) => normal(i + 1, data));
          const kept = arena.keep(entries);
          expect(kept.map((entry) => [entry.index, entry.term, entry.kind])).toEqual(
            entries.map((entry) => [entry.index, entry.term, entry.kind]),
          );
          kept.forEach((entry, i) => {
            expect(dataOf(entry)).toEqual(datas[i]);
          });
        },
      ),
    );
  });

  it('copies: the source buffer reused afterwards changes nothing kept', () => {
    const arena = new EntryArena(64);
    const source = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const [small, large] = arena.keep([
      normal(1, source.subarray(0, 4)),
      normal(2, new Uint8Array(source.buffer, 0, 10)),
    ]);
    source.fill(0);
    expect([...dataOf(small)]).toEqual([1, 2, 3, 4]);
    expect([...dataOf(large)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(dataOf(small).buffer).not.toBe(source.buffer);
  });

  it('puts small entries in one shared slab and a large one in a buffer of its own', () => {
    const arena = new EntryArena(64);
    const [first, second, large] = arena.keep([
      normal(1, new Uint8Array(8).fill(1)),
      normal(2, new Uint8Array(8).fill(2)),
      normal(3, new Uint8Array(9).fill(3)),
    ]);
    expect(dataOf(first).buffer).toBe(dataOf(second).buffer);
    expect(dataOf(first).buffer.byteLength).toBe(64);
    // 9 bytes is more than an eighth of a 64-byte slab.
    expect(dataOf(large).buffer.byteLength).toBe(9);
  });

  it('starts a new slab when an entry does not fit in what is left', () => {
    const arena = new EntryArena(16);
    const [first, second] = arena.keep([
      normal(1, new Uint8Array(2).fill(1)),
      normal(2, new Uint8Array(2).fill(2)),
    ]);
    const [third] = arena.keep(
      Array.from({ length: 7 }, (_, i) => normal(i + 3, new Uint8Array(2).fill(i + 3))),
    );
    expect(dataOf(first).buffer).toBe(dataOf(second).buffer);
    expect(dataOf(third).buffer).toBe(dataOf(first).buffer);
    const [overflow] = arena.keep([normal(10, new Uint8Array(2).fill(10))]);
    expect(dataOf(overflow).buffer).not.toBe(dataOf(first).buffer);
    expect([...dataOf(overflow)]).toEqual([10, 10]);
  });

  it('leaves noop and config entries as they are', () => {
    const noop: Entry = { kind: 'noop', term: term(2), index: logIndex(1) };
    expect(new EntryArena().keep([noop])[0]).toBe(noop);
  });

  it('refuses a slab too small to hold anything', () => {
    expect(() => new EntryArena(4)).toThrow(AssertionError);
    expect(() => new EntryArena(4)).toThrow(/slabBytes must be an integer of at least 8, got 4/);
  });
});

describe('LevelStorage keeps its entries in an arena', () => {
  it('returns the persisted bytes after the caller reuses its buffer, and after a reopen', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dlm-arena-'));
    try {
      const path = join(dir, 'db');
      const storage = await LevelStorage.open(path, { bootstrap: 'join' });
      const wire = new Uint8Array(32).fill(7);
      await storage.persist({
        entries: [normal(1, wire.subarray(0, 5)), normal(2, wire.subarray(5, 9))],
      });
      wire.fill(0);
      const read = () => [...storage.entries(logIndex(1), logIndex(3), Infinity)].map(dataOf);
      expect(read().map((data) => [...data])).toEqual([
        [7, 7, 7, 7, 7],
        [7, 7, 7, 7],
      ]);
      expect(read()[0]?.buffer).not.toBe(wire.buffer);
      await storage.close();
      const reopened = await LevelStorage.open(path);
      const again = [...reopened.entries(logIndex(1), logIndex(3), Infinity)].map(dataOf);
      expect(again.map((data) => [...data])).toEqual([
        [7, 7, 7, 7, 7],
        [7, 7, 7, 7],
      ]);
      await reopened.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
