import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { openSession } from '../support/lock-load.ts';
import { newRequestId, ProcessCluster } from '../support/process-cluster.ts';

/**
 * What an operator sees of real `dlm serve` processes: grpc.health.v1 readiness, the
 * Prometheus endpoint on each metricsAddress, and the pino JSON log lines.
 */
let cluster: ProcessCluster | null = null;

afterEach(async () => {
  await cluster?.stopAll();
  cluster?.remove();
  cluster = null;
});

async function health(c: ProcessCluster, id: string, service = ''): Promise<string> {
  const answer = await c.callNode(id, 'Check', { service }, 10_000, 'Health');
  return String(answer.status);
}

async function scrape(c: ProcessCluster, id: string): Promise<string> {
  const node = c.nodes.find((each) => each.id === id);
  const response = await fetch(`http://${node?.metricsAddress}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
  return response.text();
}

/** The value of one sample line, e.g. `dlm_raft_is_leader{node="n1"}`; NaN when absent. */
function sample(metrics: string, name: string, labels: Record<string, string>): number {
  const wanted = Object.entries(labels)
    .map(([key, value]) => `${key}="${value}"`)
    .sort()
    .join(',');
  for (const line of metrics.split('\n')) {
    const match = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    if ((match[2] ?? '').split(',').sort().join(',') === wanted) return Number(match[3]);
  }
  return Number.NaN;
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function logLines(c: ProcessCluster, id: string): Record<string, unknown>[] {
  return readFileSync(c.logPath(id), 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('observability of real processes', () => {
  it('health turns SERVING once there is a leader; /metrics and the JSON logs say what the node does', async () => {
    cluster = await ProcessCluster.create(3);
    const c = cluster;
    const env = { DLM_LOG_LEVEL: 'debug' };
    // One node of three can never elect a leader: it answers, but it is not ready.
    c.start('n1', { env });
    expect(await health(c, 'n1')).toBe('NOT_SERVING');
    expect(await health(c, 'n1', 'dlm.v1.Lock')).toBe('NOT_SERVING');
    const unknown = await c
      .callNode('n1', 'Check', { service: 'no.such.Service' }, 10_000, 'Health')
      .then(
        () => null,
        (error: { code: number }) => error.code,
      );
    expect(unknown).toBe(5); // NOT_FOUND, as the health protocol says
    c.start('n2', { env });
    c.start('n3', { env });
    const leader = await c.waitForLeader(15_000);
    for (const { id } of c.nodes) {
      await until(async () => (await health(c, id)) === 'SERVING', `${id} is SERVING`);
    }

    const session = await openSession(c, 'observability');
    const requestId = newRequestId();
    const acquired = await c.callNode(leader, 'Acquire', {
      lock: 'observed',
      session_id: session,
      mode: 'EXCLUSIVE',
      wait_ms: '0',
      request_id: requestId,
      owner: 'o',
    });
    expect(acquired.acquired).toBe(true);

    const leaders: string[] = [];
    for (const { id } of c.nodes) {
      // Every node applies the same log: one session, one lock, the same term.
      await until(
        async () => sample(await scrape(c, id), 'dlm_sessions', { node: id }) === 1,
        `${id} reports the session`,
      );
      const metrics = await scrape(c, id);
      expect(sample(metrics, 'dlm_locks_in_use', { node: id }), id).toBe(1);
      expect(sample(metrics, 'dlm_raft_term', { node: id }), id).toBeGreaterThan(0);
      expect(sample(metrics, 'dlm_raft_applied_index', { node: id }), id).toBeGreaterThan(2);
      expect(sample(metrics, 'dlm_storage_fsync_seconds_count', { node: id }), id).toBeGreaterThan(
        0,
      );
      if (sample(metrics, 'dlm_raft_is_leader', { node: id }) === 1) leaders.push(id);
    }
    // Exactly one node says it leads. (Not always the one that served the Acquire: in
    // 2 of 5 loaded full runs leadership moved once soon after start-up, see issue 10.)
    expect(leaders).toHaveLength(1);
    const atLeader = await scrape(c, leader);
    expect(
      sample(atLeader, 'dlm_acquire_seconds_count', { node: leader, outcome: 'acquired' }),
    ).toBe(1);
    expect(
      sample(atLeader, 'dlm_proposal_seconds_count', { node: leader, outcome: 'applied' }),
    ).toBeGreaterThan(0);

    const notFound = await fetch(`http://${c.nodes[0]?.metricsAddress}/elsewhere`);
    expect(notFound.status).toBe(404);

    // Logs: one JSON object per line, each naming the node, its term and role; at
    // debug level one line per request with its request id and latency.
    const lines = logLines(c, leader);
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line.nodeId).toBe(leader);
    const changed = lines.find(
      (line) => line.msg === 'raft state changed' && line.role === 'leader',
    );
    expect(changed).toMatchObject({ nodeId: leader, role: 'leader' });
    expect(changed?.term).toBeGreaterThan(0);
    const call = lines.find((line) => line.method === 'Acquire' && line.requestId === requestId);
    expect(call).toMatchObject({ code: 0 });
    // The role when the call ended: 'follower' when leadership moved after
    // waitForLeader and the node forwarded the write (seen once in a loaded CI run).
    expect(['leader', 'follower']).toContain(call?.role);
    expect(typeof call?.latencyMs).toBe('number');

    // Tracing: a write sent to a follower with a W3C traceparent is one trace on both
    // nodes: the follower's call span is a child of the client's span, and the leader's
    // span for the forwarded write is a child of the follower's.
    // Asked again: leadership can still move on a loaded machine (it used to move once
    // after start-up when a follower learned the cluster id before its leader; the
    // leader is now told the id at once, see cluster-identity.ts), and a write sent to
    // the new leader is not forwarded.
    const tracedLeader = await c.waitForLeader(15_000);
    const follower = c.nodes.find((node) => node.id !== tracedLeader)?.id ?? '';
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const clientSpanId = '00f067aa0ba902b7';
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', `00-${traceId}-${clientSpanId}-01`);
    const tracedRequestId = newRequestId();
    await c.call(
      follower,
      'Acquire',
      {
        lock: 'traced',
        session_id: session,
        mode: 'EXCLUSIVE',
        wait_ms: '0',
        request_id: tracedRequestId,
        owner: 'o',
      },
      10_000,
      'Lock',
      metadata,
    );
    await until(
      async () => logLines(c, tracedLeader).some((line) => line.traceId === traceId),
      'the leader logs the forwarded write',
    );
    const atFollower = logLines(c, follower).find((line) => line.requestId === tracedRequestId);
    expect(atFollower).toMatchObject({ traceId, parentSpanId: clientSpanId, method: 'Acquire' });
    expect(String(atFollower?.spanId)).toMatch(/^[0-9a-f]{16}$/);
    const forwarded = logLines(c, tracedLeader).find((line) => line.traceId === traceId);
    expect(forwarded).toMatchObject({
      msg: 'forwarded write',
      from: follower,
      parentSpanId: atFollower?.spanId,
      outcome: 'proposed',
    });
  }, 90_000);
});
