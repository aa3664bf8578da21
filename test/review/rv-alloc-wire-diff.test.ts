/**
 * Review of eb9b0f4 ("fewer allocations per write"), the wire check: the new
 * src/api/wire-check.ts (number varints, lazy 'where', node:buffer isUtf8, a BigInt
 * re-read for tags past 2^53) against the old one and its session-wire.ts, extracted
 * from git (8b2e883; skipped where that commit is not in the repository).
 * Differential, with fixed seeds:
 * - wireProblem: the same answer (null or the same words) for every request message
 *   of the API, over random bytes and over structured bytes aimed at the rewrite's
 *   edges: tags and varints of 10 and 11 bytes, non-canonical (padded) varints, values
 *   around 2^53 and 2^64 and up to 2^70, lengths that overflow or are just too long,
 *   truncation anywhere, groups and unknown wire types, nested messages, strings that
 *   are overlong, CESU-8, lone surrogates, past U+10FFFF, truncated, or long enough to
 *   cross the SIMD blocks of simdutf;
 * - wireFields: the same fields for every byte string wireProblem finds sound (its
 *   contract);
 * - the Session stream's deserializer (session-wire.ts nestedProblem, and decode): the
 *   same UndecodableRequest, UndecodableCall or decoded message.
 * Also: node:buffer isUtf8 and TextDecoder({fatal}) on every 1-3 byte string and the
 * structured edge strings.
 */
import { isUtf8 } from 'node:buffer';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { clientDefinition, LOCK_SERVICE_NAME, packageDefinition } from '../../src/api/proto.ts';
import { type LoaderMethod, sessionRequestDeserializer } from '../../src/api/session-wire.ts';
import {
  expectedFields,
  type FieldDescriptor,
  wireFields,
  wireProblem,
} from '../../src/api/wire-check.ts';
import { extractSources } from '../support/lock-machine-diff.ts';

const BEFORE = '8b2e883';
const oldDir = extractSources(BEFORE, 'rv-alloc-wire-', [
  'src/api/wire-check.ts',
  'src/api/session-wire.ts',
]);
type WireCheck = typeof import('../../src/api/wire-check.ts');
type SessionWire = typeof import('../../src/api/session-wire.ts');
const oldWire: WireCheck | null =
  oldDir === null ? null : await import(join(oldDir, 'src/api/wire-check.ts'));
const oldSession: SessionWire | null =
  oldDir === null ? null : await import(join(oldDir, 'src/api/session-wire.ts'));
const oldExpectedFields: WireCheck['expectedFields'] = (...args) =>
  (oldWire as WireCheck).expectedFields(...args);
const oldWireFields: WireCheck['wireFields'] = (...args) =>
  (oldWire as WireCheck).wireFields(...args);
const oldWireProblem: WireCheck['wireProblem'] = (...args) =>
  (oldWire as WireCheck).wireProblem(...args);
const oldSessionRequestDeserializer: SessionWire['sessionRequestDeserializer'] = (...args) =>
  (oldSession as SessionWire).sessionRequestDeserializer(...args);

/** RV_ALLOC_SEED and RV_ALLOC_RUNS run other cases than the fixed ones. */
const SEED =
  process.env.RV_ALLOC_SEED === undefined ? undefined : Number(process.env.RV_ALLOC_SEED);
const RUNS =
  process.env.RV_ALLOC_RUNS === undefined ? undefined : Number(process.env.RV_ALLOC_RUNS);

// ------------------------------------------------------------------ the messages

interface Message {
  readonly name: string;
  readonly descriptors: readonly FieldDescriptor[];
}

function messageFields(typeName: string): readonly FieldDescriptor[] | undefined {
  const type = packageDefinition[`dlm.v1.${typeName}`];
  if (type === undefined || !('format' in type)) return undefined;
  return (type.type as { field?: FieldDescriptor[] }).field;
}

const MESSAGES: Message[] = Object.entries(packageDefinition).flatMap(([key, value]) => {
  if (!('format' in value)) return [];
  const descriptors = (value.type as { field?: FieldDescriptor[] }).field;
  if (descriptors === undefined || key.startsWith('google.')) return [];
  return [{ name: (value.type as { name: string }).name, descriptors }];
});

