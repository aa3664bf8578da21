import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, DlmClientError, LockModeError } from '../../src/client/index.ts';
import { grantedMode } from '../../src/client/mode.ts';
import { ApiCluster, IDS } from '../api/harness.ts';
import { FakeDlmServer } from '../support/fake-dlm-server.ts';

/**
 * A handle carries the mode it was granted in, and the client never hands out a handle
 * whose grant is in another mode than the one asked for.
 */
let cluster: ApiCluster | null = null;
let fake: FakeDlmServer | null = null;
let client: DlmClient | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  await fake?.close();
  fake = null;
  await cluster?.stop();
  cluster = null;
});

async function start(): Promise<DlmClient> {
  cluster = await ApiCluster.start();
  const endpoints = IDS.map((id) => `127.0.0.1:${cluster?.at(id).server.port}`);
  client = new DlmClient({ endpoints, attemptTimeoutMs: 500 });
  return client;
}

/** Rejected with a LockModeError, or by the server's FAILED_PRECONDITION: never a handle. */
function refusedForMode(error: unknown): boolean {
  if (error instanceof LockModeError) return true;
  return error instanceof DlmClientError && error.status === grpc.status.FAILED_PRECONDITION;
}

describe('lock modes', () => {
  it('a handle carries the mode asked for: exclusive by default, or shared', async () => {
    const dlm = await start();
    const a = await dlm.openSession({ ttlMs: 5_000 });
    const b = await dlm.openSession({ ttlMs: 5_000 });
    expect((await a.acquire('mode/x')).mode).toBe('exclusive');
    const first = await a.acquire('mode/s', { mode: 'SHARED' });
    const second = await b.acquire('mode/s', { mode: 'shared' });
    expect([first.mode, second.mode]).toEqual(['shared', 'shared']);
  });

  it('refuses an exclusive Acquire answered with the shared grant the session holds', async () => {
    const dlm = await start();
    const session = await dlm.openSession({ ttlMs: 5_000 });
    const shared = await session.acquire('mode/held-shared', { mode: 'SHARED' });
    const error = await session.acquire('mode/held-shared').then(
      (handle) => handle,
      (caught: unknown) => caught,
    );
    expect(refusedForMode(error), String(error)).toBe(true);
    // The grant the session had is untouched.
    await session.settled();
    expect((await dlm.validateFence('mode/held-shared', shared.token)).valid).toBe(true);
  });

  it('refuses a shared Acquire answered with the exclusive grant the session holds', async () => {
    const dlm = await start();
    const session = await dlm.openSession({ ttlMs: 5_000 });
    const exclusive = await session.acquire('mode/held-exclusive');
    const error = await session.acquire('mode/held-exclusive', { mode: 'SHARED' }).then(
      (handle) => handle,
      (caught: unknown) => caught,
    );
    expect(refusedForMode(error), String(error)).toBe(true);
    await session.settled();
    expect((await dlm.validateFence('mode/held-exclusive', exclusive.token)).valid).toBe(true);
  });

  it('refuses an exclusive grant that has co-holders, and gives the grant back', async () => {
    fake = await FakeDlmServer.start((method, request) => {
      switch (method) {
        case 'OpenSession':
          return { response: { session_id: '1', ttl_ms: request.ttl_ms } };
        case 'Acquire':
          return {
            response: {
              acquired: true,
              fencing_token: '9',
              holders: [
                { session_id: '2', owner: 'other', fencing_token: '8' },
                { session_id: '1', owner: '', fencing_token: '9' },
              ],
            },
          };
        default:
          return { response: {} };
      }
    });
    client = new DlmClient({ endpoints: [fake.address] });
    const session = await client.openSession({ ttlMs: 10_000 });
    const error = await session.acquire('mode/co-held').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LockModeError);
    expect(error).toMatchObject({ lock: 'mode/co-held', asked: 'exclusive', granted: 'shared' });
    expect(await session.settled()).toMatchObject([{ result: 'released' }]);
    expect(fake.calls.filter((call) => call.method === 'Release')).toMatchObject([
      { request: { lock: 'mode/co-held', fencing_token: '9' } },
    ]);
    await session.close();
  });
});

describe('grantedMode', () => {
  const self = '1';
  it('takes the mode the answer states, or this session holder’s', () => {
    expect(grantedMode({ mode: 'SHARED', holders: [] }, self, 'exclusive', null)).toBe('shared');
    expect(
      grantedMode({ holders: [{ session_id: '1', mode: 'EXCLUSIVE' }] }, self, 'shared', null),
    ).toBe('exclusive');
  });

  it('infers shared from co-holders, else the mode of a handle on the same grant, else the request', () => {
    const coHeld = { holders: [{ session_id: '1' }, { session_id: '2' }] };
    expect(grantedMode(coHeld, self, 'exclusive', null)).toBe('shared');
    expect(grantedMode({ holders: [{ session_id: '1' }] }, self, 'shared', 'exclusive')).toBe(
      'exclusive',
    );
    expect(grantedMode({ holders: [{ session_id: '1' }] }, self, 'shared', null)).toBe('shared');
    expect(grantedMode({}, self, 'exclusive', null)).toBe('exclusive');
  });
});
