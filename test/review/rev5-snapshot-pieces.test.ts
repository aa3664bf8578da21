/**
 * rev5 (review of the mem branch): the snapshot encoded in pieces by its own encoder must
 * be msgpackr's one-piece bytes for any value the arrays may hold.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LockSnapshot } from '../../src/lock/index.ts';
import { encodeLockSnapshot, encodeLockSnapshotInSlices } from '../../src/node/entry-codec.ts';

const noPause = async (): Promise<void> => {};

const leaf = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.integer(),
  fc.double(),
  fc.constantFrom(2 ** 32, 2 ** 32 + 1, -(2 ** 31) - 1, 2 ** 53 - 1, -(2 ** 53) + 1, -0, 0.5),
  fc.boolean(),
  fc.constant(null),
);
const { value } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    leaf,
    fc.array(tie('value'), { maxLength: 20 }),
    fc.dictionary(fc.string({ maxLength: 6 }), tie('value'), { maxKeys: 5 }),
  ),
}));

describe('rev5: snapshot pieces equal one piece for any values', () => {
  it('random arrays, slices and values', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(value, { maxLength: 60 }),
        fc.array(value, { maxLength: 60 }),
        value,
        fc.integer({ min: 1, max: 20 }),
        async (sessions, locks, other, slice) => {
          const snapshot = {
            version: 5,
            behaviour: 4,
            appliedIndex: 2 ** 33,
            rules: other,
            sessions,
            locks,
            dedupe: [],
          } as unknown as LockSnapshot;
          const joined = Buffer.from(await encodeLockSnapshotInSlices(snapshot, noPause, slice));
          expect(joined.equals(Buffer.from(encodeLockSnapshot(snapshot)))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it.each([15, 16, 250, 251, 65_535, 65_536, 70_000])('%i long strings', async (count) => {
    const s = 'ü€𝄞'.repeat(30);
    const snapshot = {
      version: 5,
      behaviour: 4,
      appliedIndex: 1,
      sessions: Array.from({ length: count }, (_, i) => ({ id: i, s: `${s}${i}` })),
      locks: [],
      dedupe: Array.from({ length: count }, (_, i) => [`k${i}`, { n: -i * 1.5 }]),
    } as unknown as LockSnapshot;
    const joined = Buffer.from(await encodeLockSnapshotInSlices(snapshot, noPause));
    expect(joined.equals(Buffer.from(encodeLockSnapshot(snapshot)))).toBe(true);
  });
});
