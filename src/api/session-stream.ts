import type * as grpc from '@grpc/grpc-js';
import { DlmError, unavailable } from '../node/errors.ts';
import { REAL_SCHEDULER, setLongTimeout } from '../node/scheduler.ts';
import { continueTrace, type TraceContext } from '../node/trace.ts';
import { ANONYMOUS, type Authenticator, type Caller } from './auth/caller.ts';
import {
  type ApiContext,
  type CallOutcome,
  type CallScope,
  callFailureOf,
  GiveBack,
  serveCall,
} from './context.ts';
import {
  type CallFailure,
  failureServiceError,
  GRPC_STATUS_BY_CODE,
  invalidArgument,
} from './errors.ts';
import type { LockCalls } from './lock-service.ts';
import type { SessionCallError, SessionResponse } from './proto.ts';
import { describeValue, UndecodableRequest, uint64Text, uint64ToNumber } from './proto.ts';
import { UndecodableCall } from './session-wire.ts';

/**
 * Lock.Session: the calls of dlm.v1.Lock as messages on one bidirectional stream (see
 * the RPC's comment in proto/dlm.proto for the contract). Each call runs the very
 * function its unary RPC runs (LockCalls), through the same gate, trace and error
 * table (serveCall), so the two transports cannot answer differently.
 *
 * A call here has the scope a unary call has: it is cancelled when its timeout_ms
 * passes, when the client sends a cancel for it, or when the stream ends before it was
 * answered. A waiting Acquire whose scope is cancelled is withdrawn through the log,
 * exactly as when a unary caller goes away.
 */

type SessionCall = grpc.ServerDuplexStream<unknown, SessionResponse>;
type Method = keyof LockCalls;

/** The SessionRequest oneof field of each call, which is also its SessionResponse field. */
const METHOD_OF_FIELD: Readonly<Record<string, Method>> = {
  open_session: 'OpenSession',
  keep_alive: 'KeepAlive',
  close_session: 'CloseSession',
  acquire: 'Acquire',
  release: 'Release',
  validate_fence: 'ValidateFence',
  describe: 'Describe',
};

const FIELD_OF_METHOD = new Map(
  Object.entries(METHOD_OF_FIELD).map(([field, method]) => [method, field]),
);

const CANCEL_FIELD = 'cancel';

/**
 * The open Session streams of one API server, so that shutting down can drain them: a
 * unary client is turned away by the server's GOAWAY, but a stream already open would
 * go on taking calls while the node stops. Bounded by the streams the server holds open.
 */
export class SessionStreams {
  private readonly open = new Set<SessionStream>();
  private draining = false;

  serve(context: ApiContext, calls: LockCalls, call: SessionCall): void {
    const stream = new SessionStream(context, calls, call, () => this.open.delete(stream));
    this.open.add(stream);
    stream.start();
    if (this.draining) stream.drain();
  }

  /** New calls are refused UNAVAILABLE; each stream ends once its calls in flight are answered. */
  drain(): void {
    this.draining = true;
    for (const stream of this.open) stream.drain();
  }
}

/** One call on the stream: its scope, seen by the handler, and whether it was answered. */
class StreamCall implements CallScope {
  cancelled = false;
  caller: Caller = ANONYMOUS;
  answered = false;
  /** Cancels the timer of its timeout_ms, while one runs. */
  stopTimer: (() => void) | null = null;
  readonly undelivered = new GiveBack();
  private readonly listeners = new Set<() => void>();

  /** `waits`: an Acquire, which may wait in a lock's queue, counted apart (see SessionStream.refusal). */
  constructor(
    readonly waits: boolean,
    readonly trace: TraceContext,
  ) {}

