/**
 * The decimal fast paths of src/api/protobuf-long.ts must give exactly what long.js
 * gives, for every 64-bit value and every input long.js accepts or refuses, and must be
 * in effect in the protobufjs that @grpc/proto-loader uses (the one that converts the
 * API's messages).
 */
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { packageDefinition } from '../../src/api/proto.ts';
import { fastLongClass, installFastProtobufLong } from '../../src/api/protobuf-long.ts';

interface LongLike {
  readonly low: number;
  readonly high: number;
  readonly unsigned: boolean;
  toString(radix?: number): string;
}
interface LongCtor {
  new (low: number, high: number, unsigned?: boolean): LongLike;
  fromString(text: string, unsigned?: boolean | number, radix?: number): LongLike;
  fromValue(value: unknown, unsigned?: boolean): LongLike;
}

const loaderRequire = createRequire(createRequire(import.meta.url).resolve('@grpc/proto-loader'));
const protobuf = loaderRequire('protobufjs') as { util: { Long: LongCtor } };
const Long = loaderRequire('long') as LongCtor;
const Fast = fastLongClass(Long as never) as unknown as LongCtor;

function bits(long: LongLike): [number, number, boolean] {
  return [long.low, long.high, long.unsigned];
}

/** What `run` gives, or the message it throws: a refusal must be the same refusal. */
function outcome<T>(run: () => T): { value: T } | { error: string } {
  try {
    return { value: run() };
  } catch (error) {
    return { error: String(error) };
  }
}

const uint64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
/** Biased to the edges: around 2^32, 2^53 and 15-16 digits, where a fast path ends. */
const edgy = fc.oneof(
  uint64,
  fc.bigInt({ min: 2n ** 53n - 1000n, max: 2n ** 53n + 1000n }),
  fc.bigInt({ min: 10n ** 15n - 1000n, max: 10n ** 15n + 1000n }),
  fc.bigInt({ min: 2n ** 32n - 1000n, max: 2n ** 32n + 1000n }),
  fc.bigInt({ min: 0n, max: 5000n }),
);

describe('fast decimal Long', () => {
  it('parses every uint64 and int64 as long.js does, and prints it back', () => {
    fc.assert(
      fc.property(fc.oneof(edgy, int64), fc.boolean(), (value, unsigned) => {
        const text = value.toString();
        const fast = outcome(() => bits(Fast.fromString(text, unsigned)));
        const slow = outcome(() => bits(Long.fromString(text, unsigned)));
        expect(fast).toEqual(slow);
        expect(outcome(() => bits(Fast.fromValue(text, unsigned)))).toEqual(
          outcome(() => bits(Long.fromValue(text, unsigned))),
        );
      }),
      { numRuns: 5000 },
    );
  });

  it('prints every 64-bit pattern as long.js does, in every radix it is asked for', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        fc.oneof(
          fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
          fc.integer({ min: 0x1ffff0, max: 0x200010 }),
          fc.integer({ min: -2, max: 2 }),
        ),
        fc.boolean(),
        fc.constantFrom(undefined, 10, 16, 2, 36),
        (low, high, unsigned, radix) => {
          const printed = new Fast(low, high, unsigned).toString(radix);
          expect(printed).toBe(new Long(low, high, unsigned).toString(radix));
          if (radix === undefined || radix === 10) {
            const exact = unsigned
              ? (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0)
              : (BigInt(high) << 32n) | BigInt(low >>> 0);
            expect(printed).toBe(exact.toString());
          }
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('gives long.js its own answer for text that is not plain digits', () => {
    const texts = ['', '-5', '-0', '+5', ' 7', '7 ', '12a', 'abc', '0x10', '1e3', '007', '٣'];
    for (const text of texts) {
      for (const unsigned of [true, false]) {
        expect(outcome(() => bits(Fast.fromString(text, unsigned)))).toEqual(
          outcome(() => bits(Long.fromString(text, unsigned))),
        );
        expect(outcome(() => bits(Fast.fromValue(text, unsigned)))).toEqual(
          outcome(() => bits(Long.fromValue(text, unsigned))),
        );
      }
    }
    // fromString(text, radix): the second argument is the radix.
    expect(bits(Fast.fromString('ff', 16))).toEqual(bits(Long.fromString('ff', 16)));
    expect(bits(Fast.fromString('777', false, 8))).toEqual(bits(Long.fromString('777', false, 8)));
    // Second arguments that are not booleans mean what they mean to long.js: a number is
    // a radix (or refused), anything else its truth value (found by review).
    const odd: [unknown, unknown][] = [
      ['10', 16],
      ['12', 1],
      ['12', 37],
      ['5', 'yes'],
      ['5', {}],
      ['5', 0],
      [123, undefined],
    ];
    const loose = (ctor: LongCtor) =>
      ctor as unknown as {
        fromString(text: unknown, unsigned: unknown): LongLike;
        fromValue(value: unknown, unsigned: unknown): LongLike;
      };
    for (const [text, second] of odd) {
      expect(outcome(() => bits(loose(Fast).fromString(text, second)))).toEqual(
        outcome(() => bits(loose(Long).fromString(text, second))),
      );
      expect(outcome(() => bits(loose(Fast).fromValue(text, second)))).toEqual(
        outcome(() => bits(loose(Long).fromValue(text, second))),
      );
    }
    for (const value of [0, 1, 2 ** 53, -1, 12345n, { low: 5, high: 1, unsigned: true }]) {
      expect(bits(Fast.fromValue(value, true))).toEqual(bits(Long.fromValue(value, true)));
    }
  });
});

describe('installed in the loader that converts the API', () => {
  it('is the Long protobufjs uses, and uint64 fields survive a round trip either side of 2^53', () => {
    expect(installFastProtobufLong()).toBe(true);
    expect(protobuf.util.Long).not.toBe(Long);
    expect(protobuf.util.Long.prototype).toBeInstanceOf(Long);
    const acquire = (packageDefinition['dlm.v1.Lock'] as Record<string, unknown>).Acquire as {
      responseSerialize(value: object): Buffer;
      responseDeserialize(bytes: Buffer): { fencing_token: string; header: { index: string } };
    };
    for (const token of [
      '0',
      '7',
      '4294967296',
      '9007199254740991',
      '9007199254740993',
      '18446744073709551615',
    ]) {
      const bytes = acquire.responseSerialize({ fencing_token: token, header: { index: token } });
      const decoded = acquire.responseDeserialize(bytes);
      expect(decoded.fencing_token).toBe(token);
      expect(decoded.header.index).toBe(token);
    }
  });
});
