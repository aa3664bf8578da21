import * as grpc from '@grpc/grpc-js';
import type { Holder } from '../lock/index.ts';
import { DlmError } from '../node/errors.ts';
import type { DlmNode } from '../node/node.ts';
import type { Scheduler } from '../node/scheduler.ts';
import { continueTrace, type TraceContext } from '../node/trace.ts';
import { assert } from '../util/assert.ts';
import type { ActivityClock } from './activity.ts';
import { ANONYMOUS, type Authenticator, type Caller } from './auth/caller.ts';
import {
  type ApiLogger,
  type CallFailure,
  failureServiceError,
  GRPC_STATUS_BY_CODE,
  TRACE_ID_KEY,
  TRACEPARENT_KEY,
  toCallFailure,
} from './errors.ts';
import type { EventHub } from './event-hub.ts';
import { type ResponseHeader, toUint64, type WireHolder } from './proto.ts';

/**
 * What the API needs of a node; a narrow seam so tests can stand in for a failing one.
 * Membership is optional: a stand-in without it answers those calls with an error.
 */
export type ApiNode = Pick<
  DlmNode,
  'id' | 'locks' | 'write' | 'read' | 'subscribe' | 'onRestored' | 'observe' | 'status'
> &
  Partial<Pick<DlmNode, MembershipMethod>>;

export type MembershipMethod =
  | 'addMember'
  | 'removeMember'
  | 'transferLeadership'
  | 'memberAddresses'
  | 'learnAddresses';

export interface ApiOptions {
  /** Calls one node serves at once, waiting Acquires and Watch streams included. */
  readonly clientCallsInFlightMax: number;
  /** Events buffered for one Watch stream; a watcher that falls further behind is ended. */
  readonly watchEventsBufferedMax: number;
  /**
   * A Watch ended for falling behind gets this long to take its buffered events and its
   * status; a client that reads none of it is then cut off (the HTTP/2 stream reset), so
   * what it held is freed whatever the client does.
   */
  readonly watchCutoffGraceMs: number;
  /**
   * While Observe streams are open, how often this node confirms that it still follows
   * the leader (a linearizable read through it); when that fails, the streams end
   * UNAVAILABLE (see EventHub). 0: only a node that knows no leader ends them.
   */
  readonly observeConfirmIntervalMs: number;
  /**
   * Calls in flight on one Session stream, besides Acquires (each also counts toward
   * clientCallsInFlightMax); past it a call is refused as backpressure.
   */
  readonly sessionStreamCallsInFlightMax: number;
  /**
   * Acquires in flight on one Session stream, whatever their wait_ms (a retry of a queued
   * request waits with wait_ms 0 too), bounded apart so that waits never crowd out
   * KeepAlives; past it one is refused as backpressure. With
   * sessionStreamCallsInFlightMax, the sum is also the answers one stream may have
   * waiting unsent before it is ended (its client is not reading).
   */
  readonly sessionStreamWaitsInFlightMax: number;
  /** The retry hint sent with backpressure RESOURCE_EXHAUSTED (trailer dlm-retry-after-ms). */
  readonly backpressureRetryAfterMs: number;
  /** How often Health.Watch looks at the node for a change of status. */
  readonly healthPollIntervalMs: number;
  /** Attempts to give back what an abandoned Acquire got (a Withdraw is guarded, so a retry is safe). */
  readonly withdrawAttemptsMax: number;
  /** The most locks or sessions one ListLocks or ListSessions page may ask for. */
  readonly listItemsMax: number;
}

/**
 * The first five, and listItemsMax, match RuntimeConfig's fields of the same names, so a
 * config passes straight in.
 */
export const DEFAULT_API_OPTIONS: ApiOptions = {
  clientCallsInFlightMax: 10_000,
  watchEventsBufferedMax: 1_024,
  watchCutoffGraceMs: 5_000,
  observeConfirmIntervalMs: 2_000,
  sessionStreamCallsInFlightMax: 1_024,
  sessionStreamWaitsInFlightMax: 1_024,
  backpressureRetryAfterMs: 100,
  healthPollIntervalMs: 100,
  // Backoff doubles from 50 ms to 2 s: 20 attempts span about 30 s, enough to outlast a
  // leader election or a partition of the node that must give a grant back.
  withdrawAttemptsMax: 20,
  listItemsMax: 1_000,
};

export interface ApiContext {
  readonly node: ApiNode;
  readonly events: EventHub;
  readonly logger: ApiLogger;
  readonly gate: CallGate;
  readonly options: ApiOptions;
  readonly observer?: ApiObserver;
  /** Hold times and refresh ages (ListLocks, ListSessions, Describe); absent: reported as 0. */
  readonly activity?: ActivityClock;
  /** Timers for the API's own waits (REAL_SCHEDULER when absent); a simulation passes virtual ones. */
  readonly scheduler?: Scheduler;
  /** Who calls and what they may do (src/api/auth); absent: open, every caller anonymous. */
  readonly auth?: Authenticator;
}

