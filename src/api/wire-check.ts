/**
 * A strict first pass over a request's bytes, before protobufjs decodes them.
 * protobufjs is lenient: it reads a field by its declared type whatever wire type the
 * tag carries, and clamps a string whose length runs past the end. A malformed request
 * could then turn into a well-formed one with other values (a length-delimited
 * `session_id` read as the varint of its length). Here every tag of a known field must
 * carry the field's wire type, every length must fit, and strings must be UTF-8, as
 * proto3 requires; unknown fields are skipped, as the protobuf rules say.
 */

/**
 * Marks a request whose bytes are malformed. grpc-js answers a throwing deserializer
 * with INTERNAL; a malformed request is the client's fault, so the handler sees this
 * marker instead and answers INVALID_ARGUMENT with `detail`, which names the field.
 */
export class UndecodableRequest {
  constructor(readonly detail: string) {}
}

/** The subset of a FieldDescriptorProto (as @grpc/proto-loader gives it) this needs. */
export interface FieldDescriptor {
  readonly name: string;
  readonly number: number;
  readonly label: string;
  readonly type: string;
  /** For a message field: the message's name, relative to the package. */
  readonly typeName?: string;
}

export interface ExpectedField {
  readonly name: string;
  readonly wireTypes: readonly number[];
  readonly utf8: boolean;
}

import { isUtf8 } from 'node:buffer';

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const START_GROUP = 3;
const END_GROUP = 4;
const FIXED32 = 5;
const VARINT_BYTES_MAX = 10;
const FIELD_NUMBER_MAX = 2 ** 29 - 1;

const SCALAR_WIRE_TYPES: Readonly<Record<string, number>> = {
  TYPE_DOUBLE: FIXED64,
  TYPE_FLOAT: FIXED32,
  TYPE_INT64: VARINT,
  TYPE_UINT64: VARINT,
  TYPE_INT32: VARINT,
  TYPE_FIXED64: FIXED64,
  TYPE_FIXED32: FIXED32,
  TYPE_BOOL: VARINT,
  TYPE_UINT32: VARINT,
  TYPE_ENUM: VARINT,
  TYPE_SFIXED32: FIXED32,
  TYPE_SFIXED64: FIXED64,
  TYPE_SINT32: VARINT,
  TYPE_SINT64: VARINT,
};

export function expectedFields(fields: readonly FieldDescriptor[]): Map<number, ExpectedField> {
  const expected = new Map<number, ExpectedField>();
  for (const field of fields) {
    const scalar = SCALAR_WIRE_TYPES[field.type];
    // A repeated number may arrive packed (length-delimited) or one by one.
    const wireTypes =
      scalar === undefined
        ? [LENGTH_DELIMITED]
        : field.label === 'LABEL_REPEATED'
          ? [scalar, LENGTH_DELIMITED]
          : [scalar];
    expected.set(field.number, { name: field.name, wireTypes, utf8: field.type === 'TYPE_STRING' });
  }
  return expected;
}

/**
 * What is wrong with the bytes, naming the message and field, or null. Every request
 * passes here, so a sound one costs no allocation: numbers instead of BigInts, no
 * payload views, and the field's name is put into words only for a problem.
 */
export function wireProblem(
  messageName: string,
  bytes: Uint8Array,
  fields: ReadonlyMap<number, ExpectedField>,
): string | null {
  const reader = new WireReader(bytes, messageName);
  try {
    while (!reader.done) {
      const tag = reader.tag();
      const number = Number.isSafeInteger(tag) ? Math.floor(tag / 8) : reader.bigFieldNumber();
      const wireType = tag % 8;
      if (number < 1 || number > FIELD_NUMBER_MAX)
        return `${messageName}: invalid field number ${number}`;
      const field = fields.get(number);
      reader.field(number, field);
      if (field !== undefined && !field.wireTypes.includes(wireType)) {
        return `${reader.where()}: has wire type ${wireType}, expected ${field.wireTypes.join(' or ')}`;
      }
      if (!reader.skip(wireType, field?.utf8 === true))
        return `${reader.where()}: is not valid UTF-8`;
    }
  } catch (error) {
    if (error instanceof WireError) return error.message;
    throw error;
  }
  return null;
}

/** One top-level field as it is on the wire. */
export interface WireField {
  readonly number: number;
  /** The value of a varint field, else null. */
  readonly varint: bigint | null;
  /** The bytes of a length-delimited field (a nested message, a string), else null. */
  readonly payload: Uint8Array | null;
}

/**
 * The top-level fields of a message in wire order, for bytes that wireProblem found
 * sound (it throws on any other), so a caller can check a nested message's bytes
 * against that message's fields before anything decodes them.
 */
