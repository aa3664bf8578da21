import { afterEach, describe, expect, it } from 'vitest';
import type { DlmError } from '../../src/node/errors.ts';
import { continueTrace, type TraceContext } from '../../src/node/trace.ts';
import type { FencingToken, SessionId } from '../../src/util/ids.ts';
import { OPTIONS, sleep, TestCluster, until, writeVia } from './cluster-harness.ts';

/**
 * The node runtime with real timers, over an in-process network and in-memory storage:
 * three nodes elect a leader, take writes through any node, serve linearizable reads
 * from any node, fail over, restart from storage, and expire abandoned sessions.
 */
let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.stopAll();
  cluster = null;
});

async function openSession(c: TestCluster, ttlMs: number): Promise<SessionId> {
  const result = await writeVia(() => c.follower(), {
    type: 'OpenSession',
    ttlMs,
    clientName: 'test',
    requestId: c.requestId(),
  });
  if (result.type !== 'SessionOpened') throw new Error(`OpenSession gave ${result.type}`);
  return result.sessionId;
}

describe('DlmNode over an in-process network', () => {
  it('a write sent to a follower is forwarded, applied, and answered by that follower', async () => {
    cluster = new TestCluster();
    const c = cluster;
    const session = await openSession(c, 5_000);
    const acquired = await writeVia(() => c.follower(), {
      type: 'Acquire',
      lock: 'inventory/1',
      sessionId: session,
      mode: 'exclusive',
      waitMs: 0,
      requestId: c.requestId(),
      owner: 'worker-1',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
    expect(acquired).toMatchObject({ type: 'Acquired', lock: 'inventory/1' });
    const token = (acquired as { token: FencingToken }).token;

    // A linearizable read on any node sees the grant.
    for (const node of c.nodes.values()) {
      const description = await node.read((locks) => locks.describe('inventory/1'));
      expect(description.holders.map((holder) => holder.token)).toEqual([token]);
    }
  });

  it("a write forwarded by a follower carries its caller's trace: the leader's span is its child", async () => {
    cluster = new TestCluster();
    const c = cluster;
    const leader = await c.leader();
    const spans: { trace: TraceContext; from: string }[] = [];
    leader.observe({ forwardedWrite: (trace, from) => spans.push({ trace, from }) });
    const follower = await c.follower();
    const trace = continueTrace('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    const command = { type: 'OpenSession', ttlMs: 5_000, clientName: 'traced' } as const;
    await follower.write({ ...command, requestId: c.requestId() }, { trace });
    expect(spans).toEqual([
      {
        from: follower.id,
        trace: expect.objectContaining({ traceId: trace.traceId, parentSpanId: trace.spanId }),
      },
    ]);
    // A write without a trace is forwarded without one: the leader logs no span for it.
    await follower.write({ ...command, requestId: c.requestId() });
    expect(spans).toHaveLength(1);
  });

  it('fails over when the leader stops, and the new leader keeps every acknowledged grant', async () => {
    cluster = new TestCluster();
    const c = cluster;
    const session = await openSession(c, 5_000);
    const acquired = await writeVia(() => c.leader(), {
      type: 'Acquire',
      lock: 'coupon',
      sessionId: session,
      mode: 'exclusive',
      waitMs: 0,
      requestId: c.requestId(),
      owner: 'o',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
    const token = (acquired as { token: FencingToken }).token;
    const oldLeader = await c.leader();
    await oldLeader.stop();
    c.nodes.delete(oldLeader.id);
    const newLeader = await c.leader();
    expect(newLeader.id).not.toBe(oldLeader.id);
    const fence = await newLeader.read((locks) => locks.validateFence('coupon', token));
    expect(fence).toEqual({ valid: true, currentToken: token });
    // Writes go on with two of three nodes.
    const released = await writeVia(() => c.leader(), {
      type: 'Release',
      lock: 'coupon',
      sessionId: session,
      token,
      requestId: c.requestId(),
    });
    expect(released).toEqual({ type: 'Released', lock: 'coupon' });
  });

  it('a restarted node rebuilds its state from its storage and catches up', async () => {
    cluster = new TestCluster();
    const c = cluster;
    const session = await openSession(c, 5_000);
    const follower = await c.follower();
    await follower.stop();
    c.nodes.delete(follower.id);
    for (let i = 0; i < 30; i++) {
      await writeVia(() => c.leader(), {
        type: 'Acquire',
        lock: `item/${i}`,
        sessionId: session,
        mode: 'shared',
        waitMs: 0,
        requestId: c.requestId(),
        owner: 'o',
        maxHoldMs: 0,
        lockDelayMs: 0,
      });
    }
    const restarted = c.start(follower.id, 99);
    const leader = await c.leader();
    const expected = await leader.read((locks) => locks.listLocks('item/', 100));
    expect(expected).toHaveLength(30);
    let seen: string[] = [];
    for (let attempt = 0; attempt < 100 && seen.length < 30; attempt++) {
      await sleep(20);
      seen = restarted.locks.listLocks('item/', 100);
    }
    expect(seen).toEqual(expected);
  });

  it('expires a session whose client stopped keeping it alive, and frees its lock', async () => {
    cluster = new TestCluster();
    const c = cluster;
    const session = await openSession(c, 200);
    await writeVia(() => c.leader(), {
      type: 'Acquire',
      lock: 'job',
      sessionId: session,
      mode: 'exclusive',
      waitMs: 0,
      requestId: c.requestId(),
      owner: 'o',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
    const startedMs = performance.now();
    let holders = 1;
    while (holders > 0 && performance.now() - startedMs < 3_000) {
      await sleep(20);
      holders = (await (await c.leader()).read((locks) => locks.describe('job'))).holders.length;
    }
    expect(holders).toBe(0);
    // Never before the TTL.
    expect(performance.now() - startedMs).toBeGreaterThanOrEqual(150);
  });

  it('refuses writes past pendingProposalsMax at once instead of queueing them', async () => {
    cluster = new TestCluster();
    const c = cluster;
    const leader = await c.leader();
    const writes = Array.from({ length: OPTIONS.pendingProposalsMax + 10 }, () =>
      leader.write({
        type: 'OpenSession',
        ttlMs: 5_000,
        clientName: 'x',
        requestId: c.requestId(),
      }),
    );
    const outcomes = await Promise.allSettled(writes);
    const refused = outcomes.filter(
      (outcome) =>
        outcome.status === 'rejected' && (outcome.reason as DlmError).code === 'RESOURCE_EXHAUSTED',
    );
    expect(refused).toHaveLength(10);
    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(
      OPTIONS.pendingProposalsMax,
    );
  });

  it('the leader replicates while its own write is in flight, and answers once the followers have the entry on disk', async () => {
    cluster = new TestCluster();
    const c = cluster;
    await openSession(c, 5_000);
    const leader = await c.leader();
    const storage = c.storages.get(leader.id);
    if (storage === undefined) throw new Error('no storage');
    // Holds the leader's next write of entries until released: a very slow fsync.
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const persist = storage.persist.bind(storage);
    let holding = true;
    storage.persist = async (batch) => {
      if (holding && (batch.entries?.length ?? 0) > 0) await held;
      await persist(batch);
    };
    const before = leader.status().commitIndex;
    let answered = false;
    const write = leader
      .write({ type: 'OpenSession', ttlMs: 5_000, clientName: 'x', requestId: c.requestId() })
      .then((applied) => {
        answered = true;
        return applied;
      });

    // Both followers persist the entry and the leader commits it on their copies, so they
    // apply it. A majority has it on disk: the leader applies it and answers too, without
    // waiting for its own write, which has not returned (Raft.takeEarlyCommitted).
    const followers = [...c.nodes.values()].filter((node) => node !== leader);
    try {
      await until(
        () => followers.every((node) => node.status().appliedIndex > before),
        'the followers apply the entry while the leader writes it',
      );
      expect(leader.status().commitIndex).toBeGreaterThan(before);
      await until(() => answered, 'the leader answers while its own write is held');
      expect(leader.status().appliedIndex).toBeGreaterThan(before);
    } finally {
      // Also on failure: a leader stuck in its write could not stop.
      holding = false;
      release();
    }
    expect((await write).result).toMatchObject({ type: 'SessionOpened' });
  });

  it('a failed write stops the node: writes fail INTERNAL, observers hear of it, stop() still closes', async () => {
    cluster = new TestCluster();
    const c = cluster;
    const leader = await c.leader();
    const storage = c.storages.get(leader.id);
    if (storage === undefined) throw new Error('no storage');
    const failures: Error[] = [];
    leader.observe({ failed: (error) => failures.push(error) });
    let closed = false;
    const close = storage.close.bind(storage);
    storage.close = async () => {
      closed = true;
      await close();
    };
    storage.persist = async () => {
      throw new Error('disk on fire');
    };
    const write = leader.write({
      type: 'OpenSession',
      ttlMs: 5_000,
      clientName: 'x',
      requestId: c.requestId(),
    });
    await expect(write).rejects.toMatchObject({ code: 'INTERNAL' });
    expect(failures.map((error) => error.message)).toEqual(['disk on fire']);
    expect(leader.running).toBe(false);
    await leader.stop();
    expect(closed).toBe(true);
    c.nodes.delete(leader.id);
  });
});
