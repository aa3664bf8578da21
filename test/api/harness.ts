import * as grpc from '@grpc/grpc-js';
import { Authenticator } from '../../src/api/auth/caller.ts';
import type { ApiNode, ApiOptions } from '../../src/api/context.ts';
import type { ApiLogger, LogLevel } from '../../src/api/errors.ts';
import {
  CLUSTER_SERVICE_NAME,
  clientDefinition,
  HEALTH_SERVICE_NAME,
  LOCK_SERVICE_NAME,
} from '../../src/api/proto.ts';
import { type ApiServer, startApiServer } from '../../src/api/server.ts';
import type { AuthConfig } from '../../src/config/auth.ts';
import type { RaftConfig } from '../../src/config/types.ts';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import { DEFAULT_RAFT_OPTIONS } from '../../src/raft/index.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';

/**
 * Three DlmNodes over an in-process network, each serving the public API on its own
 * loopback port, and real gRPC clients generated at run time from the same protos.
 */
export const NODE_OPTIONS: NodeRuntimeOptions = {
  tickIntervalMs: 10,
  raft: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 1 },
  // Small limits so each refusal is reachable in a test.
  lock: { sessionTtlMsMin: 100, waitersPerLockMax: 2 },
  pendingProposalsMax: 100,
  proposalTimeoutMs: 5_000,
  snapshotEntriesThreshold: 200,
  compactionRetainEntries: 50,
  shutdownTransferMs: 500,
};

/** The nodes' Raft timing as a config states it, which SetLockRules checks rules against. */
export const NODE_RAFT: RaftConfig = {
  tickIntervalMs: NODE_OPTIONS.tickIntervalMs,
  ...DEFAULT_RAFT_OPTIONS,
  ...NODE_OPTIONS.raft,
};

export const IDS = [nodeId('n1'), nodeId('n2'), nodeId('n3')];

export interface LogEntry {
  readonly level: LogLevel;
  readonly message: string;
  readonly fields: Record<string, unknown> | undefined;
}

export class RpcError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
    readonly trailers: grpc.Metadata,
  ) {
    super(`${grpc.status[code]}: ${details}`);
  }

  trailer(key: string): string | undefined {
    const value = this.trailers.get(key)[0];
    return value === undefined ? undefined : String(value);
  }
}

export interface CallOptions {
  readonly deadlineMs?: number;
}

/** How a test reaches dlm.v1.Lock's session calls: one unary RPC each, or a Session stream. */
export type Transport = 'unary' | 'stream';
export const TRANSPORTS: readonly Transport[] = ['unary', 'stream'];

/** What tests call, whichever the transport. */
export interface LockCaller {
  call(method: string, request: object, options?: CallOptions): Promise<Wire>;
  /** Sends the request message's bytes as they are. */
  callBytes(method: string, bytes: Buffer, options?: CallOptions): Promise<Wire>;
}

// biome-ignore lint/suspicious/noExplicitAny: responses are checked by the tests themselves
type Wire = any;

/** A client of one service on one node, calling methods by name with plain objects. */
export class ServiceClient implements LockCaller {
  readonly raw: grpc.Client;
  private readonly definition: grpc.ServiceDefinition;

  /** `clientOptions`: for a test that sends credentials (a bearer interceptor). */
  constructor(serviceName: string, port: number, clientOptions: grpc.ClientOptions = {}) {
    this.definition = clientDefinition(serviceName);
    const insecure = grpc.credentials.createInsecure();
    this.raw = new grpc.Client(`127.0.0.1:${port}`, insecure, clientOptions);
  }

  call(method: string, request: object, options: CallOptions = {}): Promise<Wire> {
    const definition = this.method(method);
    return this.unary(definition, definition.requestSerialize, request, options);
  }

  /** Sends bytes as they are: for requests no well-behaved client would encode. */
  callBytes(method: string, bytes: Buffer, options: CallOptions = {}): Promise<Wire> {
    return this.unary(this.method(method), (buffer: Buffer) => buffer, bytes, options);
  }

  stream(
    method: string,
    request: object,
    options: CallOptions = {},
  ): grpc.ClientReadableStream<Wire> {
    const definition = this.method(method);
    return this.raw.makeServerStreamRequest(
      definition.path,
      definition.requestSerialize,
      definition.responseDeserialize,
      request,
      new grpc.Metadata(),
      callOptions(options),
    );
  }

