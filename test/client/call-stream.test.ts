import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { CallStream } from '../../src/client/call-stream.ts';
import { performanceClock } from '../../src/client/clock.ts';
import {
  DlmClientError,
  ERROR_CODE_KEY,
  LEADER_HINT_KEY,
  RETRY_AFTER_KEY,
} from '../../src/client/index.ts';

/**
 * What a call learns when its Session stream ends unanswered: never the stream's status
 * as its own answer. Whatever ended the stream (a lost connection, an answer over
 * grpc-js's receive limit, a node ending it because its client does not read), the call
 * may have applied, so it fails UNAVAILABLE: not decisive, not "nothing was done",
 * retried with the same request id. (Review finding 1 of the stream-fix branch, and its
 * note on streams the node ends for unread answers.)
 */

/** A grpc-js client whose one Session stream the test ends with a status of its choice. */
function fakeClient(): { client: grpc.Client; stream: EventEmitter } {
  const stream = Object.assign(new EventEmitter(), { write: () => true, cancel: () => {} });
  const identity = { path: '/dlm.v1.Lock/Session', requestSerialize: () => Buffer.alloc(0) };
  class FakeLock {
    static readonly service = { Session: { ...identity, responseDeserialize: () => ({}) } };
    makeBidiStreamRequest() {
      return stream;
    }
  }
  return { client: new FakeLock() as unknown as grpc.Client, stream };
}

function metadata(entries: Record<string, string>): grpc.Metadata {
  const result = new grpc.Metadata();
  for (const [key, value] of Object.entries(entries)) result.set(key, value);
  return result;
}

const ENDS: { name: string; status: grpc.StatusObject; retryAfterMs: number | null }[] = [
  {
    name: "grpc-js's receive limit (RESOURCE_EXHAUSTED, no dlm trailers)",
    status: {
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: 'Received message larger than max (4263947 vs 4194304)',
      metadata: new grpc.Metadata(),
    },
    retryAfterMs: null,
  },
  {
    name: 'the node, for answers left unread (RESOURCE_EXHAUSTED with a retry hint)',
    status: {
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: 'the client let 2 answers wait unread on its Session stream',
      metadata: metadata({ [ERROR_CODE_KEY]: 'RESOURCE_EXHAUSTED', [RETRY_AFTER_KEY]: '100' }),
    },
    retryAfterMs: 100,
  },
  {
    name: 'the node, for a request it cannot pin on a call (INVALID_ARGUMENT)',
    status: {
      code: grpc.status.INVALID_ARGUMENT,
      details: 'SessionRequest.call_id: must not be 0',
      metadata: metadata({ [ERROR_CODE_KEY]: 'invalidArgument' }),
    },
    retryAfterMs: null,
  },
  {
    name: 'a node draining (OK with calls unanswered)',
    status: { code: grpc.status.OK, details: 'OK', metadata: new grpc.Metadata() },
    retryAfterMs: null,
  },
];

describe('a call whose Session stream ends unanswered', () => {
  it.each(ENDS)('(ended by $name) has an unknown outcome and is retried', async (end) => {
    const { client, stream } = fakeClient();
    const calls = new CallStream(client, performanceClock, 1_000);
    const deadlineMs = performanceClock.nowMs() + 5_000;
    const released = calls.call('Release', {}, deadlineMs).catch((error: unknown) => error);
    const kept = calls.call('KeepAlive', {}, deadlineMs).catch((error: unknown) => error);
    stream.emit('status', end.status);
    for (const failed of await Promise.all([released, kept])) {
      const error = DlmClientError.from(failed, 'call');
      expect({
        status: error.status,
        errorCode: error.errorCode,
        decisive: error.decisive,
        notApplied: error.notApplied,
        retryable: error.retryable,
        retryAfterMs: error.retryAfterMs,
      }).toEqual({
        status: grpc.status.UNAVAILABLE,
        errorCode: null,
        decisive: false,
        notApplied: false,
        retryable: true,
        retryAfterMs: end.retryAfterMs,
      });
      expect(error.message).toContain(end.status.details);
    }
  });

  it('keeps the leader hint of the stream', async () => {
    const { client, stream } = fakeClient();
    const calls = new CallStream(client, performanceClock, 1_000);
    const failed = calls.call('Acquire', {}, performanceClock.nowMs() + 5_000).catch((e) => e);
    stream.emit('status', {
      code: grpc.status.UNAVAILABLE,
      details: 'not the leader',
      metadata: metadata({ [ERROR_CODE_KEY]: 'UNAVAILABLE', [LEADER_HINT_KEY]: '2' }),
    });
    expect(DlmClientError.from(await failed, 'Acquire').leaderHint).toBe('2');
  });
});
