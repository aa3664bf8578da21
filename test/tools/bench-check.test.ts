import { describe, expect, it } from 'vitest';
import { type CellResult, handoffSamplesMs } from '../../src/tools/bench/analyze.ts';
import { parseCell } from '../../src/tools/bench/cells.ts';
import { findViolations } from '../../src/tools/bench/check.ts';
import type { PairRecord } from '../../src/tools/bench/records.ts';
import { ratiosOf } from '../../src/tools/bench/report.ts';
import { jainIndex, percentile } from '../../src/tools/bench/stats.ts';

/** A pair on `lock`: grant received at `grantedMs`, release sent at `releaseSentMs`. */
function pair(
  clientIndex: number,
  token: number,
  acquireSentMs: number,
  grantedMs: number,
  releaseSentMs: number,
  lock = 'hot',
): PairRecord {
  return {
    clientIndex,
    lock,
    token: String(token),
    acquireSentMs,
    grantedMs,
    releaseSentMs,
    releasedMs: releaseSentMs + 1,
  };
}

/** Three clients taking one lock in turn, each grant after the previous release. */
const CLEAN: readonly PairRecord[] = [
  pair(0, 10, 0, 1, 3),
  pair(1, 12, 0.5, 4, 6),
  pair(2, 15, 2, 7, 9),
  pair(0, 2, 0, 1, 20, 'other'),
];

describe('bench safety checker', () => {
  it('finds nothing in a clean history', () => {
    expect(findViolations(CLEAN)).toEqual([]);
  });

  it('flags a grant received before the previous holder sent its release', () => {
    const injected = [...CLEAN, pair(1, 16, 8, 8.5, 10)];
    const violations = findViolations(injected);
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatchObject({
      kind: 'overlap',
      lock: 'hot',
      first: { clientIndex: 2, token: '15' },
      second: { clientIndex: 1, token: '16' },
    });
  });

  it('flags a grant inside a long hold, not only right after the previous grant', () => {
    // Client 0 holds from 1 to 20; client 1's grant at 4 ended at 6, client 2's comes at 7.
    const history = [pair(0, 10, 0, 1, 20), pair(1, 12, 0, 4, 6), pair(2, 15, 0, 7, 9)];
    const overlaps = findViolations(history).filter((each) => each.kind === 'overlap');
    expect(overlaps.map((each) => each.kind === 'overlap' && each.second.clientIndex)).toEqual([
      1, 2,
    ]);
  });

  it('flags a token that does not rise, comparing as integers not strings', () => {
    const history = [pair(0, 9, 0, 1, 2), pair(1, 10, 0, 3, 4), pair(2, 10, 0, 5, 6)];
    const violations = findViolations(history);
    expect(violations).toEqual([
      expect.objectContaining({
        kind: 'tokenNotRising',
        next: expect.objectContaining({ token: '10', clientIndex: 2 }),
      }),
    ]);
  });
});

describe('bench figures', () => {
  it('measures a hand-off only for a grant that was waiting when the release was sent', () => {
    // Client 1 asked at 0.5, before client 0 released at 3: waiting, hand-off 4 - 3 = 1.
    // Client 2 asked at 7.5, after client 1 released at 6: not a hand-off.
    const samples = handoffSamplesMs([
      pair(0, 1, 0, 1, 3),
      pair(1, 2, 0.5, 4, 6),
      pair(2, 3, 7.5, 8, 9),
    ]);
    expect(samples).toEqual([1]);
  });

  it('computes nearest-rank percentiles and Jain index', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 50)).toBe(50);
    expect(percentile(sorted, 99)).toBe(99);
    expect(percentile([], 50)).toBeNaN();
    expect(jainIndex([5, 5, 5, 5])).toBe(1);
    expect(jainIndex([4, 0, 0, 0])).toBe(0.25);
  });

  it('parses cells and refuses bad ones by name', () => {
    expect(parseCell('16x-hot')).toEqual({ clients: 16, contention: 'hot' });
    expect(() => parseCell('16-hot')).toThrow(/16-hot/);
    expect(() => parseCell('0x-distinct')).toThrow(/clients must be/);
  });
});

describe('bench ratios', () => {
  /** Only the figures ratiosOf reads. */
  function row(system: 'dlm' | 'etcd', round: number, pairsPerSecond: number): CellResult {
    return {
      system,
      cell: '16x-hot',
      round,
      pairsPerSecond,
      acquireMs: { count: 1, p50: pairsPerSecond, p99: 2 * pairsPerSecond, max: 0 },
      serverCpu: null,
    } as unknown as CellResult;
  }

  it('compares the medians of the rounds, and leaves out CPU when a side has none', () => {
    const results = [
      row('dlm', 1, 100),
      row('etcd', 1, 50),
      row('dlm', 2, 400),
      row('etcd', 2, 40),
      row('dlm', 3, 200),
      row('etcd', 3, 1_000),
    ];
    const [ratio] = ratiosOf(results);
    // Medians: dlm 200, etcd 50.
    expect(ratio).toMatchObject({ cell: '16x-hot', rounds: 3, pairsPerSecond: 4, acquireP99: 4 });
    expect(ratio?.serverCpuPerWrite).toBeNull();
  });
});
