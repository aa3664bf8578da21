import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient, ERROR_CODE_KEY } from '../../src/client/index.ts';
import { CallRecorder } from '../../src/tools/jepsen/call-recorder.ts';
import { History } from '../../src/tools/jepsen/history.ts';
import { FakeDlmServer } from '../support/fake-dlm-server.ts';

/**
 * The run's history of session calls comes from the client library's call observer:
 * one op per call (not per attempt), with the request id the server saw, the index its
 * answer named, and `fail` only where the client knows the call took no effect.
 */
let server: FakeDlmServer | null = null;
let client: DlmClient | null = null;
afterEach(async () => {
  client?.close();
  await server?.close();
});

const TTL_MS = 1_200;
const header = (index: number) => ({ header: { index: String(index) } });

describe('recording a client calls into the history', () => {
  it('records the session calls and names the acquire and release ops the loop made', async () => {
    let keepAlives = 0;
    server = await FakeDlmServer.start((method) => {
      switch (method) {
        case 'OpenSession':
          return { response: { ...header(2), session_id: '2', ttl_ms: String(TTL_MS) } };
        case 'KeepAlive':
          // The first attempt of the first keepalive is refused: the call is retried.
          keepAlives++;
          if (keepAlives === 1) return { status: grpc.status.UNAVAILABLE };
          if (keepAlives === 2) return { response: { ...header(6), ttl_ms: String(TTL_MS) } };
          return {
            status: grpc.status.NOT_FOUND,
            trailers: { [ERROR_CODE_KEY]: 'sessionNotFound' },
          };
        case 'Acquire':
          return { response: { ...header(4), acquired: true, fencing_token: '4', holders: [] } };
        default:
          return { response: header(7) };
      }
    });
    const history = new History();
    const recorder = new CallRecorder(history, 'c0');
    client = new DlmClient({ endpoints: [server.address], onCall: recorder.observer });
    const session = await client.openSession({ ttlMs: TTL_MS });
    const acquire = history.invoke('c0', 'acquire', 'L', { session: session.id, owner: 'c0#1' });
    const handle = await recorder.during(acquire, () => session.acquire('L', { owner: 'c0#1' }));
    const release = history.invoke('c0', 'release', 'L', { session: '2', token: handle.token });
    await recorder.during(release, () => handle.release());
    // Keepalives come every TTL / 3: the first retried then answered, the second refused,
    // which ends the session.
    await new Promise((resolve) => session.signal.addEventListener('abort', resolve));
    await session.close();

    const sent = (method: string) =>
      server?.calls.filter((call) => call.method === method).map((call) => call.request.request_id);
    const ops = history.ops.map((op) => [op.kind, op.outcome, op.session, op.answerIndex]);
    expect(ops).toEqual([
      ['open-session', 'ok', '2', 2],
      ['acquire', 'info', '2', 4], // completed by the loop, not the recorder
      ['release', 'info', '2', 7],
      ['keep-alive', 'ok', '2', 6],
      ['keep-alive', 'fail', '2', undefined],
      ['close-session', 'ok', '2', 7],
    ]);
    expect(keepAlives).toBe(3); // Two calls, three attempts: one op per call.
    expect(history.ops[0]?.ttlMs).toBe(TTL_MS);
    expect(history.ops[0]?.requestId).toBe(sent('OpenSession')?.[0]);
    expect(acquire.requestId).toBe(sent('Acquire')?.[0]);
    expect(release.requestId).toBe(sent('Release')?.[0]);
    expect(history.ops[5]?.requestId).toBe(sent('CloseSession')?.[0]);
  });

  it("gives an op its own call only: a settle's later Acquire with the same owner is not it", async () => {
    const history = new History();
    const recorder = new CallRecorder(history, 'c0');
    const op = history.invoke('c0', 'acquire', 'L', { session: '2', owner: 'c0#0' });
    const call = (requestId: string, index: number) =>
      recorder.observer({
        service: 'Lock',
        method: 'Acquire',
        request: { owner: 'c0#0', request_id: requestId },
      })({ response: { ...header(index), acquired: true } });
    await recorder.during(op, async () => {
      call('r-1', 4);
      call('r-1', 9); // the settle re-issues the same request later
    });
    call('r-1', 11); // after the loop's call ended
    expect([op.requestId, op.answerIndex]).toEqual(['r-1', 4]);
    expect(history.ops).toHaveLength(1);
  });

  it('records a call whose answer never came as info, with no answer index', async () => {
    server = await FakeDlmServer.start(() => ({ status: grpc.status.UNAVAILABLE }));
    const history = new History();
    const recorder = new CallRecorder(history, 'c0');
    client = new DlmClient({
      endpoints: [server.address],
      onCall: recorder.observer,
      retryDelayMsMax: 20,
    });
    await expect(client.openSession({ ttlMs: TTL_MS, callTimeoutMs: 300 })).rejects.toThrow();
    expect(history.ops.map((op) => [op.kind, op.outcome, op.completeMs, op.answerIndex])).toEqual([
      ['open-session', 'info', null, undefined],
    ]);
  });
});
