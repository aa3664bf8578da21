import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, ERROR_CODE_KEY, LEADER_HINT_KEY } from '../../src/client/index.ts';
import { type FakeAnswer, FakeDlmServer } from '../support/fake-dlm-server.ts';

/** How the client finds a node that serves when leader hints mislead it. */
const servers: FakeDlmServer[] = [];
let client: DlmClient | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

describe('client routing', () => {
  it('leaves two nodes whose stale leader hints point at each other for one that serves', async () => {
    const ports: Record<string, number> = {};
    const members = () =>
      Object.entries(ports).map(([id, port]) => ({
        id,
        peer_address: '',
        client_address: `127.0.0.1:${port}`,
        learner: false,
      }));
    const status = (self: string, leader: string): FakeAnswer => ({
      response: { node_id: self, leader_id: leader, term: '3', members: members() },
    });
    // a and b each believe the other leads; c leads and serves.
    const sendsAway =
      (self: string, hint: string) =>
      (method: string): FakeAnswer =>
        method === 'Status'
          ? status(self, hint)
          : {
              status: grpc.status.UNAVAILABLE,
              trailers: { [ERROR_CODE_KEY]: 'UNAVAILABLE', [LEADER_HINT_KEY]: hint },
            };
    const a = await FakeDlmServer.start(sendsAway('a', 'b'));
    const b = await FakeDlmServer.start(sendsAway('b', 'a'));
    const c = await FakeDlmServer.start((method) =>
      method === 'Status'
        ? status('c', 'c')
        : { response: { holders: [], waiters: [], mode: 'EXCLUSIVE' } },
    );
    servers.push(a, b, c);
    Object.assign(ports, { a: a.port, b: b.port, c: c.port });
    client = new DlmClient({
      endpoints: [a.address, b.address, c.address],
      retryDelayMsMin: 5,
      retryDelayMsMax: 20,
    });
    const state = await client.describe('routing/cycle', { timeoutMs: 2_000 });
    expect(state.holders).toEqual([]);
    expect(c.count('Describe')).toBe(1);
    // One visit each; a hint back to a node that just sent the call away is not followed.
    expect(a.count('Describe') + b.count('Describe')).toBeLessThanOrEqual(3);
  });
});
