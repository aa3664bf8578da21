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

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** What is wrong with the bytes, naming the message and field, or null. */
export function wireProblem(
  messageName: string,
  bytes: Uint8Array,
  fields: ReadonlyMap<number, ExpectedField>,
): string | null {
  const reader = new WireReader(bytes);
  try {
    while (!reader.done) {
      const tag = reader.varint(`${messageName} (a tag)`);
      const number = Number(tag >> 3n);
      const wireType = Number(tag & 7n);
      if (number < 1 || number > FIELD_NUMBER_MAX)
        return `${messageName}: invalid field number ${number}`;
      const field = fields.get(number);
      const where =
        field === undefined ? `${messageName} field ${number}` : `${messageName}.${field.name}`;
      if (field !== undefined && !field.wireTypes.includes(wireType)) {
        return `${where}: has wire type ${wireType}, expected ${field.wireTypes.join(' or ')}`;
      }
      const payload = reader.skip(wireType, where);
      if (field?.utf8 === true && payload !== null && !isUtf8(payload)) {
        return `${where}: is not valid UTF-8`;
      }
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
  const reader = new WireReader(bytes);
  const fields: WireField[] = [];
  while (!reader.done) {
    const tag = reader.varint('tag');
    const number = Number(tag >> 3n);
    const wireType = Number(tag & 7n);
    if (wireType === VARINT)
      fields.push({ number, varint: reader.varint('varint'), payload: null });
    else fields.push({ number, varint: null, payload: reader.skip(wireType, 'field') });
  }
  return fields;
}

function isUtf8(bytes: Uint8Array): boolean {
  try {
    UTF8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

class WireError extends Error {}

class WireReader {
  private offset = 0;

  constructor(private readonly bytes: Uint8Array) {}

  get done(): boolean {
    return this.offset >= this.bytes.length;
  }

  varint(where: string): bigint {
    let value = 0n;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      const byte = this.bytes[this.offset++];
      if (byte === undefined) throw new WireError(`${where}: runs past the end of the message`);
      value |= BigInt(byte & 0x7f) << BigInt(7 * i);
      if ((byte & 0x80) === 0) return value;
    }
    throw new WireError(`${where}: is a varint longer than ${VARINT_BYTES_MAX} bytes`);
  }

  /** Skips one field's value; returns a length-delimited payload, for UTF-8 checks. */
  skip(wireType: number, where: string): Uint8Array | null {
    switch (wireType) {
      case VARINT:
        this.varint(where);
        return null;
      case FIXED64:
        this.take(8, where);
        return null;
      case FIXED32:
        this.take(4, where);
        return null;
      case LENGTH_DELIMITED:
        return this.take(Number(this.varint(where)), where);
      case START_GROUP:
      case END_GROUP:
        throw new WireError(`${where}: uses a group, which proto3 does not have`);
      default:
        throw new WireError(`${where}: has unknown wire type ${wireType}`);
    }
  }

  private take(length: number, where: string): Uint8Array {
    if (!Number.isSafeInteger(length) || this.offset + length > this.bytes.length) {
      throw new WireError(`${where}: runs past the end of the message`);
    }
    const payload = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return payload;
  }
}
