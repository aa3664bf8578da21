import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Acknowledged,
  expectAcknowledgedState,
  load,
  openSession,
  type Timing,
} from '../support/lock-load.ts';
import { newRequestId, ProcessCluster } from '../support/process-cluster.ts';

/**
 * Real processes, real LevelDB, real gRPC: failures a lock service must survive.
 * Timings are printed, not asserted tightly: the machine is shared.
 */
let cluster: ProcessCluster | null = null;

afterEach(async () => {
  await cluster?.stopAll();
  cluster?.remove();
  cluster = null;
});

describe('real processes under failure', () => {
  // Both peer transports: the TCP one is an experiment that may become the default.
  it.each(['grpc', 'tcp'] as const)(
    'kill -9 of the leader under load (%s peer transport): a new leader takes over and every acknowledged grant and release survives',
    async (peerTransport) => {
      cluster = await ProcessCluster.create(3, { peerTransport });
      const c = cluster;
      c.startAll();
      const oldLeader = await c.waitForLeader(15_000);
      // The transport asked for is the one that runs.
      expect(readFileSync(c.logPath(oldLeader), 'utf8')).toContain(
        `"peerTransport":"${peerTransport}"`,
      );
      const session = await openSession(c);
      const acknowledged: Acknowledged[] = [];
      const acks: Timing[] = [];
      const stop = { value: false };
      const running = load(c, session, acknowledged, stop, acks);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const killedAtMs = Date.now();
      await c.kill(oldLeader);
      // Failover time: from the kill to the answer of the first acquire sent after it.
      const firstAfterKill = (): Timing | undefined =>
        acks.find((timing) => timing.sentAtMs >= killedAtMs);
      while (firstAfterKill() === undefined && Date.now() - killedAtMs < 15_000) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const firstAckAfterKill = firstAfterKill()?.ackedAtMs;
      expect(firstAckAfterKill).toBeDefined();
      await new Promise((resolve) => setTimeout(resolve, 300));
      stop.value = true;
      await running;
      const newLeader = await c.waitForLeader(10_000);
      expect(newLeader).not.toBe(oldLeader);
      console.log(
        `failover (${peerTransport}): leader ${oldLeader} killed -> first acknowledged acquire after ${(firstAckAfterKill ?? 0) - killedAtMs} ms (election timeout 200-400 ms); ${acknowledged.length} grants acknowledged`,
      );
      await expectAcknowledgedState(c, acknowledged);
    },
    90_000,
  );

  it('kill -9 of every node, then a restart: the state is the same and nothing acknowledged is lost', async () => {
    cluster = await ProcessCluster.create(3);
    const c = cluster;
    c.startAll();
    await c.waitForLeader(15_000);
    const session = await openSession(c);
    const acknowledged: Acknowledged[] = [];
    const stop = { value: false };
    const running = load(c, session, acknowledged, stop, []);
    while (acknowledged.length < 20) await new Promise((resolve) => setTimeout(resolve, 20));
    stop.value = true;
    await running;
    const held = acknowledged.find((record) => !record.released);
    await Promise.all(c.nodes.map((node) => c.kill(node.id)));
    const restartedAtMs = Date.now();
    c.startAll();
    await c.waitForLeader(15_000);
    const sessions = await c.callAny('Describe', { lock: held?.lock ?? 'load/1' });
    console.log(
      `recovery: all nodes killed -> first linearizable read answered ${Date.now() - restartedAtMs} ms after restart; ${acknowledged.length} grants checked`,
    );
    expect((sessions.holders as unknown[]).length).toBe(1);
    await expectAcknowledgedState(c, acknowledged);
  }, 90_000);

  it.each(['grpc', 'tcp'] as const)(
    'a follower paused past compaction catches up through InstallSnapshot (%s peer transport)',
    async (peerTransport) => {
      cluster = await ProcessCluster.create(3, {
        peerTransport,
        runtime: { snapshotEntriesThreshold: 50, compactionRetainEntries: 10 },
      });
      const c = cluster;
      c.startAll();
      const leader = await c.waitForLeader(15_000);
      const follower = c.nodes.find((node) => node.id !== leader)?.id ?? '';
      const session = await openSession(c);
      // Connects this process's channel to the leader first: grpc-js fails a call on a
      // channel still in its first connection's backoff at once ("No connection
      // established"; fresh-clone CI failed both cases on the first Acquire below).
      await c.callNode(leader, 'Status', {}, 10_000, 'Cluster');
      c.pause(follower);
      // A generous deadline per call: on a loaded CI machine one fsync or scheduling stall
      // once took a call past the 2 s default (seen once in a full run; not alone).
      for (let i = 0; i < 150; i++) {
        await c.call(
          leader,
          'Acquire',
          {
            lock: `snap/${i}`,
            session_id: session,
            mode: 'SHARED',
            wait_ms: '0',
            request_id: newRequestId(),
            owner: 's',
          },
          10_000,
        );
      }
      const leaderStatus = await c.callNode(leader, 'Status', {}, 10_000, 'Cluster');
      c.resume(follower);
      let applied = 0;
      const target = Number(leaderStatus.applied_index);
      for (let attempt = 0; attempt < 200 && applied < target; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        const status = await c.call(follower, 'Status', {}, 1_000, 'Cluster').catch(() => null);
        applied = Number(status?.applied_index ?? 0);
      }
      expect(applied).toBeGreaterThanOrEqual(target);
      const described = await c.callNode(follower, 'Describe', { lock: 'snap/149', stale: true });
      expect((described.holders as unknown[]).length).toBe(1);
    },
    90_000,
  );

  it('a 5-node cluster serves with any 2 of its nodes frozen: all 10 pairs, one after another', async () => {
    cluster = await ProcessCluster.create(5);
    const c = cluster;
    c.startAll();
    await c.waitForLeader(15_000);
    const session = await openSession(c, 'pairs');
    const ids = c.nodes.map((node) => node.id);
    const pairs = ids.flatMap((a, i) => ids.slice(i + 1).map((b) => [a, b] as const));
    const tokens: bigint[] = [];
    const servedMs: number[] = [];
    for (const [a, b] of pairs) {
      c.pause(a);
      c.pause(b);
      const startedMs = Date.now();
      const up = ids.filter((id) => id !== a && id !== b);
      // Through the survivors only: a frozen node would hold the call until it thaws.
      const acquired = await c.acquireAny(
        {
          lock: `pairs/${a}-${b}`,
          session_id: session,
          mode: 'EXCLUSIVE',
          wait_ms: '0',
          owner: 'pairs',
        },
        20_000,
        up,
      );
      expect(acquired.acquired, `${a} and ${b} frozen`).toBe(true);
      servedMs.push(Date.now() - startedMs);
      tokens.push(BigInt(String(acquired.fencing_token)));
      c.resume(a);
      c.resume(b);
    }
    expect(tokens).toEqual([...tokens].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)));
    for (const [a, b] of pairs) {
      const described = await c.callAny('Describe', { lock: `pairs/${a}-${b}` });
      expect((described.holders as unknown[]).length, `${a}-${b}`).toBe(1);
    }
    console.log(
      `5 nodes, any 2 frozen: all ${pairs.length} pairs served; acquire answered in ${Math.min(...servedMs)}-${Math.max(...servedMs)} ms after the freeze`,
    );
  }, 120_000);

  it('a 5-node cluster keeps serving after losing any 2 nodes, the leader among them', async () => {
    cluster = await ProcessCluster.create(5);
    const c = cluster;
    c.startAll();
    const leader = await c.waitForLeader(15_000);
    const other = c.nodes.find((node) => node.id !== leader)?.id ?? '';
    await c.kill(leader);
    await c.kill(other);
    const session = await openSession(c);
    const acquired = await c.acquireAny({
      lock: 'five',
      session_id: session,
      mode: 'EXCLUSIVE',
      wait_ms: '0',
      owner: 'f',
    });
    expect(acquired.acquired).toBe(true);
  }, 90_000);
});
