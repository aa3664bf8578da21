import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { newRequestId } from '../../client/index.ts';
import type { BenchSession, SessionSpec } from './bench-session.ts';

/**
 * A dlm session over plain grpc-js unary calls, without the client library (no
 * retries, no settle, no safe-deadline timers): the same kind of client the bench uses
 * for etcd, so that `--dlm-client raw` compares the servers with equal client costs.
 * A failed call is just an error here.
 */
const PROTO_PATH = fileURLToPath(new URL('../../../proto/dlm.proto', import.meta.url));
const CALL_TIMEOUT_MS = 10_000;

type Answer = Record<string, unknown>;
type Unary = (
  request: object,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, answer: Answer) => void,
) => grpc.ClientUnaryCall;

let lockConstructor: grpc.ServiceClientConstructor | null = null;

function lockService(): grpc.ServiceClientConstructor {
  if (lockConstructor !== null) return lockConstructor;
  const definition = loadSync(PROTO_PATH, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    dlm: { v1: { Lock: grpc.ServiceClientConstructor } };
  };
  lockConstructor = loaded.dlm.v1.Lock;
  return lockConstructor;
}

export async function openRawDlmSession(spec: SessionSpec): Promise<BenchSession> {
  const address = spec.endpoints[0];
  if (address === undefined) throw new Error('dlm raw session: no endpoint given');
  const Lock = lockService();
  const client = new Lock(address, grpc.credentials.createInsecure());
  const call = (method: string, request: object, timeoutMs = CALL_TIMEOUT_MS) =>
    unary(client, method, request, timeoutMs);
  let sessionId: string;
  try {
    const opened = await call('OpenSession', {
      ttl_ms: String(spec.ttlMs),
      client_name: spec.clientName,
      request_id: newRequestId(),
    });
    sessionId = String(opened.session_id);
  } catch (error) {
    client.close();
    throw error;
  }
  // A third of the TTL, as the client library does; a failure shows up as lock errors.
  const keepAlive = setInterval(
    () => void call('KeepAlive', { session_id: sessionId }).catch(() => {}),
    Math.floor(spec.ttlMs / 3),
  );
  return {
    async acquire(lock, waitMs) {
      const answer = await call(
        'Acquire',
        {
          lock,
          session_id: sessionId,
          mode: 'EXCLUSIVE',
          wait_ms: String(waitMs),
          request_id: newRequestId(),
          owner: spec.clientName,
        },
        waitMs + CALL_TIMEOUT_MS,
      );
      if (answer.acquired !== true) throw new Error(`${lock} not acquired within ${waitMs} ms`);
      const token = String(answer.fencing_token);
      return {
        token,
        release: async () => {
          await call('Release', {
            lock,
            session_id: sessionId,
            fencing_token: token,
            request_id: newRequestId(),
          });
        },
      };
    },
    async close() {
      clearInterval(keepAlive);
      try {
        await call('CloseSession', { session_id: sessionId, request_id: newRequestId() });
      } finally {
        client.close();
      }
    },
  };
}

function unary(client: grpc.Client, method: string, request: object, timeoutMs: number) {
  const invoke = (client as unknown as Record<string, Unary>)[method];
  if (invoke === undefined) return Promise.reject(new Error(`dlm proto has no Lock.${method}`));
  return new Promise<Answer>((resolve, reject) => {
    invoke.call(client, request, { deadline: Date.now() + timeoutMs }, (error, answer) =>
      error === null ? resolve(answer) : reject(error),
    );
  });
}
