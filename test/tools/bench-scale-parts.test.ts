import { describe, expect, it } from 'vitest';
import { fsyncDelta, metricSum, parseMetrics } from '../../src/tools/bench/node-probe.ts';
import { limitsFor } from '../../src/tools/bench/scale-common.ts';
import { fillRateOf } from '../../src/tools/bench/scale-locks.ts';
import { limitedBy, type RampStep } from '../../src/tools/bench/scale-ramp.ts';
import { failuresOf } from '../../src/tools/bench/scale-report.ts';
import type { SessionsResult } from '../../src/tools/bench/scale-sessions.ts';
import { Reservoir } from '../../src/tools/bench/scale-worker.ts';

/** The scale cells' arithmetic, on made-up inputs (the real runs are in bench-scale.test.ts). */

const scrape = (sum: number, count: number, buckets: Record<string, number>) =>
  parseMetrics(
    [
      '# HELP dlm_storage_fsync_seconds Latency of one synced write (a whole Ready).',
      ...Object.entries(buckets).map(
        ([le, n]) => `dlm_storage_fsync_seconds_bucket{le="${le}",node="n1"} ${n}`,
      ),
      `dlm_storage_fsync_seconds_sum{node="n1"} ${sum}`,
      `dlm_storage_fsync_seconds_count{node="n1"} ${count}`,
      'dlm_session_expiries_total{node="n1"} 3',
    ].join('\n'),
  );

describe('bench scale parts', () => {
  it('reads fsync mean and p99 bucket from two scrapes of the histogram', () => {
    const before = scrape(1, 100, { '0.001': 50, '0.01': 100, '+Inf': 100 });
    // 100 more: 90 under 1 ms, 9 under 10 ms, 1 above.
    const after = scrape(1.5, 200, { '0.001': 140, '0.01': 199, '+Inf': 200 });
    const delta = fsyncDelta(before, after);
    expect(delta.count).toBe(100);
    expect(delta.meanMs).toBeCloseTo(5, 6);
    expect(delta.p99UpperMs).toBe(10);
    expect(metricSum(after, 'dlm_session_expiries_total')).toBe(3);
    expect(metricSum(after, 'dlm_no_such_metric')).toBeNaN();
  });

  it('measures the fill rate of the first and last fifth, so a slowdown shows', () => {
    const samples = [
      { ms: 0, acquired: 0 },
      { ms: 1_000, acquired: 200 },
      { ms: 5_000, acquired: 800 },
      { ms: 9_000, acquired: 1_000 },
    ];
    const rate = fillRateOf(samples, 1_000);
    expect(rate.firstFifthPerSecond).toBe(200);
    expect(rate.lastFifthPerSecond).toBe(50);
  });

  it('raises only the limits a size exceeds, and says so', () => {
    expect(limitsFor({ sessionsMax: 10_000 })).toEqual({ extra: {}, raised: [] });
    expect(limitsFor({ locksMax: 250_000, sessionsMax: 200 })).toEqual({
      extra: { lock: { locksMax: 250_000 } },
      raised: [{ field: 'lock.locksMax', from: 100_000, to: 250_000 }],
    });
  });

  it('names what ran out at a ramp step', () => {
    const step = (over: Partial<RampStep>): RampStep => ({
      clients: 8,
      pairsPerSecond: 500,
      acquireMs: { count: 100, p50: 4, p99: 60, max: 80 },
      serverCpuMsPerWrite: 1,
      leaderCpuMsPerWrite: 0.5,
      leaderCpuPercent: 50,
      followerCpuPercents: [30, 30],
      hostBusyPercent: 60,
      lgBusyPercent: 40,
      lgCpuMsPerWrite: 0.3,
      leaderFsync: { count: 100, meanMs: 0.5, p99UpperMs: 1 },
      errors: 0,
      violations: 0,
      underLimit: false,
      ...over,
    });
    expect(limitedBy(step({ leaderCpuPercent: 92 }))).toMatch(/^CPU: the leader used 92 %/);
    expect(limitedBy(step({ hostBusyPercent: 97 }))).toMatch(/^CPU: the machine was 97 %/);
    expect(limitedBy(step({ lgBusyPercent: 99 }))).toMatch(/^the load generator/);
    expect(limitedBy(step({ leaderFsync: { count: 1, meanMs: 3, p99UpperMs: 5 } }))).toMatch(
      /^disk:/,
    );
    expect(limitedBy(step({}))).toMatch(/^queueing:/);
  });

  it('fails a run on a spurious expiry, whichever side saw it', () => {
    const sessions = (clientSawExpired: number, serverExpiries: number) =>
      ({
        cell: 'sessions',
        clientSawExpired,
        serverExpiries,
        spuriousExpiries: Math.max(clientSawExpired, serverExpiries),
      }) as SessionsResult;
    expect(failuresOf(sessions(0, 0))).toEqual([]);
    expect(failuresOf(sessions(1, 0))).toEqual(['sessions: 1 spurious session expiries']);
    expect(failuresOf(sessions(0, 2))).toEqual(['sessions: 2 spurious session expiries']);
  });

  it('keeps a bounded, uniform latency sample', () => {
    const reservoir = new Reservoir(100);
    for (let i = 0; i < 100_000; i++) reservoir.add(i);
    const sample = reservoir.sample();
    expect(sample).toHaveLength(100);
    // Uniform over the stream: not just the first hundred values.
    expect(Math.max(...sample)).toBeGreaterThan(1_000);
  });
});
