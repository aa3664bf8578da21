/**
 * Review 4 (multi-api, 0b56a02): authorisation and the deadlock refusal.
 *
 * A deadlock refusal (ABORTED, dlm-error-code deadlock) names every hop of the cycle,
 * lock names and session ids included, to whoever asked. Lock names are guarded by the
 * `read` permission elsewhere (ListLocks/Describe refuse, Acquire blanks owners of
 * locks the caller may not read), but a cycle that runs through another identity's
 * private lock tells the caller that lock's name, who holds it and who waits for it.
 */
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { tokenEntry } from '../../src/api/auth/tokens.ts';
import { LOCK_SERVICE_NAME } from '../../src/api/proto.ts';
import { bearerInterceptor } from '../../src/client/bearer.ts';
import { parseClusterConfig } from '../../src/config/index.ts';
import { BEHAVIOUR_MULTI_LOCK } from '../../src/lock/index.ts';
import { ApiCluster, eventually, IDS, rpcError, ServiceClient, sleep } from '../api/harness.ts';

describe('rev4: a deadlock refusal under auth', () => {
  it('does not name a lock the caller may not read', async () => {
    const aliceToken = 'alice-token-0123456789';
    const bobToken = 'bob-token-0123456789ab';
    const section = {
      tokens: [
        await tokenEntry('alice', aliceToken, 'sha256'),
        await tokenEntry('bob', bobToken, 'sha256'),
      ],
      roles: {
        shared: [{ prefix: 'shared/', grant: ['read', 'lock'] }],
        bobs: [{ prefix: 'bob/', grant: ['read', 'lock'] }],
      },
      identities: { alice: ['shared'], bob: ['shared', 'bobs'] },
    };
    const nodes = IDS.map((id, k) => ({
      id,
      peerAddress: `127.0.0.1:${7201 + k}`,
      clientAddress: `127.0.0.1:${8201 + k}`,
      metricsAddress: `127.0.0.1:${9201 + k}`,
    }));
    const auth = parseClusterConfig({ nodes, dataDir: 'data', auth: section }, '/tmp').auth;
    const secured = await ApiCluster.start({}, {}, auth);
    const port = secured.at(await secured.leaderId()).server.port;
    const alice = new ServiceClient(LOCK_SERVICE_NAME, port, {
      interceptors: [bearerInterceptor(aliceToken)],
    });
    const bob = new ServiceClient(LOCK_SERVICE_NAME, port, {
      interceptors: [bearerInterceptor(bobToken)],
    });
    try {
      await eventually(() =>
        [...secured.nodes.values()].every((node) => node.locks.behaviour >= BEHAVIOUR_MULTI_LOCK),
      );
      const open = async (who: ServiceClient) =>
        (
          await who.call('OpenSession', {
            ttl_ms: '10000',
            client_name: 'rev4',
            request_id: secured.requestId(),
          })
        ).session_id as string;
      const acquire = (who: ServiceClient, session: string, lock: string, waitMs = '0') =>
        who.call(
          'Acquire',
          { lock, session_id: session, request_id: secured.requestId(), wait_ms: waitMs },
          { deadlineMs: 8_000 },
        );
      const s = await open(alice);
      const t = await open(bob);
      const u = await open(bob);
      expect((await acquire(alice, s, 'shared/1')).acquired).toBe(true);
      expect((await acquire(bob, t, 'shared/2')).acquired).toBe(true);
      expect((await acquire(bob, u, 'bob/secret')).acquired).toBe(true);
      // t waits for bob's private lock, u for alice's: no cycle yet.
      const tWaits = acquire(bob, t, 'bob/secret', '5000').catch(() => null);
      await sleep(200);
      const uWaits = acquire(bob, u, 'shared/1', '5000').catch(() => null);
      await sleep(200);
      // Alice may not read bob/: she is refused Describe of it.
      const describeDenied = await rpcError(alice.call('Describe', { lock: 'bob/secret' }));
      expect(describeDenied.code).toBe(status.PERMISSION_DENIED);
      // Her set would close s -> t -> u -> s.
      const refused = await rpcError(
        alice.call(
          'AcquireAll',
          {
            locks: [{ lock: 'shared/2', mode: 'EXCLUSIVE' }],
            session_id: s,
            request_id: secured.requestId(),
            wait_ms: '5000',
          },
          { deadlineMs: 8_000 },
        ),
      );
      expect(refused.code).toBe(status.ABORTED);
      expect(refused.details, refused.details).not.toContain('bob/secret');
      await bob.call('CloseSession', { session_id: t, request_id: secured.requestId() });
      await bob.call('CloseSession', { session_id: u, request_id: secured.requestId() });
      await Promise.all([tWaits, uWaits]);
    } finally {
      alice.raw.close();
      bob.raw.close();
      await secured.stop();
    }
  }, 30_000);
});
