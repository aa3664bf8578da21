/**
 * Review of 55df74f (the fast Long, now src/api/protobuf-long.ts): every uint64 of every message of the
 * API, serialized and deserialized through the loader's own functions, gives the same
 * bytes, the same decoded text and the same refusal whether protobufjs's util.Long is
 * the fast subclass or long.js itself. util.Long is read at call time, so the two can be
 * swapped in one process.
 */
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { clientDefinition, packageDefinition } from '../../src/api/proto.ts';
import { installFastProtobufLong } from '../../src/api/protobuf-long.ts';

interface Field {
  name: string;
  label: string;
  type: string;
  typeName: string;
}
type Serialize = (value: object) => Buffer;
type Deserialize = (bytes: Buffer) => unknown;

const loaderRequire = createRequire(createRequire(import.meta.url).resolve('@grpc/proto-loader'));
const protobuf = loaderRequire('protobufjs') as { util: { Long: unknown } };
const Long = loaderRequire('long') as unknown;

function fieldsOf(typeName: string): Field[] {
  const type = packageDefinition[`dlm.v1.${typeName}`] ?? packageDefinition[typeName];
  return ((type as { type?: { field?: Field[] } } | undefined)?.type?.field ?? []) as Field[];
}

/** A message of `typeName` with every uint64 (at any depth) taken from `next`. */
function build(typeName: string, next: () => unknown, depth = 0): Record<string, unknown> {
  const message: Record<string, unknown> = {};
  for (const field of fieldsOf(typeName)) {
    const repeated = field.label === 'LABEL_REPEATED';
    let make: (() => unknown) | null = null;
    if (field.type === 'TYPE_UINT64') make = next;
    else if (field.type === 'TYPE_MESSAGE' && depth < 3)
      make = () => build(field.typeName, next, depth + 1);
    if (make === null) continue;
    message[field.name] = repeated ? [make(), make()] : make();
  }
  return message;
}

function outcome(run: () => unknown): unknown {
  try {
    const value = run();
    return Buffer.isBuffer(value) ? { bytes: value.toString('hex') } : { value };
  } catch (error) {
    return { error: String(error) };
  }
}

function withLong<T>(long: unknown, run: () => T): T {
  const saved = protobuf.util.Long;
  protobuf.util.Long = long;
  try {
    return run();
  } finally {
    protobuf.util.Long = saved;
  }
}

const methods: { name: string; type: string; ser: Serialize; de: Deserialize }[] = [];
for (const service of ['dlm.v1.Lock', 'dlm.v1.Cluster', 'grpc.health.v1.Health']) {
  for (const [method, def] of Object.entries(clientDefinition(service))) {
    const d = def as unknown as {
      requestSerialize: Serialize;
      requestDeserialize: Deserialize;
      responseSerialize: Serialize;
      responseDeserialize: Deserialize;
      requestType: { type: { name: string } };
      responseType: { type: { name: string } };
    };
    methods.push({
      name: `${method} req`,
      type: d.requestType.type.name,
      ser: d.requestSerialize,
      de: d.requestDeserialize,
    });
    methods.push({
      name: `${method} res`,
      type: d.responseType.type.name,
      ser: d.responseSerialize,
      de: d.responseDeserialize,
    });
  }
}

const edge = (p: bigint) => fc.bigInt({ min: p - 3n, max: p + 3n }).filter((v) => v >= 0n);
const text = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 64n + 10n }).map(String),
  fc
    .oneof(
      edge(2n ** 32n),
      edge(2n ** 53n),
      edge(10n ** 15n),
      edge(10n ** 16n),
      edge(2n ** 63n),
      edge(2n ** 64n),
    )
    .map(String),
  fc
    .tuple(fc.nat(20), fc.bigInt({ min: 0n, max: 10n ** 16n }))
    .map(([zeros, v]) => '0'.repeat(zeros) + v),
  fc.constantFrom(
    '',
    '-0',
    '-1',
    '+1',
    ' 1',
    '1 ',
    '1e3',
    '0x10',
    'NaN',
    'Infinity',
    '1.5',
    '١',
    '12-3',
    '-9007199254740993',
  ),
);
const wireValue = fc.oneof(
  text,
  fc.oneof(fc.integer(), fc.double(), fc.constantFrom(2 ** 53, 2 ** 64, -0, 2 ** 32)),
  fc.bigInt({ min: -(2n ** 64n), max: 2n ** 65n }),
  fc.record({ low: fc.integer(), high: fc.integer(), unsigned: fc.boolean() }),
);

describe('fast Long against long.js, through the API loader', () => {
  it('is installed', () => {
    expect(installFastProtobufLong()).toBe(true);
    expect(protobuf.util.Long).not.toBe(Long);
  });

  it('every message: same bytes, same decoded text, same refusal', () => {
    const Fast = protobuf.util.Long;
    fc.assert(
      fc.property(
        fc.constantFrom(...methods),
        fc.array(wireValue, { minLength: 1, maxLength: 8 }),
        (method, values) => {
          let i = 0;
          const message = build(method.type, () => values[i++ % values.length]);
          const fast = withLong(Fast, () => outcome(() => method.ser(message)));
          const slow = withLong(Long, () => outcome(() => method.ser(message)));
          expect(fast).toEqual(slow);
          const bytes = (slow as { bytes?: string }).bytes;
          if (bytes !== undefined) {
            const buffer = Buffer.from(bytes, 'hex');
            expect(withLong(Fast, () => outcome(() => method.de(buffer)))).toEqual(
              withLong(Long, () => outcome(() => method.de(buffer))),
            );
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});
