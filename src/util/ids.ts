import { assert } from './assert.ts';

/**
 * Branded ids keep quantities that share a representation from being mixed up:
 * a term is never passed where a log index is expected. Each has one constructor
 * that checks its invariant.
 */
declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

export type NodeId = Brand<string, 'NodeId'>;
export type Term = Brand<number, 'Term'>;
export type LogIndex = Brand<number, 'LogIndex'>;

export function nodeId(value: string): NodeId {
  assert(value.length > 0, 'node id must not be empty');
  return value as NodeId;
}

export function term(value: number): Term {
  assert(Number.isSafeInteger(value) && value >= 0, `term must be a safe integer >= 0: ${value}`);
  return value as Term;
}

export function logIndex(value: number): LogIndex {
  assert(
    Number.isSafeInteger(value) && value >= 0,
    `log index must be a safe integer >= 0: ${value}`,
  );
  return value as LogIndex;
}

/** A session is named by the log index of the entry that opened it. */
export type SessionId = Brand<number, 'SessionId'>;
/** The log index of the entry that made a grant. Strictly increases per lock. */
export type FencingToken = Brand<number, 'FencingToken'>;

export function sessionId(value: number): SessionId {
  assert(
    Number.isSafeInteger(value) && value > 0,
    `session id must be a safe integer > 0: ${value}`,
  );
  return value as SessionId;
}

export function fencingToken(value: number): FencingToken {
  assert(
    Number.isSafeInteger(value) && value > 0,
    `fencing token must be a safe integer > 0: ${value}`,
  );
  return value as FencingToken;
}