// Two synthetic ones: every scalar kind, repeated strings and numbers.
MESSAGES.push({
  name: 'Synthetic',
  descriptors: [
    { name: 'a', number: 1, label: 'LABEL_OPTIONAL', type: 'TYPE_STRING' },
    { name: 'b', number: 2, label: 'LABEL_REPEATED', type: 'TYPE_STRING' },
    { name: 'c', number: 3, label: 'LABEL_REPEATED', type: 'TYPE_UINT64' },
    { name: 'd', number: 4, label: 'LABEL_OPTIONAL', type: 'TYPE_FIXED64' },
    { name: 'e', number: 5, label: 'LABEL_OPTIONAL', type: 'TYPE_FLOAT' },
    { name: 'f', number: 6, label: 'LABEL_OPTIONAL', type: 'TYPE_BYTES' },
    { name: 'g', number: 7, label: 'LABEL_OPTIONAL', type: 'TYPE_MESSAGE', typeName: 'X' },
    { name: 'top', number: 2 ** 29 - 1, label: 'LABEL_OPTIONAL', type: 'TYPE_STRING' },
  ],
});

const PREPARED = MESSAGES.map((message) => ({
  ...message,
  fresh: expectedFields(message.descriptors),
  old: oldExpectedFields(message.descriptors),
  numbers: message.descriptors.map((d) => d.number),
}));

// ------------------------------------------------------------------ encoding

/** A varint of any non-negative value (past 2^64 too), padded with `pad` empty groups. */
function varint(value: bigint, pad = 0): number[] {
  const bytes: number[] = [];
  let rest = value;
  do {
    bytes.push(Number(rest & 0x7fn));
    rest >>= 7n;
  } while (rest !== 0n);
  for (let i = 0; i < pad; i++) bytes.push(0);
  // Continuation bits on all but the last; a padded zero group keeps the value.
  return bytes.map((byte, i) => (i < bytes.length - 1 ? byte | 0x80 : byte));
}

const hex = (text: string): number[] =>
  text
    .split(' ')
    .filter((part) => part !== '')
    .map((part) => Number.parseInt(part, 16));

const UTF8_EDGES: number[][] = [
  [],
  hex('61'),
  hex('f0 9f 98 80'), // U+1F600
  hex('ed a0 bd ed b8 80'), // CESU-8 of U+1F600
  hex('ed a0 80'), // lone high surrogate
  hex('ed b0 80'), // lone low surrogate
  hex('ed bf bf'),
  hex('ed 9f bf'), // U+D7FF, valid
  hex('ee 80 80'), // U+E000, valid
  hex('c0 80'), // overlong NUL
  hex('c1 bf'),
  hex('c2 80'),
  hex('e0 80 80'),
  hex('e0 9f bf'),
  hex('e0 a0 80'),
  hex('f0 80 80 80'),
  hex('f0 8f bf bf'),
  hex('f0 90 80 80'),
  hex('f4 8f bf bf'), // U+10FFFF
  hex('f4 90 80 80'), // past U+10FFFF
  hex('f5 80 80 80'),
  hex('f8 88 80 80 80'),
  hex('fe'),
  hex('ff'),
  hex('ef bb bf'), // BOM
  hex('ef bf be'), // U+FFFE, a noncharacter but valid
  hex('ef bf bf'),
  hex('e2 82'), // truncated
  hex('80'),
  hex('00'),
];

/** A string, valid or not, maybe long enough that the bad byte sits at a SIMD block edge. */
const utf8Payload: fc.Arbitrary<number[]> = fc.oneof(
  fc.constantFrom(...UTF8_EDGES),
  fc
    .tuple(fc.constantFrom(...UTF8_EDGES), fc.constantFrom(...UTF8_EDGES))
    .map(([a, b]) => [...a, ...b]),
  fc
    .tuple(
      fc.constantFrom(0, 1, 15, 16, 31, 32, 47, 63, 64, 65, 127, 128, 200),
      fc.constantFrom(...UTF8_EDGES),
      fc.nat({ max: 70 }),
      fc.constantFrom(0x61, 0xc3),
    )
    .map(([before, edge, after, filler]) => {
      const fill = (count: number) =>
        filler === 0x61 ? Array(count).fill(0x61) : Array(count).fill([0xc3, 0xa9]).flat();
      return [...fill(before), ...edge, ...fill(after)];
    }),
  fc.string({ unit: 'binary', maxLength: 40 }).map((text) => [...Buffer.from(text, 'utf8')]),
  fc.uint8Array({ maxLength: 40 }).map((bytes) => [...bytes]),
);

const VARINT_EDGES = [
  0n,
  1n,
  127n,
  128n,
  2n ** 29n - 1n,
  2n ** 32n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 56n - 1n,
  2n ** 63n,
  2n ** 64n - 1n,
  2n ** 64n,
  2n ** 64n + 1n,
  2n ** 70n - 1n,
];

