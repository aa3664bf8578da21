/**
 * dlm.v1.Cluster's view of the lock rules (Status) and the way to change them
 * (SetLockRules), over real gRPC: the rules go through the log, so every node answers
 * by the same ones.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockRulesDigest, wireLockRules } from '../../src/api/rules.ts';
import { BEHAVIOUR_LATEST, DEFAULT_LOCK_LIMITS, type LockLimits } from '../../src/lock/index.ts';
import { ApiCluster, IDS, NODE_OPTIONS, rpcError } from './harness.ts';

let c: ApiCluster;

beforeAll(async () => {
  c = await ApiCluster.start();
});

afterAll(async () => {
  await c.stop();
});

const CONFIGURED: LockLimits = { ...DEFAULT_LOCK_LIMITS, ...NODE_OPTIONS.lock };

async function statuses() {
  return Promise.all(IDS.map((id) => c.at(id).cluster.call('Status', {})));
}

describe('lock rules over the API', () => {
  it('Status shows the rules in force on every node: the configured ones, set through the log', async () => {
    for (const status of await statuses()) {
      expect(status.lock_rules).toEqual(wireLockRules(CONFIGURED));
      expect(Number(status.lock_rules_index)).toBeGreaterThan(0);
      expect(status.lock_rules_digest).toBe(lockRulesDigest(CONFIGURED));
    }
    expect(lockRulesDigest(CONFIGURED)).not.toBe(lockRulesDigest(DEFAULT_LOCK_LIMITS));
  });

  it('Status shows the behaviour version in force: a cluster born on this binary, raised', async () => {
    for (const status of await statuses()) {
      expect(status.behaviour_version).toBe(BEHAVIOUR_LATEST);
      expect(status.behaviour_max).toBe(BEHAVIOUR_LATEST);
    }
  });

  it('SetLockRules through a follower changes what every node accepts', async () => {
    const follower = await c.followerId();
    const rules = { ...CONFIGURED, sessionTtlMsMin: 500 };
    const response = await c.at(follower).cluster.call('SetLockRules', {
      rules: wireLockRules(rules),
    });
    expect(response.rules).toEqual(wireLockRules(rules));
    const index = Number(response.rules_index);
    for (const id of IDS) {
      // Every node has applied it once a linearizable read through it returns.
      await c.at(id).lock.call('Describe', { lock: 'x' });
      const status = await c.at(id).cluster.call('Status', {});
      expect(Number(status.lock_rules_index)).toBe(index);
      const refused = await rpcError(
        c.at(id).lock.call('OpenSession', { ttl_ms: '300', client_name: 't', request_id: '77' }),
      );
      expect(refused.code).toBe(3); // INVALID_ARGUMENT
      expect(refused.details).toContain('[500, ');
    }
  });

  it('SetLockRules sets an optional rule (issue 17), 0 leaves it at its default, and the state machine applies it', async () => {
    const leader = await c.leaderId();
    const set = await c.at(leader).cluster.call('SetLockRules', {
      rules: { ...wireLockRules(CONFIGURED), locks_per_acquire_max: '2' },
    });
    expect(set.rules.locks_per_acquire_max).toBe('2');
    expect(set.rules.deadlock_check_steps_max).toBe('0');
    // A digest names the rule once set, and not while it is not (rules without it keep theirs).
    const status = await c.at(leader).cluster.call('Status', {});
    expect(status.lock_rules_digest).toBe(
      lockRulesDigest({ ...CONFIGURED, locksPerAcquireMax: 2 }),
    );
    expect(status.lock_rules_digest).not.toBe(lockRulesDigest(CONFIGURED));
    const opened = await c.at(leader).lock.call('OpenSession', {
      ttl_ms: String(CONFIGURED.sessionTtlMsMax),
      client_name: 't',
      request_id: '4242',
    });
    const refused = await rpcError(
      c.at(leader).lock.call('AcquireAll', {
        locks: [{ lock: 'o/a' }, { lock: 'o/b' }, { lock: 'o/c' }],
        session_id: opened.session_id,
        request_id: '1',
      }),
    );
    expect(refused.code).toBe(3);
    expect(refused.details).toContain('AcquireAllRequest.locks');
    // Back to what the other tests expect.
    const reset = await c
      .at(leader)
      .cluster.call('SetLockRules', { rules: wireLockRules(CONFIGURED) });
    expect(reset.rules).toEqual(wireLockRules(CONFIGURED));
    expect((await c.at(leader).cluster.call('Status', {})).lock_rules_digest).toBe(
      lockRulesDigest(CONFIGURED),
    );
  });

  it.each([
    [{ rules: wireLockRules({ ...CONFIGURED, sessionsMax: 0 }) }, 'lock.sessionsMax'],
    [
      { rules: wireLockRules({ ...CONFIGURED, sessionTtlMsMin: 9, sessionTtlMsMax: 8 }) },
      'lock.sessionTtlMsMin',
    ],
    [{}, 'SetLockRulesRequest.rules: must be given'],
    [
      { rules: { ...wireLockRules(CONFIGURED), locks_per_acquire_max: '257' } },
      'lock.locksPerAcquireMax: expected an integer in 1..256, got 257',
    ],
    // Against the node's Raft timing: a 10-tick election timeout of 10 ms ticks.
    [
      { rules: wireLockRules({ ...CONFIGURED, sessionTtlMsMin: 50 }) },
      'lock.sessionTtlMsMin: 50 ms cannot survive a failover',
    ],
  ])(
    'refuses invalid rules (%#) with INVALID_ARGUMENT naming the field',
    async (request, named) => {
      const before = (await statuses())[0]?.lock_rules_index;
      const error = await rpcError(c.at(await c.leaderId()).cluster.call('SetLockRules', request));
      expect(error.code).toBe(3);
      expect(error.details).toContain(named);
      expect((await statuses())[0]?.lock_rules_index).toBe(before);
    },
  );
});
