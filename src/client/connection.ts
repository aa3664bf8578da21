import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { bearerInterceptor } from './bearer.ts';
import {
  CallStream,
  localError,
  STREAM_FIELDS,
  StreamEnded,
  StreamUnimplemented,
} from './call-stream.ts';
import { grpcDeadline, type MonotonicClock, performanceClock, setLongTimeout } from './clock.ts';
import { DlmClientError } from './errors.ts';
import { KEEPALIVE_BATCH_MAX_DEFAULT, KeepAliveScheduler } from './keepalive.ts';

/**
 * Calls to a dlm cluster through any of its nodes. The client knows only the proto:
 * it loads proto/dlm.proto at run time, with the options that keep uint64 exact
 * (decimal strings) and enums as names.
 *
 * Routing: every node takes every call (followers forward writes), but the leader saves
 * a hop, so the connection learns where the leader is from the `dlm-leader-hint` of
 * UNAVAILABLE answers and from Status, and sends there first. Retries resend the same
 * request (same request_id), which the cluster deduplicates, with exponential backoff
 * and full jitter, and only for answers that say a retry is safe (see
 * DlmClientError.retryable) or for an attempt that timed out.
 *
 * Settle: an Acquire that fails with its outcome unknown (DlmClientError.outcomeUnknown)
 * may still have been granted; its session then asks again in the background, with the
 * same request id and wait_ms 0, and gives back a grant it finds (Session.settled()).
 * Each settle attempt gets settleAttemptTimeoutMs, at most settleAttemptsMax of them,
 * all within settleTimeoutMs of the failure.
 */
export interface ConnectionOptions {
  /** host:port of one or more nodes' client addresses. */
  readonly endpoints: readonly string[];
  readonly credentials?: grpc.ChannelCredentials;
  /**
   * A bearer token the cluster's `auth.tokens` knows: sent as `authorization` metadata
   * with every call. Without one, under mutual TLS, the client certificate names the caller.
   */
  readonly token?: string;
  /**
   * grpc-js options of every channel to a node, over the client's own, which lift
   * grpc-js's 4 MiB receive limit (see CHANNEL_OPTIONS).
   */
  readonly channelOptions?: grpc.ChannelOptions;
  /** One attempt of a call that does not wait gets this long before it is retried elsewhere. */
  readonly attemptTimeoutMs?: number;
  /** Backoff between attempts: full jitter in [0, min(max, min × 2^attempt)]. */
  readonly retryDelayMsMin?: number;
  readonly retryDelayMsMax?: number;
  /** Reads every deadline and interval of the client; performance.now() unless a test injects one. */
  readonly clock?: MonotonicClock;
  /** Settle: each re-issued Acquire gets this long (default 1 s); short, as the server may wait on it. */
  readonly settleAttemptTimeoutMs?: number;
  /** Settle: at most this many re-issued Acquires (default 5). */
  readonly settleAttemptsMax?: number;
  /** Settle: gives up (and reports it) this long after it started (default 10 s). */
  readonly settleTimeoutMs?: number;
  /**
   * How session calls (OpenSession, KeepAlive, CloseSession, Acquire, Release,
   * ValidateFence, Describe) travel: 'stream' (default) over one Lock.Session stream per
   * node, falling back to unary calls at a node that answers UNIMPLEMENTED; 'unary': a
   * unary RPC each. The answers are the same either way; a stream costs less CPU.
   */
  readonly transport?: Transport;
  /**
   * A node's stream with no call in flight for this long is cancelled (default 1 s), so
   * it does not keep the process alive; the next call opens a new one. Short enough not to
   * hold up an exit noticeably, long enough that a loop of calls keeps its stream.
   */
  readonly streamIdleCloseMs?: number;
  /**
   * Hears of every call made through `call` (once per call, not per attempt: retries
   * included), including the session's own keepalives and settles, which no caller
   * sees. A test harness records a history from it (the Jepsen run). It runs inline and
   * must not throw.
   */
  readonly onCall?: CallObserver;
  /**
   * At most this many sessions in one KeepAlive call (default 1,000, the lock rules'
   * default keepAliveBatchMax). The sessions of a connection share their keepalives
   * (keepalive.ts); a cluster that refuses a batch this large makes it halve.
   */
  readonly keepAliveBatchMax?: number;
}

