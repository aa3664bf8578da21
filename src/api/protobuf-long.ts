import { createRequire } from 'node:module';

/**
 * A faster decimal conversion for the 64-bit integers of the gRPC API.
 *
 * The protos are loaded with `longs: String` (src/api/proto.ts), so protobufjs turns every
 * uint64 it decodes into a `long` Long and then into decimal text, and every decimal it
 * encodes back into a Long. long.js converts by 32-bit division and multiplication in
 * floating point (its toString and fromString), which a CPU profile of a leader at 64
 * clients put at 2-3% of its work (issue 12): a response carries four or five uint64s.
 * Every value dlm makes (fencing tokens, indexes, session ids, TTLs) is below 2^53, so a
 * JavaScript number holds it exactly and converts it in one step. Values of 16 or more
 * digits, negative values, other radixes and text that is not plain digits take long.js's
 * own path, so for every call protobufjs makes the result is the one long.js gives
 * (test/api/protobuf-long.test.ts, test/review/rv-long-wire-diff.test.ts). One
 * difference: the fast toString does not check that `this` is a Long, as protobufjs
 * only ever calls it on one.
 *
 * protobufjs documents `util.Long` (then `configure()`) as the place to put a Long class
 * of one's choice; this subclass is put there, in the protobufjs that @grpc/proto-loader
 * itself loads, once per process. That is process-wide: other code using that protobufjs
 * with its default `longs` would get instances of this subclass (Long.isLong holds, and
 * they compute as long.js's do, but a deep equality check against a plain Long fails).
 * So only the server installs it, in a process that is dlm's alone; the client library
 * leaves its users' protobufjs as they have it.
 */

/** The parts of long.js's Long this needs. */
interface LongValue {
  readonly low: number;
  readonly high: number;
  readonly unsigned: boolean;
}
interface LongClass {
  new (low: number, high: number, unsigned?: boolean): LongValue;
  readonly prototype: { toString(this: LongValue, radix?: number): string };
  fromString(text: string, unsigned?: boolean | number, radix?: number): LongValue;
  fromValue(value: unknown, unsigned?: boolean): LongValue;
}
interface Protobufjs {
  readonly util: { Long: LongClass | null };
  configure(): void;
}

const TWO_POW_32 = 4294967296;
/** The high word of 2^53: below it, high * 2^32 + low is an exact double. */
const SAFE_HIGH_LIMIT = 0x200000;
/** 15 digits are always below 2^53 (about 9.007e15). */
const SAFE_DECIMAL = /^[0-9]{1,15}$/;

let installed = false;

/** Puts the faster Long in place; later calls do nothing. Returns whether it is in place. */
export function installFastProtobufLong(): boolean {
  if (installed) return true;
  const protobuf = loaderProtobufjs();
  const Base = protobuf?.util.Long;
  if (protobuf === null || Base === null || Base === undefined) return false;
  protobuf.util.Long = fastLongClass(Base);
  protobuf.configure();
  installed = true;
  return true;
}

/** The protobufjs instance @grpc/proto-loader resolves, or null if there is none. */
function loaderProtobufjs(): Protobufjs | null {
  try {
    const loaderPath = createRequire(import.meta.url).resolve('@grpc/proto-loader');
    return createRequire(loaderPath)('protobufjs') as Protobufjs;
  } catch {
    return null;
  }
}

/** Exported for tests: the subclass of `Base` with the decimal fast paths. */
export function fastLongClass(Base: LongClass): LongClass {
  const baseToString = Base.prototype.toString;
  const baseFromString = Base.fromString;
  const baseFromValue = Base.fromValue;
  const fromSafeDecimal = (text: string, unsigned: boolean): LongValue => {
    const value = Number(text);
    return new FastLong(value >>> 0, Math.floor(value / TWO_POW_32), unsigned);
  };
  class FastLong extends Base {
    static override fromString(
      text: string,
      unsigned?: boolean | number,
      radix?: number,
    ): LongValue {
      // A number in the second place is long.js's radix form; anything else counts as
      // its truth value there.
      if (
        typeof text === 'string' &&
        typeof unsigned !== 'number' &&
        (radix === undefined || radix === 10) &&
        SAFE_DECIMAL.test(text)
      ) {
        return fromSafeDecimal(text, Boolean(unsigned));
      }
      return baseFromString.call(Base, text, unsigned, radix);
    }
    static override fromValue(value: unknown, unsigned?: boolean): LongValue {
      // long.js hands text to fromString with the same second argument.
      if (typeof value === 'string') return FastLong.fromString(value, unsigned);
      return baseFromValue.call(Base, value, unsigned);
    }
    override toString(this: LongValue, radix?: number): string {
      if (radix === undefined || radix === 10) {
        const high = this.unsigned ? this.high >>> 0 : this.high;
        if (high >= 0 && high < SAFE_HIGH_LIMIT) {
          return String(high * TWO_POW_32 + (this.low >>> 0));
        }
      }
      return baseToString.call(this, radix);
    }
  }
  return FastLong;
}
