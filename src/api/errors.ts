import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import type { LockResult, RejectionCode } from '../lock/index.ts';
import { DlmError, type DlmErrorCode } from '../node/errors.ts';
import type { NodeId } from '../util/ids.ts';

/**
 * The API's own refusals of a caller (issue 15, src/api/auth): no valid credentials, or
 * an identity whose roles do not grant the call on that lock name.
 */
export type AuthErrorCode = 'unauthenticated' | 'permissionDenied';

/** Every stable error code a client can see: the state machine's refusals, the runtime's errors, and the API's refusals of a caller. */
export type ApiErrorCode = RejectionCode | DlmErrorCode | AuthErrorCode;

/**
 * The one error table (DESIGN §6). A `Record` over the union makes the compiler refuse
 * a new RejectionCode or DlmErrorCode until it has a row here.
 */
export const GRPC_STATUS_BY_CODE: Readonly<Record<ApiErrorCode, status>> = {
  invalidArgument: status.INVALID_ARGUMENT,
  sessionNotFound: status.NOT_FOUND,
  notHolder: status.FAILED_PRECONDITION,
  staleToken: status.FAILED_PRECONDITION,
  limitReached: status.RESOURCE_EXHAUSTED,
  modeMismatch: status.FAILED_PRECONDITION,
  grantEnded: status.FAILED_PRECONDITION,
  alreadyWaiting: status.FAILED_PRECONDITION,
  alreadyHolding: status.FAILED_PRECONDITION,
  deadlock: status.ABORTED,
  kindMismatch: status.FAILED_PRECONDITION,
  notSessionOwner: status.PERMISSION_DENIED,
  unauthenticated: status.UNAUTHENTICATED,
  permissionDenied: status.PERMISSION_DENIED,
  UNAVAILABLE: status.UNAVAILABLE,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  ABORTED: status.ABORTED,
  INTERNAL: status.INTERNAL,
};

/** Trailing-metadata keys; part of the public contract (see proto/dlm.proto). */
export const ERROR_CODE_KEY = 'dlm-error-code';
export const LEADER_HINT_KEY = 'dlm-leader-hint';
/** On backpressure (RESOURCE_EXHAUSTED from the runtime): milliseconds to wait before retrying. */
export const RETRY_AFTER_KEY = 'dlm-retry-after-ms';
/** W3C Trace Context: the caller's span, sent as request metadata. */
export const TRACEPARENT_KEY = 'traceparent';
/** On every answer: the trace id the node logged the call under. */
export const TRACE_ID_KEY = 'dlm-trace-id';

/** An error the API raises itself, with a stable code from the table. */
export class ApiError extends Error {
  override readonly name = 'ApiError';

  /**
   * `retryAfterMs`: for RESOURCE_EXHAUSTED, when the refusal knows better than the
   * usual backpressure hint how soon a retry can be taken (null: the usual hint).
   */
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    readonly leaderHint: NodeId | null = null,
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
  }
}

export function invalidArgument(message: string): ApiError {
  return new ApiError('invalidArgument', message);
}

/** The proto's name for a field the core spells in camelCase: `lockDelayMs` → `lock_delay_ms`. */
export function wireFieldName(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

/**
 * A state-machine refusal becomes an error; every other result is the caller's to handle.
 * One about a field of the command names the field of `request` (the request message's
 * name), as the API's own checks do: the rules in force are checked only in the state
 * machine (see validate.ts), and the client should read `AcquireRequest.owner` either way.
 */
export function rejectionError(
  result: Extract<LockResult, { type: 'Rejected' }>,
  request: string,
  wireNames: Readonly<Record<string, string>> = {},
): ApiError {
  const { code, detail, field } = result;
  if (field === undefined || !detail.startsWith(`${field} `)) return new ApiError(code, detail);
  const problem = detail.slice(field.length + 1);
  const wireName = Object.hasOwn(wireNames, field) ? wireNames[field] : wireFieldName(field);
  return new ApiError(code, `${request}.${wireName}: ${problem}`);
}

/**
 * Where a request message names a command's field otherwise than snake_case of it:
 * a semaphore is AcquirePermitsRequest.name and an election CampaignRequest.election,
 * both the command's `lock` (issue 17), and a token is `fencing_token` on the wire.
 */
export const SEMAPHORE_WIRE_NAMES: Readonly<Record<string, string>> = { lock: 'name' };
export const ELECTION_WIRE_NAMES: Readonly<Record<string, string>> = {
  lock: 'election',
  token: 'fencing_token',
};

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/** Injected so the server logs through whatever the process uses (pino in production). */
export type ApiLogger = (
  level: LogLevel,
  message: string,
  fields?: Record<string, unknown>,
) => void;

export const SILENT_LOGGER: ApiLogger = () => {};

export interface ErrorContext {
  readonly method: string;
  readonly logger: ApiLogger;
  /** The leader this node knows now; the hint when the error itself carries none. */
  readonly currentLeader: () => NodeId | null;
  /** The retry hint for backpressure. */
  readonly retryAfterMs: number;
}

/**
 * What a failed call tells its caller, whatever carries it: a unary call's status and
 * trailing metadata, or a SessionCallError on a Session stream.
 */
export interface CallFailure {
  readonly code: ApiErrorCode;
  readonly message: string;
  readonly leaderHint: NodeId | null;
  /** Set on backpressure only: how long to wait before retrying. */
  readonly retryAfterMs: number | null;
}

/**
 * Turns anything a handler threw into what the caller is told. Known errors keep their
 * code; anything else is a bug, so it is logged and reported as INTERNAL without
 * details that could leak internals.
 */
export function toCallFailure(error: unknown, context: ErrorContext): CallFailure {
  const known = knownError(error);
  if (known === null) {
    context.logger('error', 'unexpected error in API handler', {
      method: context.method,
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    });
    return { code: 'INTERNAL', message: 'internal error', leaderHint: null, retryAfterMs: null };
  }
  if (known.code === 'INTERNAL') {
    context.logger('error', 'node reported an internal error', {
      method: context.method,
      error: known.message,
    });
  }
  const hint =
    known.code === 'UNAVAILABLE' ? (known.leaderHint ?? context.currentLeader()) : known.leaderHint;
  // The runtime's RESOURCE_EXHAUSTED is always backpressure: nothing was done, and the
  // same request may be retried. (A lock limit is the state machine's limitReached.)
  const ownHint = known instanceof ApiError ? known.retryAfterMs : null;
  const retryAfterMs =
    known.code === 'RESOURCE_EXHAUSTED' ? (ownHint ?? context.retryAfterMs) : null;
  return { code: known.code, message: known.message, leaderHint: hint, retryAfterMs };
}

function knownError(error: unknown): ApiError | DlmError | null {
  return error instanceof ApiError || error instanceof DlmError ? error : null;
}

export function failureServiceError(failure: CallFailure): ServiceError {
  return serviceError(failure.code, failure.message, failure.leaderHint, failure.retryAfterMs);
}

export function serviceError(
  code: ApiErrorCode,
  message: string,
  leaderHint: NodeId | null,
  retryAfterMs: number | null = null,
): ServiceError {
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_KEY, code);
  if (leaderHint !== null) metadata.set(LEADER_HINT_KEY, leaderHint);
  if (retryAfterMs !== null) metadata.set(RETRY_AFTER_KEY, String(retryAfterMs));
  return Object.assign(new Error(message), {
    code: GRPC_STATUS_BY_CODE[code],
    details: message,
    metadata,
  });
}
