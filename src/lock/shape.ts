import { utf8ByteLength } from '../util/utf8.ts';
import { BEHAVIOUR_MULTI_LOCK, BEHAVIOUR_SEMAPHORES_ELECTIONS } from './behaviour.ts';
import { IDENTITY_BYTES_MAX, quotaProblem } from './identity-quota.ts';
import type { LockCommandType } from './types.ts';

/**
 * Every replica applies every entry, so a malformed command must never throw: it
 * would stop the whole cluster at the same index. The API validates requests before
 * proposing them; this is the state machine's own line of defence, and it names the
 * field that is wrong.
 */
type FieldKind = 'string' | 'number' | 'numbers' | 'boolean' | 'object' | 'claims';

const FIELDS: Readonly<Record<LockCommandType, Readonly<Record<string, FieldKind>>>> = {
  OpenSession: { ttlMs: 'number', clientName: 'string', requestId: 'string' },
  KeepAlive: { sessionIds: 'numbers' },
  CloseSession: { sessionId: 'number', requestId: 'string' },
  ExpireSession: { sessionId: 'number', lastRefreshIndex: 'number' },
  Acquire: {
    lock: 'string',
    sessionId: 'number',
    mode: 'string',
    waitMs: 'number',
    requestId: 'string',
    owner: 'string',
    maxHoldMs: 'number',
    lockDelayMs: 'number',
  },
  AcquireAll: {
    locks: 'claims',
    sessionId: 'number',
    waitMs: 'number',
    requestId: 'string',
    owner: 'string',
    maxHoldMs: 'number',
    lockDelayMs: 'number',
  },
  AcquirePermits: {
    lock: 'string',
    permits: 'number',
    limit: 'number',
    sessionId: 'number',
    waitMs: 'number',
    requestId: 'string',
    owner: 'string',
    maxHoldMs: 'number',
    lockDelayMs: 'number',
  },
  Campaign: {
    lock: 'string',
    value: 'string',
    sessionId: 'number',
    waitMs: 'number',
    requestId: 'string',
    owner: 'string',
    maxHoldMs: 'number',
    lockDelayMs: 'number',
  },
  Proclaim: {
    lock: 'string',
    sessionId: 'number',
    token: 'number',
    value: 'string',
    requestId: 'string',
  },
  Release: { lock: 'string', sessionId: 'number', token: 'number', requestId: 'string' },
  CancelWait: { lock: 'string', sessionId: 'number', requestId: 'string' },
  Withdraw: { lock: 'string', sessionId: 'number', requestId: 'string', attemptIndex: 'number' },
  WaitExpired: { lock: 'string', sessionId: 'number', waiterIndex: 'number' },
  LockDelayEnded: { lock: 'string', delayIndex: 'number' },
  MaxHoldReached: { lock: 'string', sessionId: 'number', token: 'number' },
  Promote: { lock: 'string', afterIndex: 'number' },
  Revoke: { lock: 'string', reason: 'string' },
  // The rules' own fields are checked when the command applies (lockRulesProblem).
  SetRules: { rules: 'object', onlyIfUnset: 'boolean' },
  // Its range is checked when the command applies (setBehaviour).
  SetBehaviour: { version: 'number' },
};

/**
 * Command types a later release added, with the behaviour version from which they
 * apply. Below it the type is unknown, as it was to the release before, and the entry is
 * refused exactly as that release refused it: every replica applies it alike whatever
 * binary it runs.
 */
const TYPE_SINCE: Partial<Readonly<Record<LockCommandType, number>>> = {
  AcquireAll: BEHAVIOUR_MULTI_LOCK,
  AcquirePermits: BEHAVIOUR_SEMAPHORES_ELECTIONS,
  Campaign: BEHAVIOUR_SEMAPHORES_ELECTIONS,
  Proclaim: BEHAVIOUR_SEMAPHORES_ELECTIONS,
};

/** Integer-ness and ranges are checked later, with the limits; here only the type. */
function isNumber(value: unknown): boolean {
  return typeof value === 'number';
}

/**
 * What is wrong with the command's shape, or null when every field has the right type;
 * `behaviour` is the version in force (see TYPE_SINCE).
 */
/** FIELDS as lists, made once: every command is checked twice (API and apply). */
const FIELD_LISTS: Readonly<Record<string, readonly (readonly [string, FieldKind])[]>> =
  Object.fromEntries(
    Object.entries(FIELDS).map(([type, fields]) => [type, Object.entries(fields)]),
  );

export function commandShapeProblem(command: unknown, behaviour: number): string | null {
  if (typeof command !== 'object' || command === null) return 'command must be an object';
  const type = (command as { type?: unknown }).type;
  if (
    typeof type !== 'string' ||
    !Object.hasOwn(FIELDS, type) ||
    (TYPE_SINCE[type as LockCommandType] ?? behaviour) > behaviour
  ) {
    return `unknown command type ${JSON.stringify(type)}`;
  }
  for (const [field, kind] of FIELD_LISTS[type] ?? []) {
    const value = (command as Record<string, unknown>)[field];
    if (!hasKind(value, kind)) return `${type}.${field} must be ${describeKind(kind)}`;
  }
  return optionalFieldsProblem(type, command as Record<string, unknown>);
}

/** The optional fields of issue 15 (identity, quota): absent, or of the right shape. */
function optionalFieldsProblem(type: string, command: Record<string, unknown>): string | null {
  const { identity, quota, onlyIfSetAt } = command;
  if (type === 'SetRules' && onlyIfSetAt !== undefined && !isNumber(onlyIfSetAt)) {
    return 'SetRules.onlyIfSetAt must be a number';
  }
  if (identity !== undefined && typeof identity !== 'string') {
    return `${type}.identity must be a string`;
  }
  // Kept in the session, its dedupe key and every snapshot: bounded like the config's.
  if (identity !== undefined && utf8ByteLength(identity) > IDENTITY_BYTES_MAX) {
    return `${type}.identity is ${utf8ByteLength(identity)} bytes, over IDENTITY_BYTES_MAX (${IDENTITY_BYTES_MAX})`;
  }
  const problem = quotaProblem(quota);
  return problem === null ? null : `${type}.quota.${problem}`;
}

function hasKind(value: unknown, kind: FieldKind): boolean {
  switch (kind) {
    case 'string':
      return typeof value === 'string';
    case 'number':
      return isNumber(value);
    case 'numbers':
      return Array.isArray(value) && value.every(isNumber);
    case 'boolean':
      return typeof value === 'boolean';
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value);
    case 'claims':
      return Array.isArray(value) && value.every(isClaim);
  }
}

/** A lock of an AcquireAll: its name and mode are strings (their values are checked later). */
function isClaim(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const { lock, mode } = value as { lock?: unknown; mode?: unknown };
  return typeof lock === 'string' && typeof mode === 'string';
}

function describeKind(kind: FieldKind): string {
  switch (kind) {
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    case 'numbers':
      return 'a list of numbers';
    case 'boolean':
      return 'a boolean';
    case 'object':
      return 'an object';
    case 'claims':
      return 'a list of {lock, mode} with string values';
  }
}
