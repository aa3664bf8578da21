import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DlmClient,
  DlmClientError,
  ERROR_CODE_KEY,
  RETRY_AFTER_KEY,
  type Session,
} from '../../src/client/index.ts';
import { type FakeAnswer, FakeDlmServer } from '../support/fake-dlm-server.ts';

/**
 * Which failed Acquires the session settles, and how a settle ends, against a scripted
 * server (test/client/settle.test.ts shows the real race against a real cluster).
 */
let server: FakeDlmServer | null = null;
let client: DlmClient | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  await server?.close();
  server = null;
});

type Wire = Record<string, unknown>;

const refused = (code: grpc.status, trailers: Record<string, string> = {}): FakeAnswer => ({
  status: code,
  trailers: { [ERROR_CODE_KEY]: grpc.status[code] ?? '', ...trailers },
});

/**
 * A node that keeps session 1 alive, answers the Acquires that wait (the tests'; the
 * attempts of all of them in turn) with `original`, the last answer repeated, and those
 * that do not (the settles') with `reissue`.
 */
async function scripted(
  original: readonly FakeAnswer[],
  reissue: (request: Wire) => FakeAnswer,
  options: { settleAttemptsMax?: number; settleAttemptTimeoutMs?: number } = {},
): Promise<{ session: Session; fake: FakeDlmServer; errors: Error[] }> {
  let attempts = 0;
  server = await FakeDlmServer.start((method, request) => {
    switch (method) {
      case 'OpenSession':
        return { response: { session_id: '1', ttl_ms: request.ttl_ms } };
      case 'KeepAlive':
        return { response: { ttl_ms: '10000' } };
      case 'CloseSession':
      case 'Release':
        return { response: { released: true } };
      case 'Acquire': {
        if (request.wait_ms === '0') return reissue(request);
        const answer = original[Math.min(attempts, original.length - 1)];
        attempts++;
        if (answer === undefined) throw new Error('no answer scripted');
        return answer;
      }
      default:
        return refused(grpc.status.UNIMPLEMENTED);
    }
  });
  client = new DlmClient({
    endpoints: [server.address],
    // The answers are scripted per unary call; the fallback from the stream
    // (routing.test.ts) would only spend the tight budgets below on a cold first call.
    transport: 'unary',
    retryDelayMsMin: 5,
    retryDelayMsMax: 10,
    settleAttemptTimeoutMs: options.settleAttemptTimeoutMs ?? 200,
    settleAttemptsMax: options.settleAttemptsMax ?? 3,
  });
  const errors: Error[] = [];
  const session = await client.openSession({
    ttlMs: 10_000,
    callTimeoutMs: 300,
    onError: (error) => errors.push(error),
  });
  return { session, fake: server, errors };
}

/** Tests' Acquires wait, so the fake tells them from the settles' re-issues (wait_ms 0). */
const WAIT = { waitMs: 1 };
const notAcquired: FakeAnswer = { response: { acquired: false, holders: [] } };
// A retry hint past the call's deadline: the call ends on this answer, not on a timeout.
const backpressure = refused(grpc.status.RESOURCE_EXHAUSTED, { [RETRY_AFTER_KEY]: '1000' });