  onCancelled(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onUndelivered(giveBack: () => void): void {
    this.undelivered.set(giveBack);
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    const listeners = [...this.listeners];
    this.listeners.clear();
    for (const listener of listeners) listener();
  }
}

interface DecodedRequest {
  readonly call_id?: unknown;
  readonly timeout_ms?: unknown;
  readonly traceparent?: unknown;
  readonly call?: unknown;
  readonly [field: string]: unknown;
}

class SessionStream {
  /**
   * Bounded by sessionStreamCallsInFlightMax plus sessionStreamWaitsInFlightMax: a call
   * past its bound is refused, never queued.
   */
  private readonly inFlight = new Map<string, StreamCall>();
  /** How many of inFlight are Acquires (see mayWait). */
  private waitsInFlight = 0;
  private readonly scheduler;
  private readonly callsMax: number;
  private readonly waitsMax: number;
  /** As many as can be answered at once: a client that reads is never cut off for a burst. */
  private readonly answersUnsentMax: number;
  /** The client half-closed, or the server is shutting down: answer what is in flight, then end with OK. */
  private halfClosed = false;
  /** The server is shutting down: new calls are refused UNAVAILABLE, so clients go elsewhere. */
  private draining = false;
  private ended = false;

  constructor(
    private readonly context: ApiContext,
    private readonly calls: LockCalls,
    private readonly stream: SessionCall,
    private readonly onEnded: () => void,
  ) {
    this.scheduler = context.scheduler ?? REAL_SCHEDULER;
    this.callsMax = context.options.sessionStreamCallsInFlightMax;
    this.waitsMax = context.options.sessionStreamWaitsInFlightMax;
    this.answersUnsentMax = this.callsMax + this.waitsMax;
    // Once per stream (and per policy): every call on it is the stream's caller's.
    const auth = context.auth;
    if (auth !== undefined) this.authenticate(auth);
  }

  /**
   * The stream's caller, authenticated when the stream opened, and again once the policy
   * was replaced since (its token may be gone); null: open cluster, anonymous.
   */
  private authenticated: { readonly generation: number; readonly caller: Promise<Caller> } | null =
    null;

  private authenticate(auth: Authenticator): Promise<Caller> {
    const caller = auth.authenticate(this.stream);
    // Each call awaits it (and answers its refusal); none may be left unhandled.
    caller.catch(() => {});
    this.authenticated = { generation: auth.generation, caller };
    return caller;
  }

  start(): void {
    this.stream.on('data', (message: unknown) => this.receive(message));
    this.stream.once('end', () => {
      this.halfClosed = true;
      this.finishIfDrained();
    });
    // The client cancelled the stream or its connection broke: nobody will read the answers.
    this.stream.once('cancelled', () => this.stop());
    this.stream.once('close', () => this.stop());
    this.stream.once('error', () => this.stop());
  }

  drain(): void {
    this.draining = true;
    this.halfClosed = true;
    this.finishIfDrained();
  }

  private receive(message: unknown): void {
    if (this.ended) return;
    try {
      this.dispatch(message);
    } catch (error) {
      // Only a SessionRequest that names no call lands here: nothing to answer it on.
      this.fail(callFailureOf(this.context, 'Session', error));
    }
  }

  private dispatch(message: unknown): void {
    if (message instanceof UndecodableRequest) throw invalidArgument(message.detail);
    if (message instanceof UndecodableCall) {
      this.dispatchUndecodable(message);
      return;
    }
    const request = message as DecodedRequest;
    const field = typeof request.call === 'string' ? request.call : '';
    if (field === CANCEL_FIELD) {
      this.cancel(uint64Text('SessionRequest.call_id', request.call_id));
      return;
    }
    const callId = this.newCallId(request.call_id);
    const method = METHOD_OF_FIELD[field];
    if (method === undefined) {
      throw invalidArgument(
        `SessionRequest.call: call ${callId} sets none of ${[...Object.keys(METHOD_OF_FIELD), CANCEL_FIELD].join(', ')}`,
      );
    }
    const traceparent = typeof request.traceparent === 'string' ? request.traceparent : '';
    let timeoutMs: number;
    try {
      timeoutMs = parseTimeoutMs(request.timeout_ms);
    } catch (error) {
      this.refuse(callId, traceparent, error);
      return;
    }
    this.serve(callId, method, request[field], timeoutMs, traceparent);
  }

  /** A sound SessionRequest around a malformed call message: that call's error, not the stream's. */
  private dispatchUndecodable(message: UndecodableCall): void {
    const callId = this.newCallId(message.callId);
    const method = METHOD_OF_FIELD[message.field];
    if (method === undefined) {
      throw invalidArgument(`SessionRequest.${message.field}: ${message.detail}`);
    }
    // The handler's own parse refuses it, in the words a unary call would get.
    this.serve(callId, method, new UndecodableRequest(message.detail), 0, null);
  }