  streamBytes(
    method: string,
    bytes: Buffer,
    options: CallOptions = {},
  ): grpc.ClientReadableStream<Wire> {
    const definition = this.method(method);
    return this.raw.makeServerStreamRequest(
      definition.path,
      (buffer: Buffer) => buffer,
      definition.responseDeserialize,
      bytes,
      new grpc.Metadata(),
      callOptions(options),
    );
  }

  /** A bidirectional stream whose request messages are sent as the bytes given. */
  bidiBytes(method: string, options: CallOptions = {}): grpc.ClientDuplexStream<Buffer, Wire> {
    const definition = this.method(method);
    return this.raw.makeBidiStreamRequest(
      definition.path,
      (buffer: Buffer) => buffer,
      definition.responseDeserialize,
      new grpc.Metadata(),
      callOptions(options),
    );
  }

  close(): void {
    this.raw.close();
  }

  private method(name: string): grpc.MethodDefinition<object, object> {
    const definition = this.definition[name];
    if (definition === undefined) throw new Error(`no method ${name}`);
    return definition;
  }

  private unary<T>(
    definition: grpc.MethodDefinition<object, object>,
    serialize: (value: T) => Buffer,
    request: T,
    options: CallOptions,
  ): Promise<Wire> {
    return new Promise((resolve, reject) => {
      this.raw.makeUnaryRequest(
        definition.path,
        serialize,
        definition.responseDeserialize,
        request,
        new grpc.Metadata(),
        callOptions(options),
        (error, response) => {
          if (error === null || error === undefined) resolve(response);
          else reject(new RpcError(error.code, error.details, error.metadata));
        },
      );
    });
  }
}

/** The SessionRequest field that carries each Lock method, with its field number. */
export const SESSION_FIELDS: Readonly<Record<string, readonly [string, number]>> = {
  OpenSession: ['open_session', 10],
  KeepAlive: ['keep_alive', 11],
  CloseSession: ['close_session', 12],
  Acquire: ['acquire', 13],
  Release: ['release', 14],
  ValidateFence: ['validate_fence', 15],
  Describe: ['describe', 16],
};

/**
 * The session calls of one node over one Lock.Session stream, opened at the first call.
 * A call's deadline travels as its timeout_ms; an answer that carries an error becomes
 * the RpcError a unary call would have failed with (status, message, trailers), so one
 * test body checks both transports. Ending the stream fails what is in flight.
 */
export class StreamClient implements LockCaller {
  private readonly raw: grpc.Client;
  private readonly definition: grpc.MethodDefinition<object, object>;
  private stream: grpc.ClientDuplexStream<object, Wire> | null = null;
  private callSequence = 0;
  private readonly pending = new Map<string, (answer: Wire | RpcError) => void>();
  /** The trace id each answer named, by call id. */
  readonly traceIds = new Map<string, string>();

  constructor(port: number, clientOptions: grpc.ClientOptions = {}) {
    const definition = clientDefinition(LOCK_SERVICE_NAME).Session;
    if (definition === undefined) throw new Error('dlm.v1.Lock has no Session method');
    this.definition = definition;
    const insecure = grpc.credentials.createInsecure();
    this.raw = new grpc.Client(`127.0.0.1:${port}`, insecure, clientOptions);
  }

  call(method: string, request: object, options: CallOptions = {}): Promise<Wire> {
    const [field] = sessionField(method);
    const callId = this.nextCallId();
    return this.send(callId, { call_id: callId, ...timeout(options), [field]: request });
  }

  callBytes(method: string, bytes: Buffer, options: CallOptions = {}): Promise<Wire> {
    const [, number] = sessionField(method);
    const callId = this.nextCallId();
    const head = this.definition.requestSerialize({ call_id: callId, ...timeout(options) });
    return this.sendBytes(
      callId,
      Buffer.concat([head, varint((number << 3) | 2), varint(bytes.length), bytes]),
    );
  }

  /** Sends a SessionRequest as given; resolves with its answer (the test picks the call_id). */
  send(callId: string, request: object): Promise<Wire> {
    return this.sendBytes(callId, this.definition.requestSerialize(request));
  }

  /** Writes a SessionRequest without waiting for an answer to it. */
  write(request: object): void {
    this.open().write(this.definition.requestSerialize(request));
  }