const varintValue: fc.Arbitrary<bigint> = fc.oneof(
  fc.constantFrom(...VARINT_EDGES),
  fc.bigInt({ min: 0n, max: 2n ** 70n - 1n }),
  fc.bigInt({ min: 2n ** 53n - 64n, max: 2n ** 53n + 64n }),
);

/** A varint, sometimes padded (10 bytes, 11 bytes: too long), sometimes run off the end. */
const varintBytes = (value: fc.Arbitrary<bigint>): fc.Arbitrary<number[]> =>
  fc.oneof(
    { weight: 6, arbitrary: value.map((v) => varint(v)) },
    {
      weight: 2,
      arbitrary: fc.tuple(value, fc.nat({ max: 10 })).map(([v, pad]) => varint(v, pad)),
    },
    // Exactly ten bytes with any last byte (values to 2^70), or eleven.
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.uint8Array({ minLength: 9, maxLength: 10 }), fc.integer({ min: 0, max: 0x7f }))
        .map(([head, last]) => [...[...head].map((byte) => byte | 0x80), last]),
    },
  );

/** A field number: the message's, small unknown ones, the edges of the range, and past 2^50. */
const fieldNumber = (numbers: readonly number[]): fc.Arbitrary<bigint> =>
  fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...(numbers.length > 0 ? numbers : [1])).map(BigInt) },
    { weight: 2, arbitrary: fc.bigInt({ min: 0n, max: 40n }) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        0n,
        2n ** 29n - 1n,
        2n ** 29n,
        2n ** 31n,
        2n ** 50n - 1n,
        2n ** 50n,
        2n ** 50n + 1n,
        2n ** 61n - 1n,
        2n ** 61n,
        2n ** 64n - 1n,
        2n ** 67n - 1n,
      ),
    },
    { weight: 1, arbitrary: fc.bigInt({ min: 2n ** 49n, max: 2n ** 67n - 1n }) },
  );

/** One field: a tag and a value fitting (or not) its wire type. */
function piece(numbers: readonly number[], depth: number): fc.Arbitrary<number[]> {
  const content: fc.Arbitrary<number[]> =
    depth > 0
      ? fc.oneof(
          utf8Payload,
          fc.array(piece(numbers, depth - 1), { maxLength: 3 }).map((parts) => parts.flat()),
        )
      : utf8Payload;
  return fc
    .tuple(fieldNumber(numbers), fc.integer({ min: 0, max: 7 }), fc.nat({ max: 3 }))
    .chain(([number, wireType, tagPad]) => {
      const tagBytes = fc.oneof(
        { weight: 9, arbitrary: fc.constant(varint((number << 3n) | BigInt(wireType), tagPad)) },
        { weight: 1, arbitrary: varintBytes(fc.constantFrom((number << 3n) | BigInt(wireType))) },
      );
      let value: fc.Arbitrary<number[]>;
      switch (wireType) {
        case 0:
          value = varintBytes(varintValue);
          break;
        case 1:
          value = fc.uint8Array({ minLength: 7, maxLength: 8 }).map((bytes) => [...bytes]);
          break;
        case 5:
          value = fc.uint8Array({ minLength: 3, maxLength: 4 }).map((bytes) => [...bytes]);
          break;
        case 2:
          value = fc
            .tuple(
              content,
              fc.oneof(
                { weight: 8, arbitrary: fc.constant(0n) },
                { weight: 2, arbitrary: fc.bigInt({ min: -3n, max: 3n }) },
                { weight: 1, arbitrary: fc.constantFrom(...VARINT_EDGES) },
              ),
              fc.nat({ max: 2 }),
            )
            .map(([bytes, delta, pad]) => {
              const length = BigInt(bytes.length) + delta;
              const declared = length < 0n || delta > 3n ? delta : length;
              return [...varint(declared < 0n ? 0n : declared, pad), ...bytes];
            });
          break;
        default:
          value = fc.uint8Array({ maxLength: 3 }).map((bytes) => [...bytes]);
      }
      return fc.tuple(tagBytes, value).map(([t, v]) => [...t, ...v]);
    });
}

/** A whole message: fields, then maybe cut short, maybe trailing garbage. */
function structured(numbers: readonly number[]): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(
      fc.array(piece(numbers, 2), { maxLength: 5 }),
      fc.oneof(
        { weight: 4, arbitrary: fc.constant<number | null>(null) },
        { weight: 1, arbitrary: fc.nat({ max: 300 }) },
      ),
      fc.oneof(
        { weight: 5, arbitrary: fc.constant<number[]>([]) },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4 }).map((bytes) => [...bytes]) },
      ),
    )
    .map(([parts, cut, garbage]) => {
      const all = [...parts.flat(), ...garbage];
      // A Buffer, as grpc-js hands the deserializer, at a non-zero offset in a larger one.
      const pool = Buffer.alloc(all.length + 16, 0xff);
      pool.set(all, 7);
      const bytes = pool.subarray(7, 7 + all.length);
      return cut === null ? bytes : bytes.subarray(0, cut % (all.length + 1));
    });
}

