/**
 * rv-mem: msgpackr's working buffer is shared by every Packr in the process. The
 * snapshot's slices are packed in RESET_BUFFER_MODE: views other encoders returned
 * before, between and during the slices (never copied, as a peer message awaiting a
 * socket or a LevelDB batch value) must keep their bytes. Two snapshots encoded at once.
 */
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import type { LockSnapshot } from '../../src/lock/index.ts';
import { encodeLockSnapshot, encodeLockSnapshotInSlices } from '../../src/node/entry-codec.ts';

const other = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

describe('rv-mem: RESET_BUFFER_MODE never rewinds over a live view', () => {
  it('random sizes, interleavings, two encodings at once', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 40_000 }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.integer({ min: 0, max: 20_000 }), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 0, max: 3 }),
        async (sizesA, sizesB, slice, perPause) => {
          const held: { view: Uint8Array; copy: Buffer }[] = [];
          const make = (n: number) => {
            const view = other.pack({
              s: 'x'.repeat(n % 9000),
              n,
              b: new Uint8Array(n % 300).fill(n & 0xff),
            });
            held.push({ view, copy: Buffer.from(view) });
          };
          make(7000);
          const snap = (sizes: number[]) =>
            ({
              version: 3,
              appliedIndex: 1,
              rules: null,
              rulesSetIndex: null,
              carriedOver: { sessions: 0, locks: 0, waitersPerLock: 0 },
              sessions: sizes.map((n, i) => ({ id: i, pad: 'y'.repeat(n) })),
              locks: [],
              dedupe: sizes.map((n, i) => [`r${i}`, { z: 'q'.repeat(n >> 2) }]),
            }) as unknown as LockSnapshot;
          const a = snap(sizesA);
          const b = snap(sizesB);
          let k = 0;
          const pause = async () => {
            for (let i = 0; i < perPause; i++) make(sizesA[k++ % sizesA.length] ?? 1);
            await new Promise((r) => setImmediate(r));
          };
          const [ea, eb] = await Promise.all([
            encodeLockSnapshotInSlices(a, pause, slice),
            encodeLockSnapshotInSlices(b, pause, slice, 100),
          ]);
          expect(Buffer.from(ea).equals(Buffer.from(encodeLockSnapshot(a)))).toBe(true);
          expect(Buffer.from(eb).equals(Buffer.from(encodeLockSnapshot(b)))).toBe(true);
          for (const { view, copy } of held) expect(Buffer.from(view).equals(copy)).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });
});
