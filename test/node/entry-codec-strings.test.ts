import { describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import { decodeEntry, encodeEntry } from '../../src/node/entry-codec.ts';
import { sessionId } from '../../src/util/ids.ts';

/**
 * decodeEntry replaces every string of an entry by a copy of its own, so that a kept
 * lock name does not keep its whole entry's strings alive (issue 12). One-byte text is
 * copied through a latin1 buffer, other text interned: both must hand back exactly the
 * text that was encoded, whatever its characters.
 */
const TEXTS = [
  'bench/mxa7ixhw-1-0/client-17',
  'short',
  'exactly-13-ch',
  'café-crème-brûlée-ÿ-\u0080-\u00ff',
  'inventory/東京/item-4711-reserve',
  'coupons/🎟️-single-use-2026-12-05',
  'mixed-ascii-then-\u0100-at-the-end',
  `long-${'x'.repeat(2_000)}`,
];

function acquire(lock: string, owner: string): LockCommand {
  return {
    type: 'Acquire',
    sessionId: sessionId(1),
    lock,
    owner,
    requestId: `request-for-${lock}`,
    mode: 'exclusive',
    waitMs: 0,
    maxHoldMs: 0,
    lockDelayMs: 0,
  };
}

describe('entry strings copied on decode', () => {
  it('hands back every text exactly, one-byte or not', () => {
    for (const text of TEXTS) {
      const decoded = decodeEntry(
        encodeEntry({ proposalId: `n1/${text}`, command: acquire(text, `owner of ${text}`) }),
      );
      expect(decoded.proposalId).toBe(`n1/${text}`);
      expect(decoded.command).toEqual(acquire(text, `owner of ${text}`));
    }
  });
});

/**
 * msgpackr caches a DataView on the buffer it reads, as a property of that buffer: the
 * log's kept entries would each carry one (about 120 bytes) once applied (issue 12).
 */
describe('decodeEntry leaves the data it reads as it was', () => {
  it('adds no property to the entry data', () => {
    const data = encodeEntry({ proposalId: 'n1/abc/1', command: acquire('inventory/a', 'w1') });
    const before = Object.getOwnPropertyNames(data);
    expect(decodeEntry(data).command).toMatchObject({ lock: 'inventory/a', owner: 'w1' });
    expect(Object.getOwnPropertyNames(data)).toEqual(before);
    expect('dataView' in data).toBe(false);
  });
});
