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