  /** A call id that names no call in flight; anything else cannot be answered unambiguously. */
  private newCallId(raw: unknown): string {
    const callId = uint64Text('SessionRequest.call_id', raw);
    if (callId === '0') throw invalidArgument('SessionRequest.call_id: must not be 0');
    if (this.inFlight.has(callId)) {
      throw invalidArgument(
        `SessionRequest.call_id: ${describeValue(callId)} names a call still in flight on this stream`,
      );
    }
    return callId;
  }

  private serve(
    callId: string,
    method: Method,
    raw: unknown,
    timeoutMs: number,
    traceparent: string | null,
  ): void {
    const waits = mayWait(method);
    const refusal = this.refusal(waits);
    if (refusal !== null) {
      this.refuse(callId, traceparent, refusal);
      return;
    }
    const trace = continueTrace(traceparent === '' ? null : traceparent);
    const call = new StreamCall(waits, trace);
    this.inFlight.set(callId, call);
    if (waits) this.waitsInFlight++;
    if (timeoutMs > 0) {
      call.stopTimer = setLongTimeout(
        this.scheduler,
        () => this.expire(callId, call, trace, timeoutMs),
        timeoutMs,
      );
    }
    const field = fieldOf(method);
    const run = (): Promise<unknown> => this.calls[method](this.context, raw, call);
    const auth = this.context.auth;
    serveCall(
      this.context,
      { method, request: raw, trace, scope: call },
      auth === undefined ? run : () => this.withCaller(auth, call, run),
      (outcome: CallOutcome<unknown>) => {
        const result = outcome.ok ? { [field]: outcome.response } : errorOf(outcome.failure);
        const delivered = !call.cancelled && this.answer(callId, call, trace, result);
        if (!delivered) call.undelivered.run();
      },
    );
  }

  private async withCaller<T>(
    auth: Authenticator,
    call: StreamCall,
    run: () => Promise<T>,
  ): Promise<T> {
    const current = this.authenticated;
    call.caller = await (current?.generation === auth.generation
      ? current.caller
      : this.authenticate(auth));
    return run();
  }

  /**
   * Why a new call is not admitted, or null. Acquires may wait in a lock's queue and
   * hold their place meanwhile, so they have a bound of their own and never count
   * toward callsMax: however many of them wait, the session's KeepAlives (and its
   * other calls) still get in. Counted together, enough waits would refuse every
   * KeepAlive and lose a session whose client did nothing wrong. Unary calls have no
   * per-client bound; both transports share the node's clientCallsInFlightMax.
   */
  private refusal(waits: boolean): DlmError | null {
    if (this.draining) return unavailable(`${this.context.node.id} is shutting down`);
    if (waits && this.waitsInFlight >= this.waitsMax) {
      return new DlmError(
        'RESOURCE_EXHAUSTED',
        `this Session stream has ${this.waitsMax} Acquires in flight (runtime.sessionStreamWaitsInFlightMax)`,
      );
    }
    if (!waits && this.inFlight.size - this.waitsInFlight >= this.callsMax) {
      return new DlmError(
        'RESOURCE_EXHAUSTED',
        `this Session stream has ${this.callsMax} calls in flight besides Acquires (runtime.sessionStreamCallsInFlightMax)`,
      );
    }
    return null;
  }

  /** The call ran past its timeout_ms: as a unary call past its deadline, it is given up. */
  private expire(callId: string, call: StreamCall, trace: TraceContext, timeoutMs: number): void {
    call.stopTimer = null;
    call.cancel();
    const failure = callFailureOf(
      this.context,
      'Session',
      new DlmError('DEADLINE_EXCEEDED', `call ${callId} ran past its timeout_ms (${timeoutMs} ms)`),
    );
    this.answer(callId, call, trace, errorOf(failure));
  }

  /** The client gave the call up: like a cancelled unary call, it gets no answer. */
  private cancel(callId: string): void {
    const call = this.inFlight.get(callId);
    if (call === undefined) return; // answered already: the answer is on its way
    this.forget(callId, call);
    call.cancel();
    this.finishIfDrained();
  }

