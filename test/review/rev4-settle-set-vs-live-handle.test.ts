import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, DlmClientError } from '../../src/client/index.ts';
import { FakeDlmServer } from '../support/fake-dlm-server.ts';

/**
 * Review 4 (multi-api, 0b56a02): the settle of a set checks for a live handle through
 * the set's first lock only ("a handle of it covers every lock, so its first one
 * tells"). But a live handle of one lock of the set, not the first, can hold the set's
 * grant: on the cluster an Acquire of a lock the session holds within a set is told
 * that set's grant (re-acquire; the state machine adds the request to those told of
 * it). Here: acquireAll([A, B]) (r1) is granted token 7 but its caller aborts (outcome
 * unknown); acquire('B'), in flight meanwhile, is told the same grant, token 7. The
 * settle re-issues r1, is told AcquiredAll 7, finds no handle of "A" with token 7, and
 * releases A, which releases the whole set, B included, under the live handle of B.
 * The fake server answers what the cluster would.
 */
let server: FakeDlmServer | null = null;
let client: DlmClient | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  await server?.close();
  server = null;
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('rev4: settle of a set vs. a live handle of its second lock', () => {
  it('does not release a set whose grant a live handle of one of its locks holds', async () => {
    const released: string[] = [];
    const holders = [{ session_id: '1', owner: '', fencing_token: '7' }];
    const setGrant = {
      response: {
        acquired: true,
        fencing_token: '7',
        locks: [
          { lock: 'A', mode: 'EXCLUSIVE', holders },
          { lock: 'B', mode: 'EXCLUSIVE', holders },
        ],
      },
    };
    server = await FakeDlmServer.start(async (method, request) => {
      switch (method) {
        case 'OpenSession':
          return { response: { session_id: '1', ttl_ms: request.ttl_ms } };
        case 'KeepAlive':
          return { response: { ttl_ms: '10000' } };
        case 'Release':
          released.push(`${String(request.lock)}@${String(request.fencing_token)}`);
          return { response: { released: true } };
        case 'AcquireAll':
          if (request.wait_ms !== '0') {
            // r1: applied (the set granted, token 7), its answer lost; the caller aborts.
            await sleep(2_000);
          }
          return setGrant; // or the settle's re-issue of r1, told the grant at once
        case 'Acquire':
          // acquire('B') re-acquires B within the held set: told the set's grant.
          await sleep(300);
          return { response: { acquired: true, fencing_token: '7', holders } };
        default:
          return { status: grpc.status.UNIMPLEMENTED };
      }
    });
    client = new DlmClient({
      endpoints: [server.address],
      retryDelayMsMin: 5,
      retryDelayMsMax: 10,
      settleAttemptTimeoutMs: 1_000,
      settleAttemptsMax: 3,
    });
    const session = await client.openSession({ ttlMs: 10_000, callTimeoutMs: 5_000 });
    const abort = new AbortController();
    const set = session
      .acquireAll([{ name: 'A' }, { name: 'B' }], { waitMs: 1, signal: abort.signal })
      .catch((e) => e);
    await sleep(20);
    const b = session.acquire('B'); // in flight before the settle starts
    await sleep(50);
    abort.abort();
    const setError = await set;
    expect(setError).toBeInstanceOf(DlmClientError);
    expect((setError as DlmClientError).outcomeUnknown).toBe(true);
    const handle = await b;
    const outcomes = await session.settled();
    expect(handle.token).toBe('7');
    // The handle of B holds token 7: releasing A (the set) takes B from under it.
    expect(released, JSON.stringify(outcomes)).toEqual([]);
  }, 10_000);
});
