import { afterEach, describe, expect, it } from 'vitest';
import type { LockCommand, LockResult } from '../../src/lock/index.ts';
import { DlmError } from '../../src/node/errors.ts';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { type FencingToken, type NodeId, nodeId, type SessionId } from '../../src/util/ids.ts';

/**
 * The node runtime with real timers, over an in-process network and in-memory storage:
 * three nodes elect a leader, take writes through any node, serve linearizable reads
 * from any node, fail over, restart from storage, and expire abandoned sessions.
 */
const OPTIONS: NodeRuntimeOptions = {
  tickIntervalMs: 10,
  raft: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 1 },
  lock: { sessionTtlMsMin: 100 },
  pendingProposalsMax: 100,
  proposalTimeoutMs: 2_000,
  snapshotEntriesThreshold: 20,
  compactionRetainEntries: 5,
  shutdownTransferMs: 500,
};

const ids = [nodeId('n1'), nodeId('n2'), nodeId('n3')];

class TestCluster {
  readonly network = new MemoryNetwork();
  readonly storages = new Map<NodeId, MemoryWritableStorage>();
  readonly nodes = new Map<NodeId, DlmNode>();
  private requests = 0;

  constructor() {
    for (const [position, id] of ids.entries()) {
      this.storages.set(id, MemoryWritableStorage.bootstrap({ voters: ids, learners: [] }));
      this.start(id, position + 1);
    }
  }

  start(id: NodeId, seed: number): DlmNode {
    const storage = this.storages.get(id);
    if (storage === undefined) throw new Error(`no storage for ${id}`);
    const node = new DlmNode(id, storage, this.network.connect(id), OPTIONS, undefined, seed);
    node.start();
    this.nodes.set(id, node);
    return node;
  }

  node(id: NodeId): DlmNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`${id} is not running`);
    return node;
  }

  async leader(): Promise<DlmNode> {
    for (let attempt = 0; attempt < 300; attempt++) {
      const leaders = [...this.nodes.values()].filter((node) => node.status().role === 'leader');
      if (leaders.length === 1 && leaders[0] !== undefined) return leaders[0];
      await sleep(10);
    }
    throw new Error('no leader within 3 s');
  }

  async follower(): Promise<DlmNode> {
    const leader = await this.leader();
    const follower = [...this.nodes.values()].find((node) => node !== leader);
    if (follower === undefined) throw new Error('no follower');
    return follower;
  }

  requestId(): string {
    return `req-${++this.requests}`;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((node) => node.stop()));
    this.nodes.clear();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Retries a write on UNAVAILABLE as a client would, with the same request id. */
async function writeVia(pick: () => Promise<DlmNode>, command: LockCommand): Promise<LockResult> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      return (await (await pick()).write(command)).result;
    } catch (error) {
      if (!(error instanceof DlmError) || error.code === 'INTERNAL') throw error;
      await sleep(20);
    }
  }
  throw new Error(`write ${command.type} did not succeed`);
}

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
});