  /** Sends a cancel for `callId`; the call gets no answer, so its promise is left pending. */
  cancel(callId: string): void {
    this.pending.delete(callId);
    this.open().write(this.definition.requestSerialize({ call_id: callId, cancel: {} }));
  }

  /** The call id the next call() will use. */
  get nextId(): string {
    return String(this.callSequence + 1);
  }

  /** Ends the stream from this side (cancel): the server gives up every call in flight. */
  end(): void {
    this.stream?.cancel();
    this.stream = null;
  }

  /** Resolves with the status the server ends the current stream with. */
  ended(): Promise<grpc.StatusObject> {
    const stream = this.open();
    return new Promise((resolve) => stream.once('status', resolve));
  }

  /** Half-closes the stream (no more calls); resolves with the status the server ends it with. */
  halfClose(): Promise<grpc.StatusObject> {
    const stream = this.open();
    const ended = new Promise<grpc.StatusObject>((resolve) => stream.once('status', resolve));
    stream.end();
    this.stream = null;
    return ended;
  }

  close(): void {
    this.end();
    this.raw.close();
  }

  private nextCallId(): string {
    return String(++this.callSequence);
  }

  private sendBytes(callId: string, bytes: Buffer): Promise<Wire> {
    const stream = this.open();
    return new Promise((resolve, reject) => {
      this.pending.set(callId, (answer) =>
        answer instanceof RpcError ? reject(answer) : resolve(answer),
      );
      stream.write(bytes);
    });
  }

  private open(): grpc.ClientDuplexStream<object, Wire> {
    if (this.stream !== null) return this.stream;
    const stream = this.raw.makeBidiStreamRequest(
      this.definition.path,
      (bytes: Buffer) => bytes,
      this.definition.responseDeserialize,
      new grpc.Metadata(),
      {},
    ) as unknown as grpc.ClientDuplexStream<object, Wire>;
    stream.on('data', (response: Wire) => this.receive(response));
    stream.on('error', (error: grpc.ServiceError) => {
      const failure = new RpcError(error.code, error.details, error.metadata);
      const waiting = [...this.pending.values()];
      this.pending.clear();
      for (const settle of waiting) settle(failure);
      if (this.stream === stream) this.stream = null;
    });
    this.stream = stream;
    return stream;
  }

  private receive(response: Wire): void {
    const callId = String(response.call_id);
    this.traceIds.set(callId, String(response.trace_id));
    const settle = this.pending.get(callId);
    if (settle === undefined) return;
    this.pending.delete(callId);
    if (response.result !== 'error') {
      settle(response[response.result]);
      return;
    }
    const { error } = response;
    const trailers = new grpc.Metadata();
    trailers.set('dlm-error-code', error.error_code);
    if (error.leader_hint !== '') trailers.set('dlm-leader-hint', error.leader_hint);
    if (error.retry_after_ms !== '0') trailers.set('dlm-retry-after-ms', error.retry_after_ms);
    trailers.set('dlm-trace-id', response.trace_id);
    settle(new RpcError(error.code, error.message, trailers));
  }
}

function sessionField(method: string): readonly [string, number] {
  const field = SESSION_FIELDS[method];
  if (field === undefined) throw new Error(`${method} is not carried by Lock.Session`);
  return field;
}

function timeout(options: CallOptions): { timeout_ms?: string } {
  return options.deadlineMs === undefined ? {} : { timeout_ms: String(options.deadlineMs) };
}

function varint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

function callOptions(options: CallOptions): grpc.CallOptions {
  return options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs };
}

/** Settles with the RpcError a call failed with; fails if it succeeded. */
export async function rpcError(call: Promise<unknown>): Promise<RpcError> {
  try {
    await call;
  } catch (error) {
    if (error instanceof RpcError) return error;
    throw error;
  }
  throw new Error('the call succeeded');
}

export interface NodeEndpoints {
  readonly node: ApiNode;
  readonly server: ApiServer;
  readonly lock: ServiceClient;
  /** The same calls over one Session stream (opened at its first call). */
  readonly session: StreamClient;
  readonly cluster: ServiceClient;
  readonly health: ServiceClient;
}