/** What the API reports for metrics (the process wires it to prom-client). */
export interface ApiObserver {
  acquireEnded(seconds: number, outcome: 'acquired' | 'not_acquired' | 'error'): void;
  /** A call was refused for backpressure (RESOURCE_EXHAUSTED with a retry hint). */
  refused?(method: string): void;
  /** A call ended with gRPC status `code`; `startedMs` on performance.now()'s clock. For span export. */
  callEnded?(method: string, trace: TraceContext, startedMs: number, code: grpc.status): void;
}

/** Bounds the calls in flight: past the bound a call is refused at once, never queued. */
export class CallGate {
  private inFlight = 0;

  constructor(private readonly max: number) {}

  get size(): number {
    return this.inFlight;
  }

  /** Admits one call; the returned function ends it (calling it twice is harmless). */
  enter(): () => void {
    if (this.inFlight >= this.max) {
      throw new DlmError('RESOURCE_EXHAUSTED', `${this.max} client calls are already in flight`);
    }
    this.inFlight++;
    let open = true;
    return () => {
      if (open) this.inFlight--;
      open = false;
    };
  }
}

export function header(node: ApiNode, index: number): ResponseHeader {
  const status = node.status();
  return {
    node_id: node.id,
    leader_id: status.leaderId ?? '',
    term: toUint64(status.term),
    index: toUint64(index),
  };
}

/** `heldMs`: how long this node has seen the grant held; 0 where the answer has none (Acquire). */
export function wireHolder(holder: Holder, heldMs = 0): WireHolder {
  return {
    session_id: toUint64(holder.sessionId),
    owner: holder.owner,
    fencing_token: toUint64(holder.token),
    acquired_index: toUint64(holder.requestIndex),
    held_ms: toUint64(heldMs),
    permits: toUint64(holder.permits ?? 0),
    value: holder.value ?? '',
  };
}

export function serviceErrorOf(context: ApiContext, method: string, error: unknown) {
  return failureServiceError(callFailureOf(context, method, error));
}

export function callFailureOf(context: ApiContext, method: string, error: unknown): CallFailure {
  const failure = toCallFailure(error, {
    method,
    logger: context.logger,
    currentLeader: () => context.node.status().leaderId,
    retryAfterMs: context.options.backpressureRetryAfterMs,
  });
  if (failure.retryAfterMs !== null) context.observer?.refused?.(method);
  return failure;
}

/**
 * What a handler needs of the call it serves, whether the call is unary or one of many
 * on a Session stream.
 */
export interface CallScope {
  /** Whether the caller has gone: its deadline passed, it cancelled, its stream ended. */
  readonly cancelled: boolean;
  /** Calls `listener` once when the caller goes; returns the unsubscribe. */
  onCancelled(listener: () => void): () => void;
  /**
   * For a handler about to answer with something its caller now holds (a grant):
   * `giveBack` runs if that answer is never handed to the caller's transport, because
   * the caller went first or a Session stream could not take the answer. The handler
   * cannot see that itself: it happens after it returned. At most one per call.
   */
  onUndelivered(giveBack: () => void): void;
  /** The call's span (see serveCall); the writes it makes carry it when forwarded. */
  readonly trace: TraceContext;
  /**
   * Who made the call, as this node authenticated it (src/api/auth): set before the
   * handler runs. The writes it makes carry the identity, so a forwarded write is
   * judged by the leader and every replica as the caller's.
   */
  readonly caller: Caller;
}

/** The give-back a handler left with its answer (CallScope.onUndelivered). */
export class GiveBack {
  private giveBack: (() => void) | null = null;

  set(giveBack: () => void): void {
    assert(this.giveBack === null, 'a call registered a second give-back');
    this.giveBack = giveBack;
  }

  /** The answer did not reach the caller: undo what it carried. Runs the give-back once. */
  run(): void {
    const giveBack = this.giveBack;
    this.giveBack = null;
    giveBack?.();
  }
}

/** What a unary call's scope reads of grpc-js's call. */
interface CancellableCall {
  readonly cancelled: boolean;
  once(event: 'cancelled', listener: () => void): unknown;
  off(event: 'cancelled', listener: () => void): unknown;
}

/**
 * A unary call's scope: grpc-js marks the call cancelled (deadline, cancel, reset). A
 * class, not an object literal: V8 builds a literal with a getter through the runtime,
 * about 20 times slower, and there is one per call.
 */
class UnaryScope implements CallScope {
  readonly undelivered = new GiveBack();
  caller: Caller = ANONYMOUS;