describe('which failed Acquires are settled', () => {
  const cases: { name: string; answers: FakeAnswer[]; settles: boolean }[] = [
    { name: 'DEADLINE_EXCEEDED', answers: [refused(grpc.status.DEADLINE_EXCEEDED)], settles: true },
    {
      name: 'UNAVAILABLE until the deadline',
      answers: [refused(grpc.status.UNAVAILABLE)],
      settles: true,
    },
    { name: 'INTERNAL', answers: [refused(grpc.status.INTERNAL)], settles: true },
    { name: 'CANCELLED', answers: [refused(grpc.status.CANCELLED)], settles: true },
    {
      name: 'backpressure after an UNAVAILABLE (the first attempt may have applied)',
      answers: [refused(grpc.status.UNAVAILABLE), backpressure],
      settles: true,
    },
    { name: 'backpressure only', answers: [backpressure], settles: false },
    { name: 'INVALID_ARGUMENT', answers: [refused(grpc.status.INVALID_ARGUMENT)], settles: false },
    { name: 'NOT_FOUND', answers: [refused(grpc.status.NOT_FOUND)], settles: false },
    {
      name: 'FAILED_PRECONDITION after an UNAVAILABLE (decisive: the retry shares its outcome)',
      answers: [refused(grpc.status.UNAVAILABLE), refused(grpc.status.FAILED_PRECONDITION)],
      settles: false,
    },
    {
      // What grpc-js fails a call with whose answer is over its receive limit: that
      // answer may have been a grant.
      name: 'RESOURCE_EXHAUSTED with no dlm-error-code (no node sent it)',
      answers: [{ status: grpc.status.RESOURCE_EXHAUSTED, trailers: {} }],
      settles: true,
    },
    {
      name: 'limitReached (the state machine refused it)',
      answers: [refused(grpc.status.RESOURCE_EXHAUSTED, { [ERROR_CODE_KEY]: 'limitReached' })],
      settles: false,
    },
  ];
  for (const { name, answers, settles } of cases) {
    it(`${name}: ${settles ? 'settled' : 'not settled'}`, async () => {
      const { session } = await scripted(answers, () => notAcquired);
      const error = await session.acquire('rules/x', WAIT).catch((caught) => caught);
      expect(error).toBeInstanceOf(DlmClientError);
      expect((error as DlmClientError).outcomeUnknown).toBe(settles);
      const outcomes = await session.settled();
      expect(outcomes.map((outcome) => outcome.result)).toEqual(settles ? ['notHeld'] : []);
    });
  }
});