/** `auth`: the node's `auth` section (each node its own Authenticator, as each process has). */
export async function serve(
  node: ApiNode,
  logs: LogEntry[],
  options: Partial<ApiOptions> = {},
  auth: AuthConfig | null = null,
): Promise<NodeEndpoints> {
  const logger: ApiLogger = (level, message, fields) => {
    if (level !== 'debug') logs.push({ level, message, fields });
  };
  const server = await startApiServer({
    node,
    address: '127.0.0.1:0',
    logger,
    options,
    raft: NODE_RAFT,
    ...(auth === null ? {} : { auth: new Authenticator(auth) }),
  });
  return {
    node,
    server,
    lock: new ServiceClient(LOCK_SERVICE_NAME, server.port),
    session: new StreamClient(server.port),
    cluster: new ServiceClient(CLUSTER_SERVICE_NAME, server.port),
    health: new ServiceClient(HEALTH_SERVICE_NAME, server.port),
  };
}

export class ApiCluster {
  readonly network = new MemoryNetwork();
  readonly nodes = new Map<NodeId, DlmNode>();
  readonly storages = new Map<NodeId, MemoryWritableStorage>();
  readonly endpoints = new Map<NodeId, NodeEndpoints>();
  readonly logs: LogEntry[] = [];
  private requests = 0;

  static async start(
    options: Partial<ApiOptions> = {},
    nodeOptions: Partial<NodeRuntimeOptions> = {},
    auth: AuthConfig | null = null,
  ): Promise<ApiCluster> {
    const cluster = new ApiCluster();
    for (const [position, id] of IDS.entries()) {
      const storage = MemoryWritableStorage.bootstrap({ voters: IDS, learners: [] });
      const node = new DlmNode(
        id,
        storage,
        cluster.network.connect(id),
        { ...NODE_OPTIONS, ...nodeOptions },
        undefined,
        position + 1,
      );
      node.start();
      cluster.nodes.set(id, node);
      cluster.storages.set(id, storage);
      cluster.endpoints.set(id, await serve(node, cluster.logs, options, auth));
    }
    await cluster.leaderId();
    return cluster;
  }

  /** The session calls of node `id` over `transport`. */
  via(id: NodeId, transport: Transport): LockCaller {
    const endpoints = this.at(id);
    return transport === 'unary' ? endpoints.lock : endpoints.session;
  }

  at(id: NodeId): NodeEndpoints {
    const endpoints = this.endpoints.get(id);
    if (endpoints === undefined) throw new Error(`no node ${id}`);
    return endpoints;
  }

  /**
   * The leader, once every running node agrees on it and has applied the lock rules
   * (NODE_OPTIONS.lock, agreed through the log), which the API validates against.
   */
  async leaderId(): Promise<NodeId> {
    for (let attempt = 0; attempt < 1_000; attempt++) {
      const views = [...this.nodes.values()].map((node) => node.status().leaderId);
      const [first] = views;
      const rulesSet = [...this.nodes.values()].every((node) => node.locks.rulesSetIndex !== null);
      if (first !== null && first !== undefined && rulesSet && views.every((v) => v === first))
        return first;
      await sleep(10);
    }
    throw new Error('no agreed leader within 10 s');
  }

  async followerId(): Promise<NodeId> {
    const leader = await this.leaderId();
    const follower = IDS.find((id) => id !== leader && this.nodes.has(id));
    if (follower === undefined) throw new Error('no follower');
    return follower;
  }

  requestId(): string {
    return String(++this.requests);
  }

  /** Opens a session through `id`, retrying while the cluster settles. */
  async openSession(id: NodeId, ttlMs = 10_000): Promise<string> {
    const response = await retrying(() =>
      this.at(id).lock.call('OpenSession', {
        ttl_ms: String(ttlMs),
        client_name: 'test',
        request_id: this.requestId(),
      }),
    );
    return response.session_id as string;
  }

  async stop(): Promise<void> {
    for (const endpoints of this.endpoints.values()) {
      endpoints.lock.close();
      endpoints.session.close();
      endpoints.cluster.close();
      endpoints.health.close();
    }
    await Promise.all([...this.endpoints.values()].map((endpoints) => endpoints.server.close(200)));
    await Promise.all([...this.nodes.values()].map((node) => node.stop()));
  }
}

/** Retries a call on UNAVAILABLE, as a client does while a leader is being elected. */
export async function retrying<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof RpcError) || error.code !== grpc.status.UNAVAILABLE || attempt >= 50)
        throw error;
      await sleep(50);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `check` holds. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`not true within ${timeoutMs} ms`);
    await sleep(20);
  }
}
