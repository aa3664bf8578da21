import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG_PATH } from '../../src/cli/cli.ts';
import { introduction } from '../../src/cli/cluster.ts';
import { loadClusterConfig } from '../../src/config/index.ts';
import { ContentionWindow } from '../../src/node/console/contention.ts';
import { IndexClock } from '../../src/node/console/index-clock.ts';

describe('IndexClock', () => {
  it('resolves an index to when it applied, within the resolution, and older ones to a lower bound', () => {
    const clock = new IndexClock(4, 100, 0);
    expect(clock.appliedAt(1)).toEqual({ atMs: 0, before: true });
    clock.note(10, 1_000);
    clock.note(11, 1_050); // within 100 ms of the last sample: not sampled
    clock.note(12, 1_200);
    clock.note(20, 5_000);
    expect(clock.appliedAt(10)).toEqual({ atMs: 1_000, before: false });
    // 11 applied between the samples at 10 and 12, less than 100 ms after 10's.
    expect(clock.appliedAt(11)).toEqual({ atMs: 1_000, before: false });
    expect(clock.appliedAt(12)).toEqual({ atMs: 1_200, before: false });
    expect(clock.appliedAt(15)).toEqual({ atMs: 1_200, before: false });
    expect(clock.appliedAt(25)).toEqual({ atMs: 5_000, before: false });
    expect(clock.appliedAt(9)).toEqual({ atMs: 1_000, before: true });
    // The ring keeps the last 4 samples: 10 falls out.
    clock.note(30, 6_000);
    clock.note(40, 7_000);
    expect(clock.appliedAt(10)).toEqual({ atMs: 1_200, before: true });
    expect(clock.appliedAt(12)).toEqual({ atMs: 1_200, before: false });
    expect(clock.appliedAt(35)).toEqual({ atMs: 6_000, before: false });
    expect(clock.appliedAt(40)).toEqual({ atMs: 7_000, before: false });
  });
});

describe('ContentionWindow', () => {
  it('rates hand-offs over the time watched: a young window is shorter, but at least a bucket', () => {
    const window = new ContentionWindow(
      { bucketMs: 1_000, buckets: 300, locksPerBucketMax: 10 },
      50_000,
    );
    window.handedOff('a', 10, 50_100);
    window.handedOff('a', 10, 54_000);
    expect(window.top(10, 55_000).locks[0]?.handoffsPerSecond).toBe(2 / 5);
    const young = new ContentionWindow(
      { bucketMs: 1_000, buckets: 300, locksPerBucketMax: 10 },
      50_000,
    );
    young.handedOff('a', 10, 50_100);
    expect(young.top(10, 50_200).locks[0]?.handoffsPerSecond).toBe(1);
  });

  it('ranks locks by waits in the window, and forgets buckets older than it', () => {
    const window = new ContentionWindow({ bucketMs: 1_000, buckets: 3, locksPerBucketMax: 2 });
    window.queued('a', 100);
    window.queued('b', 200);
    window.queued('c', 300); // a third lock in the first bucket: counted, not named
    window.queued('b', 1_100);
    window.handedOff('b', 400, 1_200);
    window.handedOff('b', 800, 1_300);
    const top = window.top(10, 2_500);
    expect(top.untracked).toBe(1);
    expect(top.locks).toEqual([
      {
        lock: 'b',
        waits: 2,
        handoffs: 2,
        handoffsPerSecond: 2 / 2.5, // over the 2.5 s watched, not the 3 s window
        waitMsMean: 600,
        waitMsMax: 800,
      },
      { lock: 'a', waits: 1, handoffs: 0, handoffsPerSecond: 0, waitMsMean: null, waitMsMax: null },
    ]);
    // Once the window is full, the rate is over its whole length.
    expect(window.top(10, 3_200).locks[0]?.handoffsPerSecond).toBe(2 / 3);
    // At 3.5 s the first bucket (0-1 s) has left the 3 s window.
    expect(window.top(10, 3_500).locks.map((row) => [row.lock, row.waits])).toEqual([['b', 1]]);
    expect(window.top(10, 4_500).locks).toEqual([]);
  });
});

describe('npm start', () => {
  it("prints each node's console address", async () => {
    const config = await loadClusterConfig(DEFAULT_CONFIG_PATH);
    const text = introduction(config, DEFAULT_CONFIG_PATH);
    for (const node of config.nodes)
      expect(text).toContain(`http://${node.metricsAddress}/ `.trim());
    expect(text).toMatch(/web console.*http:\/\/127\.0\.0\.1:9101\//);
  });

  it('prints https addresses when tls.metrics serves HTTPS', async () => {
    const config = await loadClusterConfig(DEFAULT_CONFIG_PATH);
    const tls = {
      caFile: 'ca.pem',
      certFile: 'n.pem',
      keyFile: 'n-key.pem',
      clientCertFile: null,
      clientKeyFile: null,
    };
    for (const metrics of ['tls', 'mutual'] as const) {
      const text = introduction({ ...config, tls: { ...tls, metrics } }, DEFAULT_CONFIG_PATH);
      expect(text).toMatch(/web console.*https:\/\/127\.0\.0\.1:9101\//);
      expect(text).toMatch(/metrics: https:\/\/127\.0\.0\.1:9101\/metrics/);
      expect(text).not.toContain('http://');
    }
    const plain = { ...config, tls: { ...tls, metrics: 'plaintext' as const } };
    expect(introduction(plain, DEFAULT_CONFIG_PATH)).toContain('http://127.0.0.1:9101/');
    // The plaintext example client cannot reach a TLS cluster: the hint is the CLI's.
    expect(introduction(plain, DEFAULT_CONFIG_PATH)).toContain('bin/dlm lock inventory/42 --');
    expect(introduction(plain, DEFAULT_CONFIG_PATH)).not.toContain('npm run lock');
    expect(introduction(config, DEFAULT_CONFIG_PATH)).toContain('npm run lock -- --address');
  });
});
