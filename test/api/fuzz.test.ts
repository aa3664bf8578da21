import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLUSTER_SERVICE_NAME,
  clientDefinition,
  HEALTH_SERVICE_NAME,
  LOCK_SERVICE_NAME,
  packageDefinition,
} from '../../src/api/proto.ts';
import type { FieldDescriptor } from '../../src/api/wire-check.ts';
import { ApiCluster, eventually, IDS, type ServiceClient } from './harness.ts';

/**
 * Malformed requests, as bytes no well-behaved client would send, for every request
 * message: each field absent, well-typed with edge values, or with the wrong wire type;
 * repeated; unknown fields; trailing garbage. Each call must end with a clean status
 * (never INTERNAL or UNKNOWN, which would mean a crash or an unmapped error), and the
 * cluster must go on serving with no call left in flight.
 */
const ALLOWED = new Set([
  grpc.status.OK,
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.RESOURCE_EXHAUSTED,
  // A well-formed Acquire on a held lock may wait past the fuzz call's deadline.
  grpc.status.DEADLINE_EXCEEDED,
  // A clean refusal if a loaded machine makes the cluster re-elect mid-run.
  grpc.status.UNAVAILABLE,
]);

// ------------------------------------------------------------------ protobuf encoding

function varint(value: bigint): number[] {
  let rest = BigInt.asUintN(64, value);
  const bytes: number[] = [];
  do {
    const low = Number(rest & 0x7fn);
    rest >>= 7n;
    bytes.push(rest === 0n ? low : low | 0x80);
  } while (rest !== 0n);
  return bytes;
}

function tag(field: number, wireType: number): number[] {
  return varint((BigInt(field) << 3n) | BigInt(wireType));
}

function delimited(field: number, payload: Uint8Array): number[] {
  return [...tag(field, 2), ...varint(BigInt(payload.length)), ...payload];
}

/** One encoded field, of any wire type, with a payload that fits it. */
function anyWireField(field: number): fc.Arbitrary<number[]> {
  return fc.oneof(
    fc
      .bigInt({ min: 0n, max: 2n ** 64n - 1n })
      .map((value) => [...tag(field, 0), ...varint(value)]),
    fc.uint8Array({ minLength: 8, maxLength: 8 }).map((bytes) => [...tag(field, 1), ...bytes]),
    fc.uint8Array({ maxLength: 40 }).map((bytes) => delimited(field, bytes)),
    fc.uint8Array({ minLength: 4, maxLength: 4 }).map((bytes) => [...tag(field, 5), ...bytes]),
  );
}

const UINT64_EDGES = [0n, 1n, 2n, 1000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n];

function wellTyped(field: FieldDescriptor): fc.Arbitrary<number[]> {
  switch (field.type) {
    case 'TYPE_STRING':
      return fc
        .oneof(
          fc.constantFrom('', 'a', 'locks/1', 'x'.repeat(257), 'é'.repeat(600), 'dlm.v1.Lock'),
          fc.string({ maxLength: 30 }),
          fc.string({ unit: 'binary', maxLength: 80 }),
        )
        .map((text) => delimited(field.number, Buffer.from(text, 'utf8')));
    case 'TYPE_UINT64':
      return fc
        .oneof(
          fc.constantFrom(...UINT64_EDGES),
          fc.bigInt({ min: 0n, max: 20_000n }),
          fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        )
        .map((value) => [...tag(field.number, 0), ...varint(value)]);
    case 'TYPE_UINT32':
      // A page limit: around runtime.listItemsMax, and any 32-bit value (or more: a
      // varint too long for the type).
      return fc
        .oneof(
          fc.constantFrom(0n, 1n, 100n, 1_000n, 1_001n, 2n ** 32n - 1n, 2n ** 32n),
          fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        )
        .map((value) => [...tag(field.number, 0), ...varint(value)]);
    case 'TYPE_ENUM':
    case 'TYPE_BOOL':
      return fc
        .oneof(
          fc.constantFrom(0n, 1n, 2n, 7n, -1n),
          fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
        )
        .map((value) => [...tag(field.number, 0), ...varint(value)]);
    case 'TYPE_MESSAGE':
      // A nested message: a Session stream's call (AcquireRequest...) or
      // SetLockRulesRequest.rules, fuzzed field by field like a request; or noise.
      return fc.oneof(
        messageArbitrary(nestedFields(field)).map((bytes) => delimited(field.number, bytes)),
        fc.uint8Array({ maxLength: 40 }).map((bytes) => delimited(field.number, bytes)),
      );
    default:
      throw new Error(`no arbitrary for ${field.type}`);
  }
}

function nestedFields(field: FieldDescriptor): readonly FieldDescriptor[] {
  const type = packageDefinition[`dlm.v1.${field.typeName}`];
  if (type === undefined || !('format' in type)) throw new Error(`no message ${field.typeName}`);
  return (type.type as { field: FieldDescriptor[] }).field;
}

function fieldArbitrary(field: FieldDescriptor): fc.Arbitrary<number[]> {
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant<number[]>([]) },
    { weight: 5, arbitrary: wellTyped(field) },
    { weight: 1, arbitrary: anyWireField(field.number) },
    {
      weight: 1,
      arbitrary: fc.tuple(wellTyped(field), wellTyped(field)).map(([a, b]) => [...a, ...b]),
    },
    {
      weight: 1,
      arbitrary: fc.uint8Array({ maxLength: 12 }).map((bytes) => delimited(field.number, bytes)),
    },
  );
}