  constructor(
    private readonly call: CancellableCall,
    readonly trace: TraceContext,
  ) {}

  get cancelled(): boolean {
    return this.call.cancelled;
  }

  onCancelled(listener: () => void): () => void {
    this.call.once('cancelled', listener);
    return () => this.call.off('cancelled', listener);
  }

  onUndelivered(giveBack: () => void): void {
    this.undelivered.set(giveBack);
  }
}

export type CallOutcome<Response> =
  | { readonly ok: true; readonly response: Response }
  | { readonly ok: false; readonly failure: CallFailure };

export interface CallServing {
  readonly method: string;
  /** The request as it came (for the log's requestId). */
  readonly request: unknown;
  /** The call's span: continueTrace of the caller's W3C traceparent. */
  readonly trace: TraceContext;
  /** Whose call it is, for the log line: read when the call ends, as it is authenticated first. */
  readonly scope: Pick<CallScope, 'caller'>;
  /** Status and Health answer even when the gate is full. */
  readonly ungated?: boolean;
}

/**
 * Serves one call, unary or on a Session stream: admits it through the gate (unless
 * `ungated`), runs `run`, maps any error through the one error table, and logs the
 * outcome with its latency as a span of the caller's trace (W3C `traceparent`, or a new
 * trace). `run` hands that trace to the writes it makes (CallScope.trace), so a write
 * it forwards carries it. The log line names the caller's identity (the tenant) when it
 * has one, never its credentials. `deliver` is called once; synchronously when the gate
 * refuses.
 */
export function serveCall<Response>(
  context: ApiContext,
  serving: CallServing,
  run: () => Promise<Response>,
  deliver: (outcome: CallOutcome<Response>) => void,
): void {
  const { method, request, trace, scope } = serving;
  const startedMs = performance.now();
  const log = (code: grpc.status): void => {
    context.observer?.callEnded?.(method, trace, startedMs, code);
    const { identity } = scope.caller;
    context.logger('debug', 'call', {
      method,
      ...(identity === '' ? {} : { identity }),
      requestId: requestIdOf(request),
      code,
      latencyMs: Math.round(performance.now() - startedMs),
      traceId: trace.traceId,
      spanId: trace.spanId,
      ...(trace.parentSpanId === null ? {} : { parentSpanId: trace.parentSpanId }),
    });
  };
  const fail = (error: unknown): void => {
    const failure = callFailureOf(context, method, error);
    log(GRPC_STATUS_BY_CODE[failure.code]);
    deliver({ ok: false, failure });
  };
  let leave: () => void;
  try {
    leave = serving.ungated === true ? () => {} : context.gate.enter();
  } catch (error) {
    fail(error);
    return;
  }
  // Through a promise, so a handler that throws before its first await is caught too.
  new Promise<Response>((resolve) => resolve(run())).then(
    (response) => {
      leave();
      log(grpc.status.OK);
      deliver({ ok: true, response });
    },
    (error: unknown) => {
      leave();
      fail(error);
    },
  );
}

/**
 * Adapts an async handler to a unary grpc-js call (see serveCall); the handler is given
 * the call's trace, and the answer's trailing metadata names the trace id.
 */
export function unary<Response>(
  context: ApiContext,
  method: string,
  handler: (
    request: unknown,
    call: grpc.ServerUnaryCall<unknown, Response>,
    scope: CallScope,
  ) => Promise<Response>,
  { ungated = false }: { ungated?: boolean } = {},
): grpc.handleUnaryCall<unknown, Response> {
  return (call, callback) => {
    const incoming = call.metadata.get(TRACEPARENT_KEY)[0];
    const trace = continueTrace(typeof incoming === 'string' ? incoming : null);
    const trailer = (metadata = new grpc.Metadata()): grpc.Metadata => {
      metadata.set(TRACE_ID_KEY, trace.traceId);
      return metadata;
    };
    const scope = new UnaryScope(call, trace);
    const auth = context.auth;
    serveCall(
      context,
      { method, request: call.request, trace, scope, ungated },
      auth === undefined
        ? () => handler(call.request, call, scope)
        : async () => {
            scope.caller = await auth.authenticate(call);
            return handler(call.request, call, scope);
          },
      (outcome) => {
        if (outcome.ok) {
          // grpc-js drops the answer of a call that ended already (deadline, cancel, reset).
          if (call.cancelled) scope.undelivered.run();
          callback(null, outcome.response, trailer());
          return;
        }
        const failure = failureServiceError(outcome.failure);
        trailer(failure.metadata);
        callback(failure);
      },
    );
  };
}

function requestIdOf(request: unknown): string | undefined {
  if (typeof request !== 'object' || request === null) return undefined;
  const id = (request as { request_id?: unknown }).request_id;
  return typeof id === 'string' ? id : undefined;
}
