import { EventEmitter } from 'node:events';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { type ApiContext, CallGate, DEFAULT_API_OPTIONS } from '../../src/api/context.ts';
import { EventHub } from '../../src/api/event-hub.ts';
import { LOCK_CALLS } from '../../src/api/lock-service.ts';
import { SessionStreams } from '../../src/api/session-stream.ts';
import type { DlmNode } from '../../src/node/node.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually } from './harness.ts';

/**
 * A Session stream whose client does not read: its answers wait unsent, and once the
 * stream's bound of them is reached the node ends it RESOURCE_EXHAUSTED with a retry
 * hint. That status is the stream's, not an answer to its calls in flight: the client
 * retries them, their outcome unknown (test/client/call-stream.test.ts). The call whose
 * answer found the buffer full was answered already, as far as its handler knows: a grant in that answer
 * must be given back through the log, or it stays with the session, unknown to its
 * client, until the session ends. (From review finding 2 of the Session stream.)
 *
 * The stream is a stand-in for grpc-js's: a real client that stops reading fills the
 * HTTP/2 windows first, and only after tens of kilobytes of answers does the server's
 * buffer grow, at a moment no test can pick. What is under test is what SessionStream
 * does when its buffer is full; the node behind it, its log and its API are real.
 */
let cluster: ApiCluster | null = null;
const hubs: EventHub[] = [];

afterEach(async () => {
  for (const hub of hubs.splice(0)) hub.close();
  await cluster?.stop();
  cluster = null;
});

/** A duplex stream whose client reads nothing: every answer written stays in its buffer. */
class UnreadStream extends EventEmitter {
  writableLength = 0;
  readonly written: Record<string, unknown>[] = [];
  readonly errors: unknown[] = [];

  constructor() {
    super();
    // What grpc-js does with an emitted 'error': ends the stream with that status.
    this.on('error', (error) => this.errors.push(error));
  }

  write(response: Record<string, unknown>): boolean {
    this.written.push(response);
    this.writableLength++;
    return true;
  }

  end(): void {}
}

interface Setup {
  readonly c: ApiCluster;
  readonly leader: NodeId;
  readonly stream: UnreadStream;
  /** Sends an Acquire of `lock` by `sessionId` as call `callId`. */
  readonly acquire: (callId: string, lock: string, sessionId: string, waitMs?: number) => void;
  /** Sends a KeepAlive of `sessionId` as call `callId`. */
  readonly keepAlive: (callId: string, sessionId: string) => void;
}

/** A stream on the leader that holds at most two answers unsent before it is ended. */
async function unreadStream(): Promise<Setup> {
  const c = await ApiCluster.start();
  cluster = c;
  const leader = await c.leaderId();
  const node = c.nodes.get(leader) as DlmNode;
  const events = new EventHub(node, () => {});
  hubs.push(events);
  const context: ApiContext = {
    node,
    events,
    logger: () => {},
    gate: new CallGate(100),
    options: {
      ...DEFAULT_API_OPTIONS,
      // At most 1 + 1 calls in flight, so at most two answers may wait unsent.
      sessionStreamCallsInFlightMax: 1,
      sessionStreamWaitsInFlightMax: 1,
    },
  };
  const stream = new UnreadStream();
  const call = stream as unknown as Parameters<SessionStreams['serve']>[2];
  new SessionStreams().serve(context, LOCK_CALLS, call);
  const acquire = (callId: string, lock: string, sessionId: string, waitMs = 0) =>
    stream.emit('data', {
      call_id: callId,
      timeout_ms: '0',
      traceparent: '',
      call: 'acquire',
      acquire: {
        lock,
        session_id: sessionId,
        mode: 'EXCLUSIVE',
        wait_ms: String(waitMs),
        request_id: c.requestId(),
        owner: 'unread',
        max_hold_ms: '0',
        lock_delay_ms: '0',
      },
    });
  const keepAlive = (callId: string, sessionId: string) =>
    stream.emit('data', {
      call_id: callId,
      timeout_ms: '0',
      traceparent: '',
      call: 'keep_alive',
      keep_alive: { session_id: sessionId },
    });
  return { c, leader, stream, acquire, keepAlive };
}

/**
 * Two answers the client does not read: the stream's buffer is at its bound. KeepAlives,
 * which a waiting Acquire (bounded apart) does not keep off the stream.
 */
async function fillBuffer({ stream, keepAlive }: Setup, sessionId: string): Promise<void> {
  keepAlive('1', sessionId);
  await eventually(async () => stream.written.length === 1, 5_000);
  keepAlive('2', sessionId);
  await eventually(async () => stream.written.length === 2, 5_000);
  expect(stream.written.filter((each) => 'error' in each)).toEqual([]);
}

/** The stream was ended as backpressure, and the answer to `victim` never went out. */
function expectEndedUnanswered(stream: UnreadStream, victim: string): void {
  const ended = stream.errors[0] as { code: number; metadata: { get(key: string): unknown[] } };
  expect(ended.code).toBe(status.RESOURCE_EXHAUSTED);
  expect(ended.metadata.get('dlm-retry-after-ms').length).toBe(1);
  expect(stream.written.map((each) => each.call_id)).not.toContain(victim);
}

/** The grant is withdrawn through the log: the lock ends up free (else: who holds it). */
async function expectFree(c: ApiCluster, leader: NodeId, lock: string): Promise<void> {
  const state = async () => {
    const { holders, waiters } = await c.at(leader).lock.call('Describe', { lock });
    return { holders, waiters };
  };
  await eventually(async () => {
    const { holders, waiters } = await state();
    return holders.length === 0 && waiters.length === 0;
  }, 5_000).catch(() => {});
  expect(await state()).toEqual({ holders: [], waiters: [] });
}

describe('a Session stream ended because its client does not read', () => {
  it('gives back an Acquire granted at once whose answer found the buffer full', async () => {
    const setup = await unreadStream();
    const { c, leader, stream, acquire } = setup;
    const sessionId = await c.openSession(leader, 60_000);
    await fillBuffer(setup, sessionId);
    // The grant applies; its answer finds the buffer full and the stream is ended.
    acquire('3', 'unread/victim', sessionId);
    await eventually(async () => stream.errors.length === 1, 5_000);
    expectEndedUnanswered(stream, '3');
    await expectFree(c, leader, 'unread/victim');
  }, 20_000);

  it('gives back a waiting Acquire granted later, whose answer found the buffer full', async () => {
    const setup = await unreadStream();
    const { c, leader, stream, acquire } = setup;
    const holder = await c.openSession(leader, 60_000);
    const sessionId = await c.openSession(leader, 60_000);
    const held = await c.at(leader).lock.call('Acquire', {
      lock: 'unread/victim',
      session_id: holder,
      request_id: c.requestId(),
    });
    acquire('3', 'unread/victim', sessionId, 60_000);
    await eventually(async () => {
      const described = await c.at(leader).lock.call('Describe', { lock: 'unread/victim' });
      return described.waiters.length === 1;
    }, 5_000);
    await fillBuffer(setup, sessionId);
    // The release grants the waiter; that answer finds the buffer full.
    await c.at(leader).lock.call('Release', {
      lock: 'unread/victim',
      session_id: holder,
      fencing_token: held.fencing_token,
      request_id: c.requestId(),
    });
    await eventually(async () => stream.errors.length === 1, 5_000);
    expectEndedUnanswered(stream, '3');
    await expectFree(c, leader, 'unread/victim');
  }, 20_000);
});