describe('how a settle ends', () => {
  it('releases a grant it finds, with the token the cluster answered', async () => {
    const { session, fake } = await scripted([refused(grpc.status.DEADLINE_EXCEEDED)], () => ({
      response: { acquired: true, fencing_token: '42', holders: [] },
    }));
    await expect(session.acquire('rules/found', WAIT)).rejects.toBeInstanceOf(DlmClientError);
    expect(await session.settled()).toMatchObject([{ lock: 'rules/found', result: 'released' }]);
    const releases = fake.calls.filter((call) => call.method === 'Release');
    expect(releases.map((call) => call.request)).toMatchObject([
      { lock: 'rules/found', session_id: '1', fencing_token: '42' },
    ]);
    const reissued = fake.calls.filter(
      (call) => call.method === 'Acquire' && call.request.wait_ms === '0',
    );
    expect(reissued).toHaveLength(1);
  });

  it('re-issues with the same request id and wait_ms 0', async () => {
    const { session, fake } = await scripted([refused(grpc.status.INTERNAL)], () => notAcquired);
    await expect(
      session.acquire('rules/same-id', { waitMs: 5, owner: 'me', mode: 'SHARED' }),
    ).rejects.toBeInstanceOf(DlmClientError);
    await session.settled();
    const [first, again] = fake.calls
      .filter((call) => call.method === 'Acquire')
      .map((call) => call.request);
    expect(again).toEqual({ ...first, wait_ms: '0' });
  });

  it('leaves alone a grant a live handle of the session carries', async () => {
    // The second acquire() fails; its re-issue finds the grant the session holds
    // already, as re-acquiring a held lock returns it.
    const grant: FakeAnswer = { response: { acquired: true, fencing_token: '7', holders: [] } };
    const { session, fake } = await scripted(
      [grant, refused(grpc.status.DEADLINE_EXCEEDED)],
      () => grant,
    );
    const handle = await session.acquire('rules/held', WAIT);
    await expect(session.acquire('rules/held', WAIT)).rejects.toBeInstanceOf(DlmClientError);
    expect(await session.settled()).toMatchObject([{ result: 'heldByHandle' }]);
    expect(fake.count('Release')).toBe(0);
    expect(handle.token).toBe('7');
  });

  it('gives up after settleAttemptsMax attempts and reports it to onError', async () => {
    const { session, fake, errors } = await scripted(
      [refused(grpc.status.DEADLINE_EXCEEDED)],
      () => refused(grpc.status.INTERNAL),
      { settleAttemptsMax: 3 },
    );
    await expect(session.acquire('rules/stuck', WAIT)).rejects.toBeInstanceOf(DlmClientError);
    expect(await session.settled()).toMatchObject([{ result: 'unsettled' }]);
    const reissued = fake.calls.filter(
      (call) => call.method === 'Acquire' && call.request.wait_ms === '0',
    );
    expect(reissued).toHaveLength(3);
    expect(errors.map((error) => error.message)).toEqual([
      expect.stringMatching(/could not settle .* rules\/stuck: session 1 may hold it/),
    ]);
  });

  it('close() ends a settle that is still trying, at once', async () => {
    const { session, errors } = await scripted(
      [refused(grpc.status.DEADLINE_EXCEEDED)],
      () => refused(grpc.status.UNAVAILABLE),
      { settleAttemptsMax: 1_000, settleAttemptTimeoutMs: 5_000 },
    );
    await expect(session.acquire('rules/closing', WAIT)).rejects.toBeInstanceOf(DlmClientError);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const settling = session.settled();
    const startedMs = performance.now();
    await session.close();
    expect(await settling).toMatchObject([{ result: 'sessionClosed' }]);
    expect(performance.now() - startedMs).toBeLessThan(500);
    expect(errors).toEqual([]);
  });

  it('an Acquire refused by a closed client was never sent: nothing to settle', async () => {
    const { session } = await scripted([notAcquired], () => notAcquired);
    client?.close();
    const error = await session.acquire('rules/closed-client', WAIT).catch((caught) => caught);
    expect(error).toMatchObject({ status: grpc.status.CANCELLED, outcomeUnknown: false });
    expect(await session.settled()).toEqual([]);
  });

  it('another acquire() of the lock waits for its settle, which would release the grant it returns', async () => {
    // The cluster's side of one lock: a re-acquire by the holding session returns its grant.
    let grant: string | null = null;
    let nextToken = 5;
    const released: string[] = [];
    const take = (): FakeAnswer => {
      grant ??= String(nextToken++);
      return { response: { acquired: true, fencing_token: grant, holders: [] } };
    };
    let first = true;
    server = await FakeDlmServer.start(async (method, request) => {
      switch (method) {
        case 'OpenSession':
          return { response: { session_id: '1', ttl_ms: request.ttl_ms } };
        case 'Acquire':
          if (request.wait_ms === '0') {
            await sleep(50);
            return take();
          }
          if (first) {
            // Granted, but the answer is lost.
            first = false;
            take();
            return refused(grpc.status.DEADLINE_EXCEEDED);
          }
          return take();
        case 'Release':
          // Slow to apply: a re-acquire in between would still get this grant.
          await sleep(300);
          released.push(String(request.fencing_token));
          if (grant === request.fencing_token) grant = null;
          return { response: { released: true } };
        default:
          return { response: {} };
      }
    });
    client = new DlmClient({ endpoints: [server.address] });
    // A call shorter than an attempt: the DEADLINE_EXCEEDED ends it, with no retry.
    const session = await client.openSession({ ttlMs: 10_000, callTimeoutMs: 300 });
    await expect(session.acquire('rules/reacquire', WAIT)).rejects.toBeInstanceOf(DlmClientError);
    await sleep(100);
    const handle = await session.acquire('rules/reacquire', WAIT);
    expect(await session.settled()).toEqual([]);
    expect(released).toEqual(['5']);
    expect(handle.token).toBe('6');
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
