import * as grpc from '@grpc/grpc-js';
import { type MonotonicClock, setLongTimeout } from './clock.ts';
import { ERROR_CODE_KEY, LEADER_HINT_KEY, RETRY_AFTER_KEY } from './errors.ts';

/**
 * The session calls to one node over one long-lived Lock.Session stream (see its
 * comment in proto/dlm.proto): a message each way per call instead of a unary call
 * each, which costs both sides a fraction of the CPU.
 *
 * To the connection a call here looks exactly like a unary call: it resolves with the
 * response message, or rejects with a grpc.ServiceError-shaped error carrying the
 * status, message and trailers (dlm-error-code, dlm-leader-hint, dlm-retry-after-ms)
 * that a unary call would have failed with, so DlmClientError, retries, leader hints
 * and settling work unchanged. A call whose deadline passes fails DEADLINE_EXCEEDED
 * (the node times it out too, from timeout_ms); an aborted one sends a cancel and fails
 * CANCELLED. If the stream ends, every call in flight on it fails with StreamEnded, like
 * a unary call cut off mid-flight: its outcome is unknown. The next call opens a new
 * stream.
 */

type Response = Record<string, unknown>;

/** The SessionRequest / SessionResponse field of each Lock method a stream carries. */
export const STREAM_FIELDS: Readonly<Record<string, string>> = {
  OpenSession: 'open_session',
  KeepAlive: 'keep_alive',
  CloseSession: 'close_session',
  Acquire: 'acquire',
  Release: 'release',
  ValidateFence: 'validate_fence',
  Describe: 'describe',
};

type Stream = grpc.ClientDuplexStream<object, Response>;

/** The node has no Lock.Session (an older server): nothing sent on the stream reached a handler. */
export class StreamUnimplemented extends Error {
  override readonly name = 'StreamUnimplemented';
}

/**
 * The stream ended before the call was answered. The stream's status is not the call's
 * answer: grpc-js ends the whole stream RESOURCE_EXHAUSTED when any one answer on it is
 * over the receive limit, and a node ends it when its client does not read its answers
 * or sent a request it cannot pin on a call. Read as the call's own, such a status says
 * "the state machine refused it" (DlmClientError.decisive) or "nothing was done"
 * (backpressure) of a call whose request may have applied, or whose answer (a grant) was
 * on its way. So every call the stream carried fails UNAVAILABLE, as a unary call cut off
 * mid-flight: outcome unknown, retried with the same request id. Of the stream's
 * trailers only the hints are kept (where the leader is, when to try again), not its
 * dlm-error-code.
 */
export class StreamEnded extends Error implements grpc.ServiceError {
  override readonly name = 'StreamEnded';
  readonly code = grpc.status.UNAVAILABLE;
  readonly details: string;
  readonly metadata = new grpc.Metadata();

  constructor(status: grpc.StatusObject) {
    const statusName = grpc.status[status.code] ?? String(status.code);
    const details = `the Session stream ended (${statusName}: ${status.details})`;
    super(details);
    this.details = details;
    for (const key of [LEADER_HINT_KEY, RETRY_AFTER_KEY]) {
      for (const value of status.metadata?.get(key) ?? []) this.metadata.add(key, value);
    }
  }
}

interface PendingCall {
  /** The stream the call was sent on: only its end fails the call. */
  readonly stream: Stream;
  readonly resolve: (response: Response) => void;
  readonly reject: (error: grpc.ServiceError | StreamUnimplemented) => void;
  readonly stopTimer: () => void;
  readonly cleanup: () => void;
}

export class CallStream {
  private stream: Stream | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  /** One entry per call awaiting its answer; each ends by answer, deadline, abort or stream end. */
  private readonly pending = new Map<string, PendingCall>();
  /** Never reused on a stream, so a late answer to a given-up call cannot be misread. */
  private callSequence = 0;

  constructor(
    private readonly client: grpc.Client,
    private readonly clock: MonotonicClock,
    /**
     * An open stream is an active call, which keeps the process alive (grpc-js refs the
     * connection), where idle unary channels do not. So a stream with no call in flight
     * for this long is half-closed: a program that is done exits, as with unary calls,
     * even if it forgot DlmClient.close().
     */
    private readonly idleCloseMs: number,
  ) {}

