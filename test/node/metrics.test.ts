import { afterEach, describe, expect, it } from 'vitest';
import { NodeMetrics } from '../../src/node/metrics.ts';
import { TestCluster, writeVia } from './cluster-harness.ts';

let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.stopAll();
  cluster = null;
});

function metricValue(body: string, name: string): number {
  const line = body
    .split('\n')
    .find((candidate) => candidate.startsWith(`${name}{`) || candidate.startsWith(`${name} `));
  if (line === undefined) throw new Error(`metric ${name} not found`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

function labelledValue(body: string, name: string, label: string): number {
  const line = body
    .split('\n')
    .find((candidate) => candidate.startsWith(`${name}{`) && candidate.includes(label));
  if (line === undefined) throw new Error(`metric ${name} with ${label} not found`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('NodeMetrics', () => {
  it('exposes Raft, proposal, fsync and lock metrics in Prometheus text format', async () => {
    cluster = new TestCluster();
    const c = cluster;
    const leader = await c.leader();
    const metrics = new NodeMetrics(leader);
    await writeVia(() => c.leader(), {
      type: 'OpenSession',
      ttlMs: 5_000,
      clientName: 'm',
      requestId: 'm1',
    });
    const { contentType, body } = await metrics.render();
    expect(contentType).toContain('text/plain');
    expect(metricValue(body, 'dlm_raft_term')).toBeGreaterThanOrEqual(2);
    expect(metricValue(body, 'dlm_raft_is_leader')).toBe(1);
    expect(metricValue(body, 'dlm_sessions')).toBe(1);
    expect(metricValue(body, 'dlm_storage_fsync_seconds_count')).toBeGreaterThan(0);
    expect(metricValue(body, 'dlm_proposal_seconds_count')).toBe(1);
    expect(body).toContain(`node="${leader.id}"`);
  });

  it('says where the process memory is: rss, the V8 heap, and buffers outside it', async () => {
    cluster = new TestCluster();
    const metrics = new NodeMetrics(await cluster.leader());

    const { body } = await metrics.render();

    const bytes = (kind: string) =>
      labelledValue(body, 'dlm_process_memory_bytes', `kind="${kind}"`);
    expect(bytes('heap_used')).toBeGreaterThan(0);
    expect(bytes('heap_total')).toBeGreaterThanOrEqual(bytes('heap_used'));
    expect(bytes('rss')).toBeGreaterThan(bytes('heap_used'));
    expect(bytes('external')).toBeGreaterThanOrEqual(bytes('array_buffers'));
    expect(bytes('array_buffers')).toBeGreaterThan(0);
  });
});

describe('peer message counters', () => {
  it('read the PeerTraffic counts at scrape time, by peer', async () => {
    cluster = new TestCluster();
    const leader = await cluster.leader();
    const { PeerTraffic } = await import('../../src/node/peer-traffic.ts');
    const traffic = new PeerTraffic({
      id: leader.id,
      send: () => {},
      onMessage: () => {},
      close: () => Promise.resolve(),
    });
    traffic.received.set('n2', 7);
    traffic.sent.set('n3', 2);
    const metrics = new NodeMetrics(leader, traffic);
    const first = (await metrics.render()).body;
    expect(first).toMatch(/dlm_peer_messages_received_total\{from="n2",node="[^"]+"\} 7/);
    expect(first).toMatch(/dlm_peer_messages_sent_total\{to="n3",node="[^"]+"\} 2/);
    traffic.received.set('n2', 9);
    expect((await metrics.render()).body).toMatch(
      /dlm_peer_messages_received_total\{from="n2",[^}]*\} 9/,
    );
  });
});

describe('runtime metrics', () => {
  it('show a blocked event loop: its delay, a stall with the time it began, and GC pauses', async () => {
    cluster = new TestCluster();
    const leader = await cluster.leader();
    const { RuntimeWatch } = await import('../../src/node/runtime-watch.ts');
    const runtime = new RuntimeWatch({ stallMsMin: 40, checkIntervalMs: 10 });
    const stalls: { durationMs: number; startedAtMs: number }[] = [];
    runtime.listen({
      loopStalled: (durationMs, startedAtMs) => stalls.push({ durationMs, startedAtMs }),
    });
    try {
      const metrics = new NodeMetrics(leader, undefined, runtime);
      await metrics.render(); // starts the delay histogram afresh
      await new Promise((resolve) => setTimeout(resolve, 30));
      const blockedAtMs = performance.timeOrigin + performance.now();
      const until = performance.now() + 150;
      while (performance.now() < until) {
        // Holds the loop, as a snapshot encoded in one piece did.
      }
      await new Promise((resolve) => setTimeout(resolve, 30));
      (globalThis as { gc?: () => void }).gc?.();
      const body = (await metrics.render()).body;

      expect(body).toMatch(
        /dlm_event_loop_delay_seconds\{quantile="1",node="[^"]+"\} 0\.(0[5-9]|[1-9])/,
      );
      expect(metricValue(body, 'dlm_event_loop_stalls_total')).toBeGreaterThanOrEqual(1);
      // Its help names the threshold it counts from (runtime.stallReportMsMin).
      expect(body).toContain('at least runtime.stallReportMsMin (40 ms)');
      expect(body).toContain('# TYPE dlm_gc_pause_seconds histogram');
      const stall = stalls.find((each) => each.durationMs >= 80);
      expect(stall).toBeDefined();
      // It began when the loop was taken, give or take the check interval (and a timer late on a busy machine).
      expect(Math.abs((stall?.startedAtMs ?? 0) - blockedAtMs)).toBeLessThan(60);
      // Read once, the delay starts afresh.
      expect((await metrics.render()).body).not.toMatch(
        /dlm_event_loop_delay_seconds\{quantile="1",node="[^"]+"\} 0\.(0[5-9]|[1-9])/,
      );
    } finally {
      runtime.stop();
    }
  });
});