function messageArbitrary(fields: readonly FieldDescriptor[]): fc.Arbitrary<Buffer> {
  const unknownField = fc.integer({ min: 9, max: 5_000 }).chain(anyWireField);
  return fc
    .tuple(
      fc.tuple(...fields.map(fieldArbitrary)),
      fc.array(unknownField, { maxLength: 2 }),
      fc.oneof(
        { weight: 4, arbitrary: fc.constant(new Uint8Array()) },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 6 }) },
      ),
      fc.boolean(),
    )
    .map(([known, unknown, garbage, shuffle]) => {
      const parts = [...known, ...unknown];
      if (shuffle) parts.reverse();
      return Buffer.from([...parts.flat(), ...garbage]);
    });
}

// ------------------------------------------------------------------ the calls

interface Target {
  readonly service: string;
  readonly method: string;
  readonly streaming: boolean;
  /** Lock.Session: calls go up as messages, each answered with a message. */
  readonly bidirectional: boolean;
  readonly fields: readonly FieldDescriptor[];
}

function targets(): Target[] {
  return [LOCK_SERVICE_NAME, CLUSTER_SERVICE_NAME, HEALTH_SERVICE_NAME].flatMap((service) =>
    Object.entries(clientDefinition(service)).map(([method, definition]) => {
      const type = (
        definition as unknown as { requestType: { type: { field: FieldDescriptor[] } } }
      ).requestType.type;
      return {
        service,
        method,
        streaming: definition.responseStream,
        bidirectional: definition.requestStream,
        fields: type.field,
      };
    }),
  );
}

/**
 * The status a call ended with; a stream counts as OK once the server has accepted it.
 * On Lock.Session, the status of the call the message made: its answer's error code,
 * or how the stream ended when the message made no call.
 */
function outcome(client: ServiceClient, target: Target, bytes: Buffer): Promise<grpc.status> {
  if (target.bidirectional) {
    return new Promise((resolve) => {
      const stream = client.bidiBytes(target.method, { deadlineMs: 2_000 });
      stream.once('data', (answer: { result?: string; error?: { code: number } }) => {
        resolve(answer.result === 'error' ? (answer.error?.code ?? grpc.status.UNKNOWN) : 0);
        stream.cancel();
      });
      stream.on('error', (error: { code: grpc.status }) => resolve(error.code));
      stream.on('status', (status: { code: grpc.status }) => resolve(status.code));
      stream.write(bytes);
      // Half-closed: the node answers the call in flight, if the message made one, then ends.
      stream.end();
    });
  }
  if (!target.streaming) {
    return client.callBytes(target.method, bytes, { deadlineMs: 2_000 }).then(
      () => grpc.status.OK,
      (error: { code: grpc.status }) => error.code,
    );
  }
  return new Promise((resolve) => {
    const stream = client.streamBytes(target.method, bytes, { deadlineMs: 2_000 });
    const accepted = () => {
      resolve(grpc.status.OK);
      stream.cancel();
    };
    stream.once('metadata', accepted);
    stream.once('data', accepted);
    stream.on('error', (error: { code: grpc.status }) => resolve(error.code));
    stream.on('status', (status: { code: grpc.status }) => resolve(status.code));
  });
}

describe('fuzzing every request message', () => {
  let cluster: ApiCluster;
  beforeAll(async () => {
    cluster = await ApiCluster.start();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  function client(id: string, service: string): ServiceClient {
    const endpoints = cluster.at(id as (typeof IDS)[number]);
    if (service === LOCK_SERVICE_NAME) return endpoints.lock;
    if (service === CLUSTER_SERVICE_NAME) return endpoints.cluster;
    return endpoints.health;
  }

  it('answers each malformed request with a clean status and keeps serving', async () => {
    // Real sessions with low ids, so some fuzzed requests reach the state machine.
    for (const id of IDS) await cluster.openSession(id);
    const all = targets();
    expect(all.map((target) => target.method)).toEqual(
      expect.arrayContaining([
        'OpenSession',
        'KeepAlive',
        'CloseSession',
        'Acquire',
        'Release',
        'ValidateFence',
        'Describe',
        'Watch',
        'Session',
        'Status',
        'Check',
      ]),
    );
    const seen = new Map<string, Set<grpc.status>>();
    const call = fc
      .tuple(fc.constantFrom(...IDS), fc.constantFrom(...all))
      .chain(([id, target]) =>
        messageArbitrary(target.fields).map((bytes) => ({ id, target, bytes })),
      );
    await fc.assert(
      fc.asyncProperty(call, async ({ id, target, bytes }) => {
        const code = await outcome(client(id, target.service), target, bytes);
        const key = `${target.service}/${target.method}`;
        seen.set(key, (seen.get(key) ?? new Set()).add(code));
        expect(ALLOWED.has(code), `${key} ${bytes.toString('hex')} gave ${grpc.status[code]}`).toBe(
          true,
        );
      }),
      { numRuns: 500 },
    );
    // Every request type was exercised, and malformed ones were refused by name.
    expect(seen.size).toBe(all.length);
    expect([...seen.values()].some((codes) => codes.has(grpc.status.INVALID_ARGUMENT))).toBe(true);

    // Still serving on every node, with nothing left in flight.
    for (const id of IDS) {
      expect(Number(await cluster.openSession(id))).toBeGreaterThan(0);
      expect((await cluster.at(id).cluster.call('Status', {})).node_id).toBe(id);
    }
    await eventually(() => IDS.every((id) => cluster.at(id).server.callsInFlight() === 0));
    expect(cluster.logs.filter((entry) => entry.level === 'error')).toEqual([]);
  });
});
