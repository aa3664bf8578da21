import * as grpc from '@grpc/grpc-js';
import { expect } from 'vitest';
import { loadServices, newRequestId, type ProcessCluster } from './process-cluster.ts';

/**
 * A caller of a real-process cluster with its own credentials (a client certificate, a
 * bearer token, or none), whose refusals are kept as status and dlm-error-code, for the
 * issue 15 tests (authz, auth-reload).
 */
export type Reply = Record<string, unknown>;
export type Outcome =
  | { ok: true; reply: Reply }
  | { ok: false; code: number; errorCode: string; message: string };

function refusal(error: grpc.ServiceError): Outcome {
  return {
    ok: false,
    code: error.code,
    errorCode: String(error.metadata?.get('dlm-error-code')[0] ?? ''),
    message: error.details,
  };
}

/** A Watch left open: `ended` settles with the status it ended with, unless cancelled. */
export interface OpenWatch {
  readonly streaming: Promise<void>;
  readonly ended: Promise<Outcome>;
  cancel(): void;
}

/** A Lock.Session stream left open: calls on it answer with their SessionResponse. */
export interface OpenSessionStream {
  call(call: object): Promise<Reply>;
  end(): void;
}

/** One client per node and service. */
export class Caller {
  private readonly clients = new Map<string, grpc.Client>();

  constructor(
    private readonly cluster: ProcessCluster,
    private readonly credentials: grpc.ChannelCredentials,
    private readonly options: grpc.ClientOptions = {},
  ) {}

  call(node: string, method: string, request: object, service = 'Lock'): Promise<Outcome> {
    const client = this.client(node, service) as unknown as Record<
      string,
      (
        request: object,
        options: grpc.CallOptions,
        callback: (error: grpc.ServiceError | null, reply: Reply) => void,
      ) => void
    >;
    return new Promise((resolve) => {
      client[method]?.call(client, request, { deadline: Date.now() + 10_000 }, (error, reply) =>
        resolve(error === null ? { ok: true, reply } : refusal(error)),
      );
    });
  }

  /** The call must succeed; its reply. */
  async ok(node: string, method: string, request: object, service = 'Lock'): Promise<Reply> {
    const outcome = await this.call(node, method, request, service);
    if (!outcome.ok) {
      throw new Error(`${method} failed: ${outcome.code} ${outcome.errorCode} ${outcome.message}`);
    }
    return outcome.reply;
  }

  async openSession(node: string): Promise<string> {
    const reply = await this.ok(node, 'OpenSession', {
      ttl_ms: '60000',
      client_name: 'authz',
      request_id: newRequestId(),
    });
    return String(reply.session_id);
  }

  async acquire(node: string, lock: string, session: string): Promise<Outcome> {
    return this.call(node, 'Acquire', {
      lock,
      session_id: session,
      mode: 'EXCLUSIVE',
      wait_ms: '0',
      request_id: newRequestId(),
      owner: `owner-of-${lock}`,
    });
  }

  /** A Watch: the status it ended with, or 'streaming' once its initial metadata came. */
  async watch(node: string, prefix: string): Promise<Outcome | 'streaming'> {
    const watch = this.openWatch(node, prefix);
    const first = await Promise.race([
      watch.streaming.then(() => 'streaming' as const),
      watch.ended,
    ]);
    watch.cancel();
    return first;
  }

  openWatch(node: string, prefix: string): OpenWatch {
    const client = this.client(node, 'Lock') as unknown as {
      Watch(request: object): grpc.ClientReadableStream<unknown>;
    };
    const stream = client.Watch({ prefix });
    stream.on('data', () => {});
    return {
      streaming: new Promise((resolve) => stream.once('metadata', () => resolve())),
      ended: new Promise((resolve) =>
        stream.on('error', (error: grpc.ServiceError) => resolve(refusal(error))),
      ),
      cancel: () => stream.cancel(),
    };
  }

  /** One call on a new Lock.Session stream: its SessionResponse (result or error). */
  async sessionCall(node: string, call: object): Promise<Reply> {
    const stream = this.sessionStream(node);
    try {
      return await stream.call(call);
    } finally {
      stream.end();
    }
  }

  sessionStream(node: string): OpenSessionStream {
    const client = this.client(node, 'Lock') as unknown as {
      Session(): grpc.ClientDuplexStream<object, Reply>;
    };
    const stream = client.Session();
    const pending = new Map<string, { resolve(reply: Reply): void; reject(error: Error): void }>();
    let calls = 0;
    stream.on('data', (response: Reply) => {
      const callId = String(response.call_id);
      pending.get(callId)?.resolve(response);
      pending.delete(callId);
    });
    stream.on('error', (error: grpc.ServiceError) => {
      if (error.code === grpc.status.CANCELLED) return;
      for (const waiting of pending.values()) waiting.reject(error);
      pending.clear();
    });
    return {
      call: (call) =>
        new Promise((resolve, reject) => {
          const callId = String(++calls);
          pending.set(callId, { resolve, reject });
          stream.write({ call_id: callId, timeout_ms: '10000', ...call });
        }),
      end: () => stream.end(),
    };
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
  }

  private client(node: string, service: string): grpc.Client {
    const key = `${service}/${node}`;
    let client = this.clients.get(key);
    if (client === undefined) {
      const address = this.cluster.nodes.find((each) => each.id === node)?.clientAddress ?? '';
      const Client = loadServices()[service];
      if (Client === undefined) throw new Error(`no service ${service}`);
      client = new Client(address, this.credentials, this.options);
      this.clients.set(key, client);
    }
    return client;
  }
}

export function expectRefused(
  outcome: Outcome | 'streaming',
  code: grpc.status,
  errorCode: string,
): void {
  expect(outcome).toMatchObject({ ok: false, code, errorCode });
}

/**
 * A write's outcome once it was judged: `call` (which must reuse its request id) is made
 * again while it answers UNAVAILABLE, 100 ms apart, for at most 10 s. Right after
 * start-up the cluster may still change leader once, and a write then finds none; a
 * client retries that, and an auth check is about what the write is told once placed.
 */
export async function untilPlaced(call: () => Promise<Outcome>): Promise<Outcome> {
  const deadline = Date.now() + 10_000;
  let outcome = await call();
  while (!outcome.ok && outcome.code === grpc.status.UNAVAILABLE && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    outcome = await call();
  }
  return outcome;
}

/** Until `node` answers Status knowing a leader (bounded: 10 s). */
export async function serving(caller: Caller, node: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const outcome = await caller.call(node, 'Status', {}, 'Cluster');
    const header = outcome.ok ? (outcome.reply.header as { leader_id?: string }) : undefined;
    if ((header?.leader_id ?? '') !== '') return;
    if (Date.now() > deadline) throw new Error(`${node} did not serve with a leader in 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