export type Transport = 'stream' | 'unary';

/** How a call observed by `onCall` ended: its answer, or the error the caller got. */
export type CallEnd =
  | { readonly response: Record<string, unknown> }
  | { readonly error: DlmClientError };

/** Told of a call as it starts; what it returns is told how that call ended. */
export type CallObserver = (call: {
  readonly service: string;
  readonly method: string;
  readonly request: object;
}) => (end: CallEnd) => void;

export interface SettleOptions {
  readonly attemptTimeoutMs: number;
  readonly attemptsMax: number;
  readonly timeoutMs: number;
}

export interface CallOptions {
  /** The whole call, retries included, ends by then: a reading of the connection's clock. */
  readonly deadlineMs: number;
  /** Added to the attempt timeout, for an Acquire that waits on the server. */
  readonly waitMs?: number;
  /** Overrides the connection's attemptTimeoutMs for this call. */
  readonly attemptTimeoutMs?: number;
  /** Cancels the attempt in flight and ends the call with CANCELLED. */
  readonly signal?: AbortSignal;
}

const PROTO_PATH = fileURLToPath(new URL('../../proto/dlm.proto', import.meta.url));

type Service = 'Lock' | 'Cluster';
type Response = Record<string, unknown>;
type Unary = (
  request: object,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response: Response) => void,
) => grpc.ClientUnaryCall;

let constructors: Record<Service, grpc.ServiceClientConstructor> | null = null;

function serviceConstructors(): Record<Service, grpc.ServiceClientConstructor> {
  if (constructors !== null) return constructors;
  const definition = loadSync(PROTO_PATH, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    // Session answers are a oneof: `result` names the field that is set.
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    dlm: { v1: Record<Service, grpc.ServiceClientConstructor> };
  };
  constructors = { Lock: loaded.dlm.v1.Lock, Cluster: loaded.dlm.v1.Cluster };
  return constructors;
}

/**
 * No receive limit: a node's answers are bounded by the lock rules the operator set, not
 * by grpc-js's 4 MiB default, and a Describe of a lock with many waiters or shared
 * holders (owners of up to 16 KiB each) goes past that legally. An answer over the limit
 * cannot be read however often it is asked for.
 */
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': -1,
  // What a node accepts by default (runtime.clientRequestBytesMax): a bigger request is
  // refused here, before it is sent, rather than by the node after it was.
  'grpc.max_send_message_length': 4 * 1024 * 1024,
};

/** How long a Status asked only to find the leader or the members may take. */
const STATUS_PROBE_TIMEOUT_MS = 1_000;
/**
 * A retry needs at least this long before the call's deadline. One with less could not
 * even connect, and would replace the failure that says what is wrong (UNAVAILABLE:
 * connection refused) by DEADLINE_EXCEEDED "waiting for LB pick".
 */
const RETRY_WINDOW_MS_MIN = 20;

const DEFAULTS = {
  attemptTimeoutMs: 2_000,
  streamIdleCloseMs: 1_000,
  retryDelayMsMin: 20,
  retryDelayMsMax: 1_000,
  settleAttemptTimeoutMs: 1_000,
  settleTimeoutMs: 10_000,
};
const SETTLE_ATTEMPTS_MAX_DEFAULT = 5;

export class Connection {
  readonly clock: MonotonicClock;
  readonly settle: SettleOptions;
  /** Sends the keepalives of every session of this connection, batched. */
  readonly keepAlives: KeepAliveScheduler;
  private readonly options: Pick<
    Required<ConnectionOptions>,
    'endpoints' | 'attemptTimeoutMs' | 'retryDelayMsMin' | 'retryDelayMsMax'
  >;
  private readonly credentials: grpc.ChannelCredentials;
  private readonly channelOptions: grpc.ClientOptions;
  private readonly clients = new Map<string, Record<Service, grpc.Client>>();
  private readonly transport: Transport;
  private readonly streamIdleCloseMs: number;
  /** One Lock.Session stream per node address, opened at its first call. */
  private readonly streams = new Map<string, CallStream>();
  /** Nodes that answered the stream UNIMPLEMENTED (an older server): unary calls only. */
  private readonly unaryOnly = new Set<string>();
  /** Client addresses by node id, from the members Status reports. */
  private readonly addressOf = new Map<string, string>();
  private preferred: string;
  private rotation = 0;
  private closed = false;
  private readonly onCall: CallObserver | null;

