/**
 * rv-mem: LevelStorage's kept log (EntryArena) under conflicting suffixes, compaction
 * and reopen: every read gives the bytes last persisted at that index, never bytes of a
 * replaced entry or of a neighbour in the slab; the caller's buffers are reused at once.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Entry } from '../../src/raft/types.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { logIndex, term } from '../../src/util/ids.ts';

describe('rv-mem: arena-kept log under truncation and reopen', () => {
  it('reads what was last persisted', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.tuple(
            fc.nat(),
            fc.array(fc.integer({ min: 0, max: 9000 }), { minLength: 1, maxLength: 12 }),
          ),
          { minLength: 1, maxLength: 12 },
        ),
        fc.integer({ min: 0, max: 11 }),
        async (steps, reopenAt) => {
          const dir = await mkdtemp(join(tmpdir(), 'rv-arena-'));
          try {
            const path = join(dir, 'db');
            let storage = await LevelStorage.open(path, { bootstrap: 'join' });
            const model: Uint8Array[] = [];
            const shared = new Uint8Array(200_000);
            let t = 1;
            let seed = 1;
            for (const [s, [i, [at, sizes]]] of [...steps.entries()].map(
              (x) => [x[0], x] as const,
            )) {
              void i;
              const first = 1 + (model.length === 0 ? 0 : at % (model.length + 1));
              t++;
              let off = 0;
              const entries: Entry[] = sizes.map((n, k) => {
                const data = shared.subarray(off, off + n);
                for (let b = 0; b < n; b++) data[b] = (seed++ * 31 + b) & 0xff;
                off += n;
                return { kind: 'normal', term: term(t), index: logIndex(first + k), data };
              });
              const copies = entries.map((e) => new Uint8Array((e as { data: Uint8Array }).data));
              await storage.persist({ entries });
              shared.fill(0xee);
              model.length = first - 1;
              model.push(...copies);
              if (s === reopenAt) {
                await storage.close();
                storage = await LevelStorage.open(path);
              }
              const read = [...storage.entries(logIndex(1), logIndex(model.length + 1), Infinity)];
              expect(read.length).toBe(model.length);
              read.forEach((e, k) => {
                expect(
                  Buffer.from((e as { data: Uint8Array }).data).equals(
                    Buffer.from(model[k] as Uint8Array),
                  ),
                ).toBe(true);
              });
            }
            await storage.close();
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 40 },
    );
  }, 120_000);
});
