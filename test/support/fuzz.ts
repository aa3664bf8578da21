import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { Prng } from '../../src/util/prng.ts';

/**
 * What the fuzzes of a live node (test/cluster/fuzz.test.ts, authz-fuzz.test.ts) share:
 * the unary methods with their fields, hostile values of every proto type, raw bytes,
 * one call whatever its bytes, and the node's resident memory.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface FieldDescriptor {
  readonly name: string;
  readonly type: string;
  readonly label: string;
}

export interface UnaryMethod {
  readonly path: string;
  readonly name: string;
  readonly service: 'Lock' | 'Cluster';
  readonly fields: readonly FieldDescriptor[];
  readonly serialize: (value: object) => Buffer;
  readonly deserialize: (bytes: Buffer) => Record<string, unknown>;
}

/** Every unary method of dlm.v1.Lock and dlm.v1.Cluster, but those named in `skipped`. */
export function unaryMethods(skipped: ReadonlySet<string> = new Set()): UnaryMethod[] {
  const definition = loadSync(['dlm.proto'], {
    includeDirs: [join(ROOT, 'proto')],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  const methods: UnaryMethod[] = [];
  for (const service of ['Lock', 'Cluster'] as const) {
    const methodsOf = definition[`dlm.v1.${service}`] as grpc.ServiceDefinition;
    for (const [name, method] of Object.entries(methodsOf)) {
      if (method.requestStream || method.responseStream || skipped.has(name)) continue;
      const type = (method as unknown as { requestType: { type: { field: FieldDescriptor[] } } })
        .requestType.type;
      methods.push({
        path: method.path,
        name,
        service,
        fields: type.field,
        serialize: method.requestSerialize as (value: object) => Buffer,
        deserialize: method.responseDeserialize as (bytes: Buffer) => Record<string, unknown>,
      });
    }
  }
  return methods;
}

/** Mostly short printable text, sometimes any code point, now and then 4-20 k characters. */
export function randomString(prng: Prng): string {
  const length = prng.chance(0.05) ? prng.intBetween(4_000, 20_000) : prng.intBetween(0, 40);
  let text = '';
  for (let i = 0; i < length; i++) {
    text += prng.chance(0.8)
      ? String.fromCharCode(prng.intBetween(32, 126))
      : String.fromCodePoint(prng.intBetween(0, 0x10ffff - 0x800));
  }
  return text;
}

export function randomUint64(prng: Prng): string {
  return prng.pick([
    () => '0',
    () => '1',
    () => String(prng.intBetween(0, 1_000)),
    () => String(prng.intBetween(0, 2 ** 31)),
    () => '18446744073709551615',
    () => '9007199254740993',
  ])();
}

/** A hostile value of the field's proto type (a repeated field: a list, now and then a huge one). */
export function randomValue(prng: Prng, field: FieldDescriptor): unknown {
  const one = (): unknown => {
    switch (field.type) {
      case 'TYPE_STRING':
        return randomString(prng);
      case 'TYPE_BOOL':
        return prng.chance(0.5);
      case 'TYPE_ENUM':
        return prng.pick(['EXCLUSIVE', 'SHARED']);
      case 'TYPE_MESSAGE':
        return {};
      default:
        return randomUint64(prng);
    }
  };
  if (field.label !== 'LABEL_REPEATED') return one();
  const count = prng.chance(0.05) ? prng.intBetween(10_001, 20_000) : prng.intBetween(0, 20);
  return Array.from({ length: count }, one);
}

export function randomBytes(prng: Prng, max: number): Buffer {
  const bytes = Buffer.alloc(prng.intBetween(0, max));
  for (let i = 0; i < bytes.length; i++) bytes[i] = prng.nextUint32() & 0xff;
  return bytes;
}

/** How a call ended: its status, the dlm-error-code it carried ('' for none), its reply. */
export interface CallOutcome {
  readonly code: grpc.status;
  readonly errorCode: string;
  readonly details: string;
  readonly reply: Buffer | null;
}

/** One unary call with `body` as its bytes, whatever they are. */
export function rawUnaryCall(
  client: grpc.Client,
  path: string,
  body: Buffer,
  metadata = new grpc.Metadata(),
  timeoutMs = 2_000,
): Promise<CallOutcome> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
      body,
      metadata,
      { deadline: Date.now() + timeoutMs },
      (error, reply) => {
        resolve(
          error === null
            ? { code: grpc.status.OK, errorCode: '', details: '', reply: reply ?? null }
            : {
                code: error.code,
                errorCode: String(error.metadata?.get('dlm-error-code')[0] ?? ''),
                details: error.details,
                reply: null,
              },
        );
      },
    );
  });
}

/** A generic client: any path, bytes in and out. */
export function genericClient(address: string, credentials: grpc.ChannelCredentials): grpc.Client {
  const Generic = grpc.makeGenericClientConstructor({}, 'Fuzz');
  return new Generic(address, credentials);
}

/** Opens a TCP connection to `address`, writes `bytes`, and waits until it closes (2 s at most). */
export function rawSocket(address: string, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const at = address.lastIndexOf(':');
    const socket = net.connect(
      { host: address.slice(0, at), port: Number(address.slice(at + 1)) },
      () => socket.end(bytes),
    );
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    socket.setTimeout(2_000, () => socket.destroy());
    socket.resume();
  });
}

/** The HTTP/2 connection preface: raw bytes after it reach gRPC's frame parser. */
export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** A process's resident memory in KiB (Linux). */
export function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}