  constructor(options: ConnectionOptions) {
    if (options.endpoints.length === 0) throw new Error('endpoints: at least one is needed');
    this.options = {
      endpoints: [...options.endpoints],
      attemptTimeoutMs: positive(options.attemptTimeoutMs, 'attemptTimeoutMs'),
      retryDelayMsMin: positive(options.retryDelayMsMin, 'retryDelayMsMin'),
      retryDelayMsMax: positive(options.retryDelayMsMax, 'retryDelayMsMax'),
    };
    this.credentials = options.credentials ?? grpc.credentials.createInsecure();
    this.channelOptions = {
      ...CHANNEL_OPTIONS,
      ...options.channelOptions,
      ...(options.token === undefined ? {} : { interceptors: [bearerInterceptor(options.token)] }),
    };
    this.transport = options.transport ?? 'stream';
    this.streamIdleCloseMs = positive(options.streamIdleCloseMs, 'streamIdleCloseMs');
    if (this.transport !== 'stream' && this.transport !== 'unary') {
      throw new Error(`transport must be 'stream' or 'unary', got ${String(this.transport)}`);
    }
    this.clock = options.clock ?? performanceClock;
    const attemptsMax = options.settleAttemptsMax ?? SETTLE_ATTEMPTS_MAX_DEFAULT;
    if (!Number.isInteger(attemptsMax) || attemptsMax < 1) {
      throw new Error(`settleAttemptsMax must be a positive integer, got ${attemptsMax}`);
    }
    this.settle = {
      attemptTimeoutMs: positive(options.settleAttemptTimeoutMs, 'settleAttemptTimeoutMs'),
      attemptsMax,
      timeoutMs: positive(options.settleTimeoutMs, 'settleTimeoutMs'),
    };
    this.preferred = options.endpoints[0] ?? '';
    this.onCall = options.onCall ?? null;
    this.keepAlives = new KeepAliveScheduler(
      this,
      options.keepAliveBatchMax ?? KEEPALIVE_BATCH_MAX_DEFAULT,
    );
  }

  /**
   * Calls `method`, retrying where that is safe, until it succeeds or `deadlineMs`.
   *
   * A failed call's error says whether its mutation may have applied (outcomeUnknown).
   * It may, unless the last answer was decisive (the state machine's own refusal,
   * which a retry with the same request id shares with every earlier attempt) or every
   * attempt was refused before it could apply (backpressure, UNIMPLEMENTED,
   * UNAUTHENTICATED, PERMISSION_DENIED). So DEADLINE_EXCEEDED, UNAVAILABLE, CANCELLED,
   * INTERNAL, UNKNOWN and any other code leave it unknown: the request may have been
   * written to the log before the answer was lost.
   */
  async call(service: Service, method: string, request: object, options: CallOptions) {
    const ended = this.onCall?.({ service, method, request });
    try {
      const response = await this.callWithRetries(service, method, request, options);
      ended?.({ response });
      return response;
    } catch (error) {
      // Every failure callWithRetries makes is a classified DlmClientError; anything else
      // is a bug whose effect nobody can tell.
      const classified =
        error instanceof DlmClientError
          ? error
          : DlmClientError.from(error, `${service}.${method}`).withOutcomeUnknown(true);
      ended?.({ error: classified });
      throw error;
    }
  }

