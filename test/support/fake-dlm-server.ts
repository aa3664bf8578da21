import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/**
 * A gRPC server of the dlm.v1 services whose answers a test scripts: for cases a real
 * cluster cannot be put in on purpose (stale leader hints that point at each other,
 * answers that break the contract). Each call is recorded.
 */
const PROTO_PATH = fileURLToPath(new URL('../../proto/dlm.proto', import.meta.url));

type Wire = Record<string, unknown>;

/** A scripted answer: a response object, or an error with its status and trailers. */
export type FakeAnswer =
  | { readonly response: Wire }
  | { readonly status: grpc.status; readonly trailers?: Record<string, string> };

export type FakeHandler = (method: string, request: Wire) => FakeAnswer | Promise<FakeAnswer>;

export class FakeDlmServer {
  private constructor(
    private readonly server: grpc.Server,
    readonly port: number,
    /** Every Lock and Cluster call answered so far, in order. */
    readonly calls: readonly { method: string; request: Wire }[],
  ) {}

  static async start(handler: FakeHandler): Promise<FakeDlmServer> {
    const definition = loadSync(PROTO_PATH, {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      dlm: { v1: Record<'Lock' | 'Cluster', grpc.ServiceClientConstructor> };
    };
    const server = new grpc.Server();
    const calls: { method: string; request: Wire }[] = [];
    for (const name of ['Lock', 'Cluster'] as const) {
      const service = loaded.dlm.v1[name].service;
      const implementation: grpc.UntypedServiceImplementation = {};
      for (const [method, definition] of Object.entries(service)) {
        // Scripted answers are unary; a streaming method stays unimplemented, as on an
        // older server (the client then falls back to unary calls).
        if (definition.requestStream || definition.responseStream) continue;
        implementation[method] = (
          call: grpc.ServerUnaryCall<Wire, Wire>,
          callback: grpc.sendUnaryData<Wire>,
        ) => {
          calls.push({ method, request: call.request });
          void Promise.resolve(handler(method, call.request)).then((answer) => {
            if ('response' in answer) {
              callback(null, answer.response);
              return;
            }
            const metadata = new grpc.Metadata();
            for (const [key, value] of Object.entries(answer.trailers ?? {}))
              metadata.set(key, value);
            callback({ code: answer.status, details: 'scripted', metadata }, null);
          });
        };
      }
      server.addService(service, implementation);
    }
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error === null ? resolve(bound) : reject(error),
      ),
    );
    return new FakeDlmServer(server, port, calls);
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  count(method: string): number {
    return this.calls.filter((call) => call.method === method).length;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.tryShutdown(() => resolve()));
  }
}