  call(
    method: string,
    request: object,
    deadlineMs: number,
    signal?: AbortSignal,
  ): Promise<Response> {
    const field = STREAM_FIELDS[method];
    if (field === undefined)
      return Promise.reject(new Error(`Lock.Session does not carry ${method}`));
    const stream = this.open();
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    const callId = String(++this.callSequence);
    const timeoutMs = Math.max(1, Math.ceil(deadlineMs - this.clock.nowMs()));
    return new Promise((resolve, reject) => {
      const abort = (): void => {
        if (!this.pending.has(callId)) return;
        this.settle(callId)?.reject(localError(grpc.status.CANCELLED, `call ${callId} cancelled`));
        if (this.stream === stream) stream.write({ call_id: callId, cancel: {} });
      };
      const stopTimer = setLongTimeout(() => {
        this.settle(callId)?.reject(
          localError(grpc.status.DEADLINE_EXCEEDED, `deadline of ${timeoutMs} ms exceeded`),
        );
      }, timeoutMs);
      signal?.addEventListener('abort', abort, { once: true });
      const cleanup = (): void => signal?.removeEventListener('abort', abort);
      this.pending.set(callId, { stream, resolve, reject, stopTimer, cleanup });
      stream.write({ call_id: callId, timeout_ms: String(timeoutMs), [field]: request });
    });
  }

  /** Ends the stream; the calls in flight fail CANCELLED (the node gives them up too). */
  close(): void {
    const stream = this.stream;
    this.stream = null;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    stream?.cancel();
    const error = localError(grpc.status.CANCELLED, 'the dlm client was closed');
    for (const callId of [...this.pending.keys()]) this.settle(callId)?.reject(error);
  }

  private open(): Stream {
    if (this.stream !== null) return this.stream;
    const codec = codecOf(this.client);
    const stream = this.client.makeBidiStreamRequest(
      codec.path,
      codec.requestSerialize,
      codec.responseDeserialize,
    );
    stream.on('data', (response: Response) => this.answer(response));
    // 'status' comes last, whether the stream ended cleanly or failed.
    stream.on('status', (status: grpc.StatusObject) => this.ended(stream, status));
    stream.on('error', () => {}); // reported through 'status'
    this.stream = stream;
    return stream;
  }

  private answer(response: Response): void {
    const call = this.settle(String(response.call_id));
    if (call === undefined) return; // given up already (deadline, abort)
    const result = typeof response.result === 'string' ? response.result : '';
    const error = response.error as Record<string, unknown> | undefined;
    if (result === 'error' && error !== undefined) call.reject(remoteError(error));
    else call.resolve((response[result] ?? {}) as Response);
  }

  private ended(stream: Stream, status: grpc.StatusObject): void {
    if (this.stream === stream) this.stream = null;
    const error =
      status.code === grpc.status.UNIMPLEMENTED
        ? new StreamUnimplemented(status.details)
        : new StreamEnded(status);
    for (const [callId, call] of [...this.pending]) {
      if (call.stream === stream) this.settle(callId)?.reject(error);
    }
  }

  private settle(callId: string): PendingCall | undefined {
    const call = this.pending.get(callId);
    if (call === undefined) return undefined;
    this.pending.delete(callId);
    call.stopTimer();
    call.cleanup();
    if (this.pending.size === 0) this.closeWhenIdle();
    return call;
  }

  private closeWhenIdle(): void {
    if (this.idleTimer !== null || this.stream === null) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      const stream = this.stream;
      if (stream === null || this.pending.size > 0) return;
      // The next call opens a new stream. Cancelled, not half-closed: with no call in
      // flight nothing is given up, and a node that is frozen or gone never answers a
      // half-close, which would hold the stream, and the process, open.
      this.stream = null;
      stream.cancel();
    }, this.idleCloseMs);
    this.idleTimer.unref();
  }
}

/** An error of this side (deadline, cancel): no dlm trailers, as grpc-js makes them. */
export function localError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/** A SessionCallError as the error a unary call would have failed with. */
function remoteError(error: Record<string, unknown>): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  const text = (key: string): string => String(error[key] ?? '');
  if (text('error_code') !== '') metadata.set(ERROR_CODE_KEY, text('error_code'));
  if (text('leader_hint') !== '') metadata.set(LEADER_HINT_KEY, text('leader_hint'));
  if (!['', '0'].includes(text('retry_after_ms')))
    metadata.set(RETRY_AFTER_KEY, text('retry_after_ms'));
  const code = Number(error.code ?? grpc.status.UNKNOWN);
  return Object.assign(new Error(text('message')), { code, details: text('message'), metadata });
}

interface Codec {
  readonly path: string;
  readonly requestSerialize: (value: object) => Buffer;
  readonly responseDeserialize: (bytes: Buffer) => Response;
}

/** The loaded Session method's codec, from the service client's own definition. */
function codecOf(client: grpc.Client): Codec {
  const service = (client.constructor as unknown as { service?: Record<string, Codec> }).service;
  const method = service?.Session;
  if (method === undefined) throw new Error('the loaded dlm.v1.Lock has no Session method');
  return method;
}
