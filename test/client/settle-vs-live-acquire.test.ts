import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, DlmClientError } from '../../src/client/index.ts';
import { FakeDlmServer } from '../support/fake-dlm-server.ts';

/**
 * Review: a settle racing an acquire() of the same lock by the same session that was
 * already in flight when the settle started (acquire() waits only for settles running
 * when it starts). On the cluster: A1 (request r1) is granted token 7; A2 (request r2)
 * re-acquires and is told the same grant (token 7), but through a lagging node, so its
 * answer is late; A1's caller aborts (CANCELLED: outcome unknown), the settle re-issues
 * r1 and is told Acquired 7 at once, finds no handle with token 7 yet, and releases it.
 * Then A2's answer arrives: its caller gets a handle for token 7, a grant the session
 * itself just gave back. The fake server answers exactly what the cluster would.
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

describe('review: settle vs. a live acquire of the same session', () => {
  it('does not release a grant an acquire() already in flight is then told it holds', async () => {
    let first: string | null = null;
    const released: string[] = [];
    server = await FakeDlmServer.start(async (method, request) => {
      switch (method) {
        case 'OpenSession':
          return { response: { session_id: '1', ttl_ms: request.ttl_ms } };
        case 'KeepAlive':
          return { response: { ttl_ms: '10000' } };
        case 'Release':
          released.push(String(request.fencing_token));
          return { response: { released: true } };
        case 'Acquire': {
          const grant = { response: { acquired: true, fencing_token: '7', holders: [] } };
          first ??= String(request.request_id);
          if (request.request_id === first && request.wait_ms !== '0') {
            // A1: applied (granted 7), its answer lost in a slow path; the caller aborts.
            await sleep(2_000);
            return grant;
          }
          if (request.request_id === first) return grant; // the settle's re-issue of r1
          await sleep(300); // A2: the re-acquire, answered by a lagging node
          return grant;
        }
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
    const a1 = session.acquire('L', { waitMs: 1, signal: abort.signal }).catch((e) => e);
    await sleep(20);
    const a2 = session.acquire('L'); // started before any settle: it does not wait for one
    await sleep(50);
    abort.abort();
    const a1Error = await a1;
    expect(a1Error).toBeInstanceOf(DlmClientError);
    expect((a1Error as DlmClientError).outcomeUnknown).toBe(true);
    const handle = await a2;
    await session.settled();
    // The caller of A2 holds a handle with token 7: the session must not have released it.
    expect(handle.token).toBe('7');
    expect(released).toEqual([]);
  }, 10_000);
});
