import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * Plain grpc-js calls to one node's public API at a given address, with no retries and
 * no leader discovery: the fault tests must see what *that* node answers.
 */
const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

type Callback = (error: grpc.ServiceError | null, response: Record<string, unknown>) => void;
type Method = (
  request: object,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: Callback,
) => void;

let services: {
  Lock: grpc.ServiceClientConstructor;
  Cluster: grpc.ServiceClientConstructor;
} | null = null;
const clients = new Map<string, grpc.Client>();

function service(name: 'Lock' | 'Cluster'): grpc.ServiceClientConstructor {
  if (services === null) {
    const definition = protoLoader.loadSync(join(PROTO_DIR, 'dlm.proto'), {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      includeDirs: [PROTO_DIR],
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      dlm: { v1: { Lock: grpc.ServiceClientConstructor; Cluster: grpc.ServiceClientConstructor } };
    };
    services = loaded.dlm.v1;
  }
  return services[name];
}

export function callAt(
  address: string,
  method: string,
  request: object,
  deadlineMs: number,
  serviceName: 'Lock' | 'Cluster' = 'Lock',
): Promise<Record<string, unknown>> {
  const key = `${serviceName}@${address}`;
  let client = clients.get(key);
  if (client === undefined) {
    const Client = service(serviceName);
    // Nodes start while the first calls go out; grpc-js would back off for up to two
    // minutes between connection attempts, longer than any of these tests waits.
    client = new Client(address, grpc.credentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1_000,
    });
    clients.set(key, client);
  }
  const invoke = (client as unknown as Record<string, Method>)[method];
  if (invoke === undefined) return Promise.reject(new Error(`no method ${serviceName}.${method}`));
  return new Promise((resolve, reject) =>
    invoke.call(
      client,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (error, response) => (error === null ? resolve(response) : reject(error)),
    ),
  );
}

/** Retries until `deadlineMs` passes: for calls that must succeed once the cluster settles. */
export async function callUntil(
  address: string,
  method: string,
  request: object,
  deadlineMs: number,
  serviceName: 'Lock' | 'Cluster' = 'Lock',
): Promise<Record<string, unknown>> {
  const endMs = Date.now() + deadlineMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await callAt(
        address,
        method,
        request,
        Math.min(2_000, Math.max(100, endMs - Date.now())),
        serviceName,
      );
    } catch (error) {
      if (Date.now() >= endMs)
        throw new Error(
          `${method} at ${address} failed until its deadline (${attempt + 1} attempts): ${(error as Error).message}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

export function closeClients(): void {
  for (const client of clients.values()) client.close();
  clients.clear();
}

let counter = 0;
/** A request id unique within this process. */
export function requestId(): string {
  counter++;
  return `${process.pid}${String(counter).padStart(6, '0')}`;
}