  private async callWithRetries(
    service: Service,
    method: string,
    request: object,
    options: CallOptions,
  ): Promise<Response> {
    let lastError: DlmClientError | null = null;
    let mayHaveApplied = false;
    /** `sent`: whether the error ends an attempt, or comes before one was made. */
    const failed = (error: DlmClientError, sent = true): DlmClientError => {
      const unknown = !error.decisive && (mayHaveApplied || (sent && !error.notApplied));
      return error.withOutcomeUnknown(unknown);
    };
    /** Addresses whose attempt at this call failed, in this round of the endpoints. */
    const failedAt = new Set<string>();
    /**
     * Cleared once a Session stream ended under this call: its later attempts are unary
     * calls. What ended the stream may have been this very call (an answer over the
     * receive limit), and on a stream it would end the next one too, with every call on
     * it, until its deadline; a unary call fails alone.
     */
    let streamable = true;
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw failed(closedError(`${service}.${method}`), false);
      if (options.signal?.aborted) throw failed(abortedError(`${service}.${method}`), false);
      const address = this.preferred;
      const attemptDeadlineMs = Math.min(
        options.deadlineMs,
        this.clock.nowMs() +
          (options.attemptTimeoutMs ?? this.options.attemptTimeoutMs) +
          (options.waitMs ?? 0),
      );
      try {
        return await this.once(
          address,
          service,
          method,
          request,
          attemptDeadlineMs,
          options.signal,
          streamable,
        );
      } catch (error) {
        if (error instanceof StreamEnded) streamable = false;
        lastError = DlmClientError.from(error, `${service}.${method} at ${address}`);
        const attemptTimedOut =
          lastError.status === grpc.status.DEADLINE_EXCEEDED &&
          attemptDeadlineMs < options.deadlineMs;
        if (!lastError.retryable && !attemptTimedOut) throw failed(lastError);
        mayHaveApplied ||= !lastError.notApplied;
        await this.reroute(lastError, address, failedAt, options.deadlineMs);
      }
      const delayMs = this.retryDelayMs(attempt, lastError.retryAfterMs);
      if (this.clock.nowMs() + delayMs + RETRY_WINDOW_MS_MIN >= options.deadlineMs) {
        throw failed(lastError);
      }
      await abortableSleep(delayMs, options.signal);
    }
  }

  /** One server-streaming call to the preferred node (Watch); no retries. */
  stream(service: Service, method: string, request: object): grpc.ClientReadableStream<Response> {
    const client = this.client(this.preferred)[service] as unknown as Record<
      string,
      (request: object) => grpc.ClientReadableStream<Response>
    >;
    const invoke = client[method];
    if (invoke === undefined) throw new Error(`no method ${service}.${method}`);
    return invoke.call(client, request);
  }

  /**
   * A stream at `address` failed in a way another node may not (UNAVAILABLE, a broken
   * connection): the next stream goes to the next endpoint in turn. Unary calls reroute
   * themselves; a stream has no retries of its own (see stream()).
   */
  streamFailedAt(address: string): void {
    if (address === this.preferred) this.preferred = this.nextEndpoint(new Set([address]));
  }

  /** The node the next call or stream goes to first. */
  get preferredAddress(): string {
    return this.preferred;
  }

  /** Whether close() was called: no call can be made any more. */
  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    this.closed = true;
    for (const stream of this.streams.values()) stream.close();
    this.streams.clear();
    for (const pair of this.clients.values()) {
      pair.Lock.close();
      pair.Cluster.close();
    }
    this.clients.clear();
  }

  private async once(
    address: string,
    service: Service,
    method: string,
    request: object,
    deadlineMs: number,
    signal?: AbortSignal,
    streamable = true,
  ): Promise<Response> {
    // A call that was between attempts when close() ran must not open a new stream.
    if (this.closed) throw closedError(`${service}.${method}`);
    if (!streamable || !this.streamed(address, service, method)) {
      return this.unary(address, service, method, request, deadlineMs, signal);
    }
    try {
      return await this.callStream(address).call(method, request, deadlineMs, signal);
    } catch (error) {
      // A node without Lock.Session refused the stream before any call reached it.
      if (!(error instanceof StreamUnimplemented)) throw error;
      this.unaryOnly.add(address);
      return this.unary(address, service, method, request, deadlineMs, signal);
    }
  }

  private streamed(address: string, service: Service, method: string): boolean {
    return (
      this.transport === 'stream' &&
      service === 'Lock' &&
      Object.hasOwn(STREAM_FIELDS, method) &&
      !this.unaryOnly.has(address)
    );
  }

  private callStream(address: string): CallStream {
    let stream = this.streams.get(address);
    if (stream === undefined) {
      stream = new CallStream(this.client(address).Lock, this.clock, this.streamIdleCloseMs);
      this.streams.set(address, stream);
    }
    return stream;
  }

  private unary(
    address: string,
    service: Service,
    method: string,
    request: object,
    deadlineMs: number,
    signal?: AbortSignal,
  ): Promise<Response> {
    const client = this.client(address)[service] as unknown as Record<string, Unary>;
    const invoke = client[method];
    if (invoke === undefined) return Promise.reject(new Error(`no method ${service}.${method}`));
    return new Promise((resolve, reject) => {
      const cancel = (): void => call.cancel();
      const deadline = unaryDeadline(deadlineMs - this.clock.nowMs(), cancel);
      const call = invoke.call(client, request, deadline.options, (error, response) => {
        deadline.stop();
        signal?.removeEventListener('abort', cancel);
        if (error === null) resolve(response);
        else reject(deadline.failure(error));
      });
      signal?.addEventListener('abort', cancel, { once: true });
    });
  }

  /**
   * Where the next attempt goes: the hinted leader when its address is known (asking
   * Status for the members if not), else the next endpoint in turn. A hint back to a
   * node that failed this call already is not followed: two nodes with stale views can
   * name each other, and following them would alternate between the two until the
   * deadline. Then the nodes are asked who leads (Status), and failing that the call
   * moves on to an endpoint it has not tried in this round.
   */
  private async reroute(
    error: DlmClientError,
    address: string,
    failedAt: Set<string>,
    deadlineMs: number,
  ): Promise<void> {
    failedAt.add(address);
    const hint = error.leaderHint;
    if (hint !== null && !this.addressOf.has(hint)) await this.learnMembers();
    const hinted = hint === null ? undefined : this.addressOf.get(hint);
    if (hinted !== undefined && !failedAt.has(hinted)) {
      this.preferred = hinted;
      return;
    }
    if (hinted !== undefined && hinted !== address) {
      const leader = await this.discoverLeader(failedAt, deadlineMs);
      if (leader !== null) {
        this.preferred = leader;
        return;
      }
    }
    this.preferred = this.nextEndpoint(failedAt);
  }

  /** The next endpoint in turn that has not failed this round; a new round once all have. */
  private nextEndpoint(failedAt: Set<string>): string {
    const { endpoints } = this.options;
    if (endpoints.every((endpoint) => failedAt.has(endpoint))) failedAt.clear();
    for (let step = 1; step <= endpoints.length; step++) {
      const position = (this.rotation + step) % endpoints.length;
      const endpoint = endpoints[position];
      if (endpoint !== undefined && !failedAt.has(endpoint)) {
        this.rotation = position;
        return endpoint;
      }
    }
    return this.preferred;
  }

  /**
   * Asks every known node not yet failed in this round, at once, for its Status, and
   * returns the address of one that says it leads (the highest term if several do).
   */
  private async discoverLeader(failedAt: Set<string>, deadlineMs: number): Promise<string | null> {
    const candidates = [...new Set([...this.options.endpoints, ...this.addressOf.values()])].filter(
      (address) => !failedAt.has(address),
    );
    const probeDeadlineMs = Math.min(deadlineMs, this.clock.nowMs() + STATUS_PROBE_TIMEOUT_MS);
    const answers = await Promise.all(
      candidates.map((address) =>
        this.once(address, 'Cluster', 'Status', {}, probeDeadlineMs).then(
          (status) => ({ address, status }),
          () => null,
        ),
      ),
    );
    let best: { address: string; term: bigint } | null = null;
    for (const answer of answers) {
      if (answer === null) continue;
      this.learnFrom(answer.status);
      const { node_id: self, leader_id: leader, term } = answer.status;
      if (self === '' || self !== leader) continue;
      const termNumber = BigInt(String(term ?? '0'));
      if (best === null || termNumber > best.term)
        best = { address: answer.address, term: termNumber };
    }
    return best?.address ?? null;
  }

  private async learnMembers(): Promise<void> {
    for (const address of new Set([this.preferred, ...this.options.endpoints])) {
      try {
        const status = await this.once(
          address,
          'Cluster',
          'Status',
          {},
          this.clock.nowMs() + STATUS_PROBE_TIMEOUT_MS,
        );
        this.learnFrom(status);
        return;
      } catch {
        // Down or unreachable: ask the next one.
      }
    }
  }

  private learnFrom(status: Response): void {
    for (const member of (status.members ?? []) as { id: string; client_address: string }[]) {
      if (member.client_address !== '') this.addressOf.set(member.id, member.client_address);
    }
  }

  /** Backoff before retry number `attempt` + 1: full jitter, at least the server's retry hint. */
  retryDelayMs(attempt: number, retryAfterMs: number | null = null): number {
    const ceiling = Math.min(
      this.options.retryDelayMsMax,
      this.options.retryDelayMsMin * 2 ** Math.min(attempt, 30),
    );
    const jittered = Math.random() * ceiling;
    return retryAfterMs === null ? jittered : Math.max(jittered, retryAfterMs);
  }

  private client(address: string): Record<Service, grpc.Client> {
    let pair = this.clients.get(address);
    if (pair === undefined) {
      const { Lock, Cluster } = serviceConstructors();
      pair = {
        Lock: new Lock(address, this.credentials, this.channelOptions),
        Cluster: new Cluster(address, this.credentials, this.channelOptions),
      };
      this.clients.set(address, pair);
    }
    return pair;
  }
}