export function wireFields(bytes: Uint8Array): WireField[] {
  const reader = new WireReader(bytes, 'message');
  const fields: WireField[] = [];
  while (!reader.done) {
    const tag = reader.tag();
    const number = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (wireType === VARINT) fields.push({ number, varint: reader.bigVarint(), payload: null });
    else fields.push({ number, varint: null, payload: reader.payload(wireType) });
  }
  return fields;
}

class WireError extends Error {}

/**
 * Reads fields in place. Varints are read as numbers while they fit in 2^53 (every tag,
 * length and field this API has); a longer one is only skipped, or read as a BigInt by
 * bigVarint.
 */
class WireReader {
  private offset = 0;
  private fieldNumber = 0;
  private fieldName: string | null = null;
  private tagStart = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly messageName: string,
  ) {}

  get done(): boolean {
    return this.offset >= this.bytes.length;
  }

  /** The field being read; only for what where() says. */
  field(number: number, expected: ExpectedField | undefined): void {
    this.fieldNumber = number;
    this.fieldName = expected?.name ?? null;
  }

  /** The message and field being read, for a problem. */
  where(): string {
    if (this.fieldNumber === 0) return `${this.messageName} (a tag)`;
    return this.fieldName === null
      ? `${this.messageName} field ${this.fieldNumber}`
      : `${this.messageName}.${this.fieldName}`;
  }

  tag(): number {
    this.fieldNumber = 0;
    this.fieldName = null;
    this.tagStart = this.offset;
    return this.varint();
  }

  /** The field number of a tag past 2^53, exactly, for the problem that names it. */
  bigFieldNumber(): number {
    const after = this.offset;
    this.offset = this.tagStart;
    const tag = this.bigVarint();
    this.offset = after;
    return Number(tag >> 3n);
  }

  /** A varint as a number: past 2^53 only roughly, which only a length's bounds check needs. */
  private varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      const byte = this.nextByte();
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return value;
      scale *= 128;
    }
    throw new WireError(`${this.where()}: is a varint longer than ${VARINT_BYTES_MAX} bytes`);
  }

  /** A varint of any size. */
  bigVarint(): bigint {
    let value = 0n;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      const byte = this.nextByte();
      value |= BigInt(byte & 0x7f) << BigInt(7 * i);
      if ((byte & 0x80) === 0) return value;
    }
    throw new WireError(`${this.where()}: is a varint longer than ${VARINT_BYTES_MAX} bytes`);
  }

  private skipVarint(): void {
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if ((this.nextByte() & 0x80) === 0) return;
    }
    throw new WireError(`${this.where()}: is a varint longer than ${VARINT_BYTES_MAX} bytes`);
  }

  private nextByte(): number {
    const byte = this.bytes[this.offset++];
    if (byte === undefined)
      throw new WireError(`${this.where()}: runs past the end of the message`);
    return byte;
  }

  /** Skips one field's value; false when `utf8` asks and a length-delimited one is not. */
  skip(wireType: number, utf8: boolean): boolean {
    if (wireType === LENGTH_DELIMITED) {
      const end = this.lengthEnd();
      const sound = !utf8 || isUtf8(this.bytes.subarray(this.offset, end));
      this.offset = end;
      return sound;
    }
    this.skipFixedOrVarint(wireType);
    return true;
  }

  /** One field's value: a length-delimited one's bytes, else null. */
  payload(wireType: number): Uint8Array | null {
    if (wireType !== LENGTH_DELIMITED) {
      this.skipFixedOrVarint(wireType);
      return null;
    }
    const end = this.lengthEnd();
    const payload = this.bytes.subarray(this.offset, end);
    this.offset = end;
    return payload;
  }

  private skipFixedOrVarint(wireType: number): void {
    switch (wireType) {
      case VARINT:
        this.skipVarint();
        return;
      case FIXED64:
        this.advance(8);
        return;
      case FIXED32:
        this.advance(4);
        return;
      case START_GROUP:
      case END_GROUP:
        throw new WireError(`${this.where()}: uses a group, which proto3 does not have`);
      default:
        throw new WireError(`${this.where()}: has unknown wire type ${wireType}`);
    }
  }

  private lengthEnd(): number {
    const length = this.varint();
    const end = this.offset + length;
    if (!Number.isSafeInteger(end) || end > this.bytes.length)
      throw new WireError(`${this.where()}: runs past the end of the message`);
    return end;
  }

  private advance(length: number): void {
    if (this.offset + length > this.bytes.length) {
      throw new WireError(`${this.where()}: runs past the end of the message`);
    }
    this.offset += length;
  }
}
