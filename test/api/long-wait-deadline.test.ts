import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wireLockRules } from '../../src/api/rules.ts';
import { DlmClient } from '../../src/client/index.ts';
import { DEFAULT_LOCK_LIMITS, type LockLimits } from '../../src/lock/index.ts';
import { TIMER_MS_MAX } from '../../src/lock/limits.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { DelayProxy } from '../support/delay-proxy.ts';
import { ApiCluster, eventually, NODE_OPTIONS, sleep, TRANSPORTS } from './harness.ts';

/**
 * The lock rules allow an Acquire to wait up to TIMER_MS_MAX (2^31 - 1 ms, the longest
 * a Node timer waits), so its call's deadline (call timeout + wait) lies further off
 * than that. Node fires a timer asked to wait longer after 1 ms, and a grpc-js server
 * reads a grpc-timeout of 2^31 ms or more as already passed; over the stream the node
 * refused such a timeout_ms. Either way a valid Acquire of a free lock failed at once.
 * (Review finding 3 of the Session stream; the unary failure predates the stream.)
 */
let cluster: ApiCluster;
let leader: NodeId;
let endpoint: string;
let lockCount = 0;

beforeAll(async () => {
  cluster = await ApiCluster.start();
  leader = await cluster.leaderId();
  endpoint = `127.0.0.1:${cluster.at(leader).server.port}`;
  const rules: LockLimits = { ...DEFAULT_LOCK_LIMITS, ...NODE_OPTIONS.lock };
  await cluster.at(leader).cluster.call('SetLockRules', {
    rules: wireLockRules({ ...rules, waitMsMax: TIMER_MS_MAX }),
  });
});

afterAll(async () => {
  await cluster?.stop();
});

/** The client's default attempt timeout, which it adds to an Acquire's wait. */
const ATTEMPT_TIMEOUT_MS = 2_000;

/**
 * Waits whose attempt deadline (wait + attempt timeout) lies: just inside what a
 * grpc-js server reads right (2_147_483_000 ms, whole seconds), just past it, and at
 * the rules' ceiling.
 */
const WAITS_MS = [
  2_147_483_000 - ATTEMPT_TIMEOUT_MS,
  TIMER_MS_MAX - ATTEMPT_TIMEOUT_MS,
  TIMER_MS_MAX,
];

describe('an Acquire of a free lock with a wait near the rules ceiling', () => {
  for (const transport of TRANSPORTS) {
    it.each(WAITS_MS)(`(${transport}) is granted with waitMs %d`, async (waitMs) => {
      const client = new DlmClient({
        endpoints: [endpoint],
        transport,
        attemptTimeoutMs: ATTEMPT_TIMEOUT_MS,
      });
      try {
        const session = await client.openSession({ ttlMs: 10_000 });
        const lock = await session.acquire(`ceiling/${++lockCount}`, { waitMs });
        expect(lock.token).toMatch(/^\d+$/);
        await lock.release();
      } finally {
        client.close();
      }
    });
  }
});

describe('a unary Acquire sent with no deadline (its wait at the rules ceiling)', () => {
  it('is withdrawn by the node when its connection is reset, though the node had no deadline for it', async () => {
    const api = cluster.at(leader).lock;
    const node = cluster.nodes.get(leader);
    if (node === undefined) throw new Error('no leader');
    const name = `ceiling/${++lockCount}`;
    const holder = await cluster.openSession(leader, 120_000);
    const held = await api.call('Acquire', {
      lock: name,
      session_id: holder,
      request_id: cluster.requestId(),
    });
    const proxy = await DelayProxy.start(cluster.at(leader).server.port);
    const client = new DlmClient({ endpoints: [proxy.address], transport: 'unary' });
    try {
      const session = await client.openSession({ ttlMs: 60_000 });
      // waitMs + the attempt timeout is past what a grpc-js server reads: no deadline sent.
      void session.acquire(name, { waitMs: TIMER_MS_MAX }).catch(() => {});
      await eventually(() => node.locks.describe(name).waiters.length === 1, 5_000);
      await proxy.cut();
      // The node learns of the reset, cancels the call and withdraws the wait.
      await eventually(() => node.locks.describe(name).waiters.length === 0, 5_000);
      await api.call('Release', {
        lock: name,
        session_id: holder,
        fencing_token: held.fencing_token,
        request_id: cluster.requestId(),
      });
      await sleep(300);
      expect(node.locks.describe(name).holders).toEqual([]);
    } finally {
      client.close();
      await proxy.close();
    }
  }, 30_000);
});
