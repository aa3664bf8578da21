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
