/**
 * Over real gRPC: a retry of an acknowledged request (same request_id) that arrives
 * after `dlm rules apply` lowered a limit must get its first outcome, not
 * INVALID_ARGUMENT (which the client reads as "nothing held" though it holds the lock),
 * and locks left with names above a lowered limit stay usable. Found by an adversarial
 * review of the replicated lock rules; each failed before its fix, when the API checked
 * requests against the rules in force. "Observed" notes say what that code did.
 */
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wireLockRules } from '../../src/api/rules.ts';
import { DEFAULT_LOCK_LIMITS, type LockLimits } from '../../src/lock/index.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, NODE_OPTIONS, rpcError } from './harness.ts';

let c: ApiCluster;
let leader: NodeId;
let follower: NodeId;

const CONFIGURED: LockLimits = { ...DEFAULT_LOCK_LIMITS, ...NODE_OPTIONS.lock };

beforeAll(async () => {
  c = await ApiCluster.start();
  leader = await c.leaderId();
  follower = await c.followerId();
});

afterAll(async () => {
  await c?.stop();
});

async function setRules(rules: LockLimits): Promise<void> {
  await c.at(leader).cluster.call('SetLockRules', { rules: wireLockRules(rules) });
  // Every node has applied it once a linearizable read through it returns.
  for (const id of [leader, follower]) await c.at(id).lock.call('Describe', { lock: 'sync' });
}

async function holdersOf(name: string): Promise<string[]> {
  const described = await c.at(leader).lock.call('Describe', { lock: name });
  return (described.holders as { session_id: string }[]).map((holder) => holder.session_id);
}

describe('review: a retried request after the rules were lowered', () => {
  it('a retried Acquire (same request_id) is answered with its grant, not INVALID_ARGUMENT, after maxHoldMsMax and ownerBytesMax are lowered', async () => {
    await setRules(CONFIGURED);
    const session = await c.openSession(follower);
    const request = {
      lock: 'review/acquire-retry',
      session_id: session,
      request_id: c.requestId(),
      owner: 'x'.repeat(500), // within the default ownerBytesMax (1024)
      max_hold_ms: '600000', // within the default maxHoldMsMax (86_400_000)
    };
    const first = await c.at(follower).lock.call('Acquire', request);
    expect(first.acquired).toBe(true);
    // The answer is lost (say UNAVAILABLE from a leader change); meanwhile the operator
    // runs `dlm rules apply` with smaller limits.
    await setRules({ ...CONFIGURED, ownerBytesMax: 128, maxHoldMsMax: 60_000 });
    // The client retries with the same request_id, as src/client does.
    const retry = await c
      .at(follower)
      .lock.call('Acquire', request)
      .then(
        (response) => ({
          code: status.OK,
          acquired: response.acquired,
          token: response.fencing_token,
        }),
        (error: { code: number; details: string }) => ({
          code: error.code,
          details: error.details,
        }),
      );
    // The session holds the lock with the first attempt's token...
    expect(await holdersOf(request.lock)).toEqual([session]);
    // ...so the retry must return the first outcome. Observed: INVALID_ARGUMENT
    // "AcquireRequest.owner ... 128" — which src/client treats as decisive: nothing held.
    expect(retry).toEqual({ code: status.OK, acquired: true, token: first.fencing_token });
  });

  it("the client's settle of a lost Acquire (same request_id, wait_ms 0) learns the grant, after ownerBytesMax is lowered", async () => {
    await setRules(CONFIGURED);
    const session = await c.openSession(leader);
    const sent = {
      lock: 'review/settle',
      session_id: session,
      request_id: c.requestId(),
      owner: 'y'.repeat(300),
      wait_ms: '0',
    };
    const first = await c.at(leader).lock.call('Acquire', sent);
    expect(first.acquired).toBe(true);
    await setRules({ ...CONFIGURED, ownerBytesMax: 64 });
    // What src/client/settle.ts sends: the same wire request with wait_ms 0. It reads
    // INVALID_ARGUMENT as "nothing is held" and stops, leaving the grant with no handle
    // on a session it keeps alive.
    const settle = await rpcError(c.at(leader).lock.call('Acquire', sent)).catch(() => null);
    expect(await holdersOf(sent.lock)).toEqual([session]);
    expect(settle).toBeNull(); // observed: INVALID_ARGUMENT AcquireRequest.owner
  });

  it('a holder can still Release, and a resource can still ValidateFence, a lock whose name is above a lowered lockNameBytesMax', async () => {
    await setRules(CONFIGURED);
    const session = await c.openSession(leader);
    const name = `review/${'n'.repeat(100)}`;
    const granted = await c.at(leader).lock.call('Acquire', {
      lock: name,
      session_id: session,
      request_id: c.requestId(),
    });
    expect(granted.acquired).toBe(true);
    await setRules({ ...CONFIGURED, lockNameBytesMax: 32 });
    const fence = await c
      .at(follower)
      .lock.call('ValidateFence', { lock: name, fencing_token: granted.fencing_token })
      .then(
        (response) => ({ code: status.OK, valid: response.valid }),
        (error: { code: number }) => ({ code: error.code, valid: null }),
      );
    const release = await c
      .at(leader)
      .lock.call('Release', {
        lock: name,
        session_id: session,
        fencing_token: granted.fencing_token,
        request_id: c.requestId(),
      })
      .then(
        () => status.OK,
        (error: { code: number }) => error.code,
      );
    // Observed: both INVALID_ARGUMENT ("AcquireRequest.lock is 107 bytes, the limit is 32"),
    // and the grant stays until the session ends: lowered limits were to "end nothing".
    expect({ fence, release }).toEqual({
      fence: { code: status.OK, valid: true },
      release: status.OK,
    });
    expect(await holdersOf(name).catch(() => ['describe refused too'])).toEqual([]);
  });
  it('a retry through a follower that has not applied raised rules yet is not told INVALID_ARGUMENT for a request the cluster granted', async () => {
    await setRules({ ...CONFIGURED, ownerBytesMax: 128 });
    const others = [...c.nodes.keys()].filter((id) => id !== follower);
    // The follower lags (cut off, or just slow to apply) while the operator raises a limit.
    c.network.isolate(follower, others);
    try {
      await c.at(leader).cluster.call('SetLockRules', {
        rules: wireLockRules({ ...CONFIGURED, ownerBytesMax: 1024 }),
      });
      const session = await c.openSession(leader);
      const request = {
        lock: 'review/lagging-follower',
        session_id: session,
        request_id: c.requestId(),
        owner: 'z'.repeat(500), // valid under the rules in force (1024)
      };
      const first = await c.at(leader).lock.call('Acquire', request);
      expect(first.acquired).toBe(true);
      // The answer is lost; the client retries through another endpoint, as src/client does.
      const retry = await rpcError(c.at(follower).lock.call('Acquire', request));
      expect(await holdersOf(request.lock)).toEqual([session]);
      // UNAVAILABLE (retry elsewhere) or the grant would be true; INVALID_ARGUMENT is
      // "decisive" to src/client: it concludes the lock is not held. Observed: 3.
      expect(retry.code).not.toBe(status.INVALID_ARGUMENT);
    } finally {
      c.network.heal();
    }
  });
});
