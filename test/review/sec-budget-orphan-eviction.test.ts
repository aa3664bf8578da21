/**
 * Review of eee8065 (sec-owner): under an `auth` section, clientWrite registers a
 * lateApply listener on every write (to charge the refusal budget), so every write
 * that times out becomes an orphan in the node's ProposalRegistry. Orphans are bounded
 * (pendingProposalsMax, oldest evicted). Before, only Acquires registered one, and
 * their listener is what withdraws an Acquire whose caller was told it failed but which
 * applied after all. Now a stall's timed-out KeepAlives evict that listener: the
 * Acquire applies as a grant, the caller was told DEADLINE_EXCEEDED, and nothing gives
 * the grant back (it stays with the session until the session ends).
 *
 * The control (no KeepAlives in between) passes: the withdrawal works when the orphan
 * is not evicted. The failing case is the KeepAlives of the same session, which any
 * client sends on its own schedule during a stall.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { tokenEntry } from '../../src/api/auth/tokens.ts';
import { LOCK_SERVICE_NAME } from '../../src/api/proto.ts';
import { bearerInterceptor } from '../../src/client/bearer.ts';
import type { AuthConfig } from '../../src/config/auth.ts';
import { parseClusterConfig } from '../../src/config/index.ts';
import { ApiCluster, eventually, IDS, rpcError, ServiceClient, sleep } from '../api/harness.ts';

const TOKEN = 'alice-token-0123456789';
const PENDING_MAX = 4;

async function authSection(): Promise<AuthConfig | null> {
  const section = {
    tokens: [await tokenEntry('alice', TOKEN, 'sha256')],
    roles: { team: [{ prefix: 'a/', grant: ['read', 'lock'] }] },
    identities: { alice: ['team'] },
  };
  const nodes = IDS.map((id, k) => ({
    id,
    peerAddress: `127.0.0.1:${7001 + k}`,
    clientAddress: `127.0.0.1:${8001 + k}`,
    metricsAddress: `127.0.0.1:${9001 + k}`,
  }));
  return parseClusterConfig({ nodes, dataDir: 'data', auth: section }, '/tmp').auth;
}

describe('an Acquire told DEADLINE_EXCEEDED that applies later is withdrawn (review of eee8065)', () => {
  let cluster: ApiCluster | undefined;
  let client: ServiceClient | undefined;

  afterEach(async () => {
    client?.close();
    cluster?.network.releaseHeld();
    await cluster?.stop();
    cluster = undefined;
  });

  async function scenario(auth: AuthConfig | null, keepAlivesInBetween: number): Promise<void> {
    cluster = await ApiCluster.start(
      {},
      { pendingProposalsMax: PENDING_MAX, proposalTimeoutMs: 400 },
      auth,
    );
    const leader = await cluster.leaderId();
    const follower = await cluster.followerId();
    client = new ServiceClient(LOCK_SERVICE_NAME, cluster.at(follower).server.port, {
      interceptors: auth === null ? [] : [bearerInterceptor(TOKEN)],
    });
    const opened = await client.call('OpenSession', {
      ttl_ms: '60000',
      client_name: 'orphans',
      request_id: '1',
    });
    const session = String(opened.session_id);
    await eventually(
      () => cluster?.nodes.get(follower)?.locks.session(Number(session) as never) !== null,
    );
    // A stall between the follower and the leader: its forwards are held back.
    cluster.network.hold((message) => message.kind === 'forward');
    const acquire = await rpcError(
      client.call('Acquire', {
        lock: 'a/x',
        session_id: session,
        mode: 'EXCLUSIVE',
        wait_ms: '0',
        request_id: '2',
        owner: 'alice',
      }),
    );
    // Told it failed, its fate open (the follower gives up on the unanswered forward).
    expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(acquire.code);
    // The client's own KeepAlives during the stall (a client sends them on its own clock).
    for (let k = 0; k < keepAlivesInBetween; k++) {
      const error = await rpcError(client.call('KeepAlive', { session_id: session }));
      expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(error.code);
    }
    cluster.network.releaseHeld();
    const locks = cluster.nodes.get(leader)?.locks;
    // The Acquire applies after all (a grant its caller was told it did not get) ...
    await eventually(() => (cluster?.nodes.get(follower)?.status().appliedIndex ?? 0) > 0);
    await sleep(500);
    // ... and must be withdrawn through the log: the session must not keep a grant its
    // client was told it did not get (it would hold a/x until its 60 s TTL).
    await eventually(() => locks?.holdersOf('a/x').length === 0, 3_000).catch(() => {});
    expect(locks?.holdersOf('a/x').map((holder) => String(holder.sessionId))).toEqual([]);
  }

  it('control: open cluster, KeepAlives in between', async () => {
    await scenario(null, PENDING_MAX);
  }, 20_000);

  it('control: under auth, no KeepAlives in between', async () => {
    await scenario(await authSection(), 0);
  }, 20_000);

  it('under auth, with the session’s KeepAlives timing out in between', async () => {
    await scenario(await authSection(), PENDING_MAX);
  }, 20_000);
});
