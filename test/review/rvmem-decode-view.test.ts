/**
 * rv-mem: decodeEntry reads a Buffer view of the entry's data. Kept data is a view into
 * an EntryArena slab whose next bytes are other entries: what decodes (or throws) must
 * be what the same bytes decode to on their own, however they are cut or followed, and
 * the same as entryPayloadProblem (the leader's check of a forwarded entry) admits.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeEntry, encodeEntry, entryPayloadProblem } from '../../src/node/entry-codec.ts';
import { EntryArena } from '../../src/storage/entry-arena.ts';
import { logIndex, term } from '../../src/util/ids.ts';

function outcome(run: () => unknown): unknown {
  try {
    return { ok: run() };
  } catch {
    return { threw: true };
  }
}

const text = fc.oneof(
  fc.string({ maxLength: 120 }),
  fc.string({ unit: 'binary', maxLength: 120 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
);

describe('rv-mem: decodeEntry of a slab view = decodeEntry of the bytes alone', () => {
  it('valid, truncated and corrupted payloads, any neighbours', () => {
    fc.assert(
      fc.property(
        text,
        text,
        text,
        fc.integer({ min: 0, max: 400 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
        fc.uint8Array({ minLength: 0, maxLength: 300 }),
        text,
        (lock, owner, pid, cut, flips, before, after) => {
          const full = encodeEntry({
            proposalId: pid,
            command: { type: 'Acquire', lock, owner, requestId: `${lock}${owner}` } as never,
          });
          const bytes = new Uint8Array(
            full.subarray(0, Math.max(1, full.length - (cut % full.length))),
          );
          for (const [at, v] of flips) if (bytes.length > 0) bytes[at % bytes.length] = v;
          const next = encodeEntry({
            proposalId: after,
            command: { type: 'Release', lock: after } as never,
          });
          const arena = new EntryArena(4096);
          const kept = arena.keep([
            { kind: 'normal', term: term(1), index: logIndex(1), data: before },
            { kind: 'normal', term: term(1), index: logIndex(2), data: bytes },
            { kind: 'normal', term: term(1), index: logIndex(3), data: next },
          ]);
          const view = (kept[1] as { data: Uint8Array }).data;
          const alone = new Uint8Array(bytes);
          const a = outcome(() => decodeEntry(view));
          const b = outcome(() => decodeEntry(alone));
          const c = outcome(() => decodeEntry(Buffer.from(bytes)));
          expect(a).toEqual(b);
          expect(a).toEqual(c);
          if (entryPayloadProblem(Buffer.from(bytes)) === null)
            expect((a as { threw?: true }).threw).toBeUndefined();
        },
      ),
      { numRuns: 3000 },
    );
  });
});
