import type * as grpc from '@grpc/grpc-js';
import {
  type ExpectedField,
  expectedFields,
  type FieldDescriptor,
  UndecodableRequest,
  wireFields,
  wireProblem,
} from './wire-check.ts';

/**
 * The strict wire check (wire-check.ts) for a Session stream's SessionRequest, one level
 * deeper than for unary requests: the call message inside (an AcquireRequest...) gets
 * the same check a unary AcquireRequest gets, so a malformed one is refused with the
 * same words. A fault in the call message is that call's (answered for its call_id); a
 * fault in the SessionRequest itself cannot be pinned on a call and ends the stream.
 */

/** A SessionRequest whose own fields are sound and whose call message is not. */
export class UndecodableCall {
  constructor(
    readonly callId: string,
    /** The oneof field that carried the call (`acquire`, ...). */
    readonly field: string,
    readonly detail: string,
  ) {}
}

export type LoaderMethod = grpc.MethodDefinition<object, object> & {
  readonly requestType?: {
    readonly type?: { readonly name?: string; readonly field?: FieldDescriptor[] };
  };
};

const CALL_ID_FIELD_NUMBER = 1;

interface NestedMessage {
  readonly field: string;
  readonly name: string;
  readonly fields: ReadonlyMap<number, ExpectedField>;
}

/** Checks, then decodes; never throws (a throwing deserializer becomes INTERNAL in grpc-js). */
export function sessionRequestDeserializer(
  definition: LoaderMethod,
  messageFields: (typeName: string) => readonly FieldDescriptor[] | undefined,
): (bytes: Buffer) => unknown {
  const type = definition.requestType?.type;
  const messageName = type?.name ?? definition.path;
  const fields = expectedFields(type?.field ?? []);
  const nested = new Map<number, NestedMessage>();
  for (const field of type?.field ?? []) {
    if (field.type !== 'TYPE_MESSAGE' || field.typeName === undefined) continue;
    const inner = messageFields(field.typeName);
    if (inner !== undefined) {
      nested.set(field.number, {
        field: field.name,
        name: field.typeName,
        fields: expectedFields(inner),
      });
    }
  }
  const decode = definition.requestDeserialize;
  return (bytes) => {
    try {
      const problem = wireProblem(messageName, bytes, fields);
      if (problem !== null) return new UndecodableRequest(problem);
      const callProblem = nestedProblem(bytes, nested);
      return callProblem ?? decode(bytes);
    } catch (error) {
      return new UndecodableRequest(`${messageName}: could not be decoded (${String(error)})`);
    }
  };
}

function nestedProblem(
  bytes: Uint8Array,
  nested: ReadonlyMap<number, NestedMessage>,
): UndecodableCall | null {
  const fields = wireFields(bytes);
  let callId = 0n;
  for (const field of fields) {
    if (field.number === CALL_ID_FIELD_NUMBER && field.varint !== null) callId = field.varint;
  }
  for (const field of fields) {
    const message = nested.get(field.number);
    if (message === undefined || field.payload === null) continue;
    const problem = wireProblem(message.name, field.payload, message.fields);
    if (problem !== null) return new UndecodableCall(String(callId), message.field, problem);
  }
  return null;
}
