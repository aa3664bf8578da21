/**
 * Review of eee8065 (sec-owner), a design point: the refusal budget charges the asker
 * for every refusal, including those another tenant's state causes (limitReached on a
 * lock's waitersPerLockMax). Tenant X, which shares one prefix with tenant Y, keeps the
 * queue of a shared lock full; Y's ordinary Acquires on it are refused limitReached
 * (final in the client: nothing Y did wrong), each costing Y a unit for the window. Once
 * spent, Y is refused RESOURCE_EXHAUSTED on its own prefix too: X has locked Y out of
 * locks X has no right to touch, for as long as X keeps the queue full.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenEntry } from '../../src/api/auth/tokens.ts';
import { LOCK_SERVICE_NAME } from '../../src/api/proto.ts';
import { bearerInterceptor } from '../../src/client/bearer.ts';
import type { AuthConfig } from '../../src/config/auth.ts';
import { parseClusterConfig } from '../../src/config/index.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, IDS, rpcError, ServiceClient } from '../api/harness.ts';

const BUDGET = 6;
const ENTRY = IDS[0] as NodeId;

async function authSection(): Promise<AuthConfig> {
  const section = {
    tokens: [
      await tokenEntry('x', 'x-token-0123456789', 'sha256'),
      await tokenEntry('y', 'y-token-0123456789', 'sha256'),
    ],
    roles: {
      shared: [{ prefix: 'shared/', grant: ['read', 'lock'] }],
      xOwn: [{ prefix: 'x/', grant: ['read', 'lock'] }],
      yOwn: [{ prefix: 'y/', grant: ['read', 'lock'] }],
    },
    identities: { x: ['shared', 'xOwn'], y: ['shared', 'yOwn'] },
    refusedWritesPerIdentityMax: BUDGET,
    refusedWritesWindowMs: 600_000,
  };
  const nodes = IDS.map((id, k) => ({
    id,
    peerAddress: `127.0.0.1:${7001 + k}`,
    clientAddress: `127.0.0.1:${8001 + k}`,
    metricsAddress: `127.0.0.1:${9001 + k}`,
  }));
  const auth = parseClusterConfig({ nodes, dataDir: 'data', auth: section }, '/tmp').auth;
  if (auth === null) throw new Error('no auth section');
  return auth;
}

describe('another tenant cannot spend an identity’s refusal budget (review of eee8065)', () => {
  let cluster: ApiCluster;
  const clients: ServiceClient[] = [];
  let requests = 0;
  const requestId = (): string => String(++requests);

  beforeAll(async () => {
    cluster = await ApiCluster.start({}, {}, await authSection());
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await cluster?.stop();
  });

  function as(identity: 'x' | 'y'): ServiceClient {
    const port = cluster.at(ENTRY).server.port;
    const client = new ServiceClient(LOCK_SERVICE_NAME, port, {
      interceptors: [bearerInterceptor(`${identity}-token-0123456789`)],
    });
    clients.push(client);
    return client;
  }

  async function open(client: ServiceClient): Promise<string> {
    const opened = await client.call('OpenSession', {
      ttl_ms: '60000',
      client_name: 'budget',
      request_id: requestId(),
    });
    return String(opened.session_id);
  }

  function acquire(client: ServiceClient, lock: string, session: string, waitMs: number) {
    return client.call('Acquire', {
      lock,
      session_id: session,
      mode: 'EXCLUSIVE',
      wait_ms: String(waitMs),
      request_id: requestId(),
      owner: 'o',
    });
  }

  it('Y, refused limitReached on a queue X keeps full, can still lock its own names', async () => {
    await cluster.leaderId();
    const x = as('x');
    const y = as('y');
    const holder = await open(x);
    expect(await acquire(x, 'shared/L', holder, 0)).toMatchObject({ acquired: true });
    // X fills the queue (waitersPerLockMax is 2 on the harness's nodes).
    const waits = [await open(x), await open(x)].map((session) =>
      acquire(x, 'shared/L', session, 60_000).catch(() => {}),
    );
    await eventually(
      () => (cluster.nodes.get(ENTRY)?.locks.describe('shared/L')?.waiters.length ?? 0) >= 2,
    );
    const ySession = await open(y);
    for (let k = 0; k < BUDGET; k++) {
      const refused = await rpcError(acquire(y, 'shared/L', ySession, 1_000));
      expect(refused.trailer('dlm-error-code')).toBe('limitReached');
    }
    // Y's own prefix, which X cannot touch.
    const own = await acquire(y, 'y/own', ySession, 0).catch((error) => error);
    expect(own.code === undefined ? 'acquired' : [grpc.status[own.code], own.details]).toBe(
      'acquired',
    );
    void Promise.all(waits);
  }, 30_000);
});