/**
 * The longest deadline a grpc-js server reads right. grpc-js sends a timeout of 10^8 ms
 * or more in whole seconds, rounded up, and a grpc-js server multiplies them back into a
 * 32-bit integer: from 2^31 ms on, the deadline it reads has already passed, and the
 * call fails DEADLINE_EXCEEDED at once.
 */
export const GRPC_TIMEOUT_MS_MAX = 2_147_483_000;

export interface UnaryDeadline {
  readonly options: grpc.CallOptions;
  /** What the call fails with: DEADLINE_EXCEEDED once this side cancelled it for its deadline. */
  failure(error: grpc.ServiceError): grpc.ServiceError;
  stop(): void;
}

/**
 * A unary call's deadline. One further off than GRPC_TIMEOUT_MS_MAX (an Acquire whose
 * waitMs is near the rules' ceiling) is not sent: this side cancels the call when it
 * passes, and the call fails DEADLINE_EXCEEDED as with a deadline grpc-js kept. The
 * node needs none to end the call: an Acquire's wait ends by its wait_ms, and a
 * cancelled call is given up (its wait or grant withdrawn) as one past its deadline.
 */
export function unaryDeadline(remainingMs: number, cancel: () => void): UnaryDeadline {
  if (remainingMs <= GRPC_TIMEOUT_MS_MAX) {
    const options = { deadline: grpcDeadline(remainingMs) };
    return { options, failure: (error) => error, stop: () => {} };
  }
  let passed = false;
  const stop = setLongTimeout(() => {
    passed = true;
    cancel();
  }, remainingMs);
  const exceeded = () =>
    localError(grpc.status.DEADLINE_EXCEEDED, `deadline of ${remainingMs} ms exceeded`);
  return { options: {}, failure: (error) => (passed ? exceeded() : error), stop };
}

function positive(value: number | undefined, name: keyof typeof DEFAULTS): number {
  if (value === undefined) return DEFAULTS[name];
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name} must be a positive number of milliseconds, got ${value}`);
  }
  return value;
}

function closedError(what: string): DlmClientError {
  return new DlmClientError(
    `${what}: the dlm client is closed`,
    grpc.status.CANCELLED,
    null,
    null,
    null,
  );
}

function abortedError(what: string): DlmClientError {
  return new DlmClientError(`${what}: aborted`, grpc.status.CANCELLED, null, null, null);
}

/** Waits `delayMs`, or less if `signal` aborts first (the caller then checks it). */
function abortableSleep(delayMs: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, delayMs);
    signal?.addEventListener('abort', done, { once: true });
  });
}