const anyMessage = fc.constantFrom(...PREPARED);
const input = anyMessage.chain((message) =>
  fc.tuple(
    fc.constant(message),
    fc.oneof(
      { weight: 3, arbitrary: structured(message.numbers) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 48 }) },
      {
        weight: 1,
        arbitrary: fc
          .uint8Array({ maxLength: 24 })
          .map((bytes) => Uint8Array.from(bytes, (byte) => byte | 0x80)),
      },
    ),
  ),
);

// ------------------------------------------------------------------ comparison

function problems(message: (typeof PREPARED)[number], bytes: Uint8Array) {
  return {
    old: oldWireProblem(message.name, bytes, message.old),
    fresh: wireProblem(message.name, bytes, message.fresh),
  };
}

function fieldsOf(read: (bytes: Uint8Array) => unknown[], bytes: Uint8Array) {
  try {
    return (
      read(bytes) as { number: number; varint: bigint | null; payload: Uint8Array | null }[]
    ).map((field) => ({
      number: field.number,
      varint: field.varint,
      payload: field.payload === null ? null : Buffer.from(field.payload).toString('hex'),
    }));
  } catch (error) {
    return { threw: true, error: String(error) };
  }
}

describe.skipIf(oldDir === null)('review eb9b0f4: the new wire check answers as the old', () => {
  it('wireProblem: the same answer for any bytes of any request message (fixed seeds)', () => {
    let problemsSeen = 0;
    const kinds = new Set<string>();
    fc.assert(
      fc.property(input, ([message, bytes]) => {
        const { old, fresh } = problems(message, bytes);
        expect(fresh).toBe(old);
        if (old !== null) {
          problemsSeen++;
          kinds.add(old.replace(/^.*?: /, '').replace(/[0-9]+/g, 'N'));
        }
      }),
      { seed: SEED ?? 0xeb9b0f4, numRuns: RUNS ?? 150_000 },
    );
    // The run reached every kind of problem, not only the easy ones.
    expect(problemsSeen).toBeGreaterThan(50_000);
    for (const kind of [
      'runs past the end of the message',
      'is a varint longer than N bytes',
      'is not valid UTF-N',
      'uses a group, which protoN does not have',
      'has unknown wire type N',
    ]) {
      expect([...kinds].some((k) => k.includes(kind))).toBe(true);
    }
    expect([...kinds].some((k) => k.startsWith('invalid field number'))).toBe(true);
  });

  it('wireFields: the same fields for every byte string wireProblem finds sound', () => {
    let sound = 0;
    fc.assert(
      fc.property(input, ([message, bytes]) => {
        if (oldWireProblem(message.name, bytes, message.old) !== null) return;
        sound++;
        expect(fieldsOf(wireFields, bytes)).toEqual(fieldsOf(oldWireFields, bytes));
      }),
      { seed: SEED ?? 0x0f4eb9b, numRuns: RUNS ?? 150_000 },
    );
    expect(sound).toBeGreaterThan(10_000);
  });

  it('edge cases by hand: tags and lengths around 2^53, 2^64 and ten bytes', () => {
    const message = PREPARED.find((m) => m.name === 'AcquireRequest');
    if (message === undefined) throw new Error('no AcquireRequest');
    const cases: number[][] = [
      varint(2n ** 53n), // tag exactly 2^53
      varint(2n ** 53n - 1n),
      varint(2n ** 53n + 9n),
      varint(2n ** 55n + 9n), // rounds to ...8 as a double
      varint(2n ** 64n - 1n),
      varint(2n ** 70n - 1n),
      [...varint((1n << 3n) | 2n), ...varint(2n ** 53n - 1n)],
      [...varint((1n << 3n) | 2n), ...varint(2n ** 53n - 3n), 0x61],
      [...varint((1n << 3n) | 2n), ...varint(2n ** 64n - 1n)],
      [...varint((1n << 3n) | 2n), ...varint(2n ** 70n - 1n)],
      [...varint((1n << 3n) | 2n), ...varint(1n, 8), 0x61], // padded length, ten bytes
      [...varint((1n << 3n) | 2n), ...varint(1n, 9), 0x61], // eleven bytes
      [...varint((2n << 3n) | 0n, 9)], // padded tag, ten bytes, no value
      [...varint((2n << 3n) | 0n, 10)], // eleven-byte tag
      [...varint((2n << 3n) | 0n), ...varint(2n ** 70n - 1n)],
      [...varint((1n << 3n) | 2n), 3, 0xed, 0xa0, 0x80],
      [...varint((1n << 3n) | 2n), 0],
      [...varint(((2n ** 29n - 1n) << 3n) | 2n), 0],
      [...varint((2n ** 29n) << 3n)],
    ];
    for (const bytes of cases) {
      const { old, fresh } = problems(message, Uint8Array.from(bytes));
      expect(fresh, Buffer.from(bytes).toString('hex')).toBe(old);
    }
  });

  it('the Session stream deserializer: the same refusal, call refusal or decoded message', () => {
    const definition = clientDefinition(LOCK_SERVICE_NAME).Session as unknown as LoaderMethod;
    const fresh = sessionRequestDeserializer(definition, messageFields);
    const old = oldSessionRequestDeserializer(definition, messageFields);
    const session = PREPARED.find((m) => m.name === 'SessionRequest');
    if (session === undefined) throw new Error('no SessionRequest');
    const nestedNumbers = [
      ...new Set(
        PREPARED.filter((m) =>
          ['AcquireRequest', 'OpenSessionRequest', 'KeepAliveRequest', 'ReleaseRequest'].includes(
            m.name,
          ),
        ).flatMap((m) => m.numbers),
      ),
    ];
    const sessionBytes = fc
      .tuple(
        fc.array(
          fc.oneof(
            piece(session.numbers, 0),
            // A call message of its own kind's fields, fuzzed like a request.
            fc
              .tuple(fc.constantFrom(10, 11, 12, 13, 14, 15, 16, 17), structured(nestedNumbers))
              .map(([number, inner]) => [
                ...varint((BigInt(number) << 3n) | 2n),
                ...varint(BigInt(inner.length)),
                ...inner,
              ]),
          ),
          { maxLength: 4 },
        ),
        fc.boolean(),
      )
      .map(([parts, withCallId]) =>
        Buffer.from([...(withCallId ? [0x08, ...varint(2n ** 64n - 1n)] : []), ...parts.flat()]),
      );
    const describe = (result: unknown) =>
      typeof result === 'object' && result !== null
        ? { kind: result.constructor.name, ...(result as object) }
        : result;
    const seen = new Map<string, number>();
    fc.assert(
      fc.property(sessionBytes, (bytes) => {
        const a = describe(old(bytes));
        const b = describe(fresh(bytes));
        expect(b).toEqual(a);
        const kind = (a as { kind: string }).kind;
        seen.set(kind, (seen.get(kind) ?? 0) + 1);
      }),
      { seed: SEED ?? 7700, numRuns: RUNS ?? 40_000 },
    );
    expect(seen.get('UndecodableRequest')).toBeGreaterThan(1_000);
    expect(seen.get('UndecodableCall')).toBeGreaterThan(1_000);
    expect(seen.get('Object')).toBeGreaterThan(1_000);
  });
});