  /** Answers a call that was never admitted (the stream's limit, a bad timeout_ms). */
  private refuse(callId: string, traceparent: string | null, error: unknown): void {
    const trace = continueTrace(traceparent === '' ? null : traceparent);
    const failure = callFailureOf(this.context, 'Session', error);
    this.context.logger('debug', 'call', {
      method: 'Session',
      callId,
      code: GRPC_STATUS_BY_CODE[failure.code],
      traceId: trace.traceId,
    });
    this.write({ call_id: callId, trace_id: trace.traceId, ...errorOf(failure) });
  }

  /** Whether the answer went into the stream (see write). */
  private answer(
    callId: string,
    call: StreamCall,
    trace: TraceContext,
    result: Omit<SessionResponse, 'call_id' | 'trace_id'>,
  ): boolean {
    if (call.answered || this.ended) return false;
    this.forget(callId, call);
    const written = this.write({ call_id: callId, trace_id: trace.traceId, ...result });
    this.finishIfDrained();
    return written;
  }

  private forget(callId: string, call: StreamCall): void {
    call.answered = true;
    call.stopTimer?.();
    call.stopTimer = null;
    if (this.inFlight.delete(callId) && call.waits) this.waitsInFlight--;
  }

  /**
   * Bounded: a client that reads its answers keeps the stream's buffer near empty. One
   * that lets as many answers wait unsent as it may have calls in flight is not reading,
   * and is cut off. Returns whether the answer went into the stream: one that did not
   * never reaches the client.
   */
  private write(response: SessionResponse): boolean {
    if (this.ended) return false;
    if (this.stream.writableLength >= this.answersUnsentMax) {
      this.fail(
        callFailureOf(
          this.context,
          'Session',
          new DlmError(
            'RESOURCE_EXHAUSTED',
            `the client let ${this.answersUnsentMax} answers wait unread on its Session stream (runtime.sessionStreamCallsInFlightMax + runtime.sessionStreamWaitsInFlightMax)`,
          ),
        ),
      );
      return false;
    }
    this.stream.write(response);
    return true;
  }

  private finishIfDrained(): void {
    if (!this.halfClosed || this.inFlight.size > 0 || this.ended) return;
    this.ended = true;
    this.onEnded();
    this.stream.end();
  }

  /** Ends the stream with an error; the calls in flight are cancelled, unanswered. */
  private fail(failure: CallFailure): void {
    if (this.ended) return;
    this.stop();
    this.stream.emit('error', failureServiceError(failure));
  }

  /** The stream is over: every call still in flight is given up, as its caller is gone. */
  private stop(): void {
    this.ended = true;
    this.onEnded();
    for (const [callId, call] of [...this.inFlight]) {
      this.forget(callId, call);
      call.cancel();
    }
  }
}

/**
 * Every Acquire counts as one that may wait, whatever its wait_ms: a retry with wait_ms
 * 0 of a request still queued (what a client's settle sends) is answered from the
 * remembered Queued and waits for the queue like the first. Judged by wait_ms, such
 * retries would count among the other calls and could refuse the session's KeepAlives.
 */
function mayWait(method: Method): boolean {
  return method === 'Acquire';
}

/**
 * 0 = no deadline. Any other value a number holds exactly is honoured, beyond a Node
 * timer's reach too (setLongTimeout): a client gives a wait at the rules' ceiling a
 * timeout_ms past that ceiling, and must not be refused for it.
 */
function parseTimeoutMs(raw: unknown): number {
  return uint64ToNumber('SessionRequest.timeout_ms', raw ?? '0');
}

function fieldOf(method: Method): string {
  const field = FIELD_OF_METHOD.get(method);
  if (field === undefined) throw new Error(`no SessionRequest field for ${method}`);
  return field;
}

function errorOf(failure: CallFailure): { error: SessionCallError } {
  return {
    error: {
      code: GRPC_STATUS_BY_CODE[failure.code],
      message: failure.message,
      error_code: failure.code,
      leader_hint: failure.leaderHint ?? '',
      retry_after_ms: String(failure.retryAfterMs ?? 0),
    },
  };
}