describe('node:buffer isUtf8 agrees with TextDecoder({ fatal: true })', () => {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const decodes = (bytes: Uint8Array) => {
    try {
      decoder.decode(bytes);
      return true;
    } catch {
      return false;
    }
  };

  it('on every string of 1 or 2 bytes, every 3-byte string from 0xc0, and the edge strings', () => {
    const disagree: string[] = [];
    const b1 = new Uint8Array(1);
    const b2 = new Uint8Array(2);
    const b3 = new Uint8Array(3);
    for (let a = 0; a < 256; a++) {
      b1[0] = a;
      if (decodes(b1) !== isUtf8(b1)) disagree.push(a.toString(16));
      for (let b = 0; b < 256; b++) {
        b2[0] = a;
        b2[1] = b;
        if (decodes(b2) !== isUtf8(b2)) disagree.push(Buffer.from(b2).toString('hex'));
        if (a < 0xc0) continue;
        for (let c = 0x70; c < 0xd0; c++) {
          b3[0] = a;
          b3[1] = b;
          b3[2] = c;
          if (decodes(b3) !== isUtf8(b3)) disagree.push(Buffer.from(b3).toString('hex'));
        }
      }
    }
    for (const a of UTF8_EDGES)
      for (const b of UTF8_EDGES) {
        const bytes = Uint8Array.from([...a, ...b]);
        if (decodes(bytes) !== isUtf8(bytes)) disagree.push(Buffer.from(bytes).toString('hex'));
      }
    expect(disagree).toEqual([]);
  });
});
