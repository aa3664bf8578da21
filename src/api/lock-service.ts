import type { LockCommand, LockResult } from '../lock/index.ts';
import type { AppliedProposal } from '../node/proposals.ts';
import { withFields } from '../util/objects.ts';
import { acquire, acquireAll, acquirePermits, campaign } from './acquire.ts';
import {
  askerFields,
  identityField,
  requirePermission,
  requireSomePermission,
} from './auth/guard.ts';
import { clientWrite } from './client-write.ts';
import { type ApiContext, type CallScope, header, unary } from './context.ts';
import { leader, observe, proclaim, resign } from './election.ts';
import { ApiError, rejectionError } from './errors.ts';
import { listLocks, listSessions, lockInfo } from './list.ts';
import type {
  AcquireAllResponse,
  AcquireResponse,
  CloseSessionResponse,
  DescribeResponse,
  KeepAliveResponse,
  LockServiceHandlers,
  OpenSessionResponse,
  ReleaseResponse,
  ValidateFenceResponse,
} from './proto.ts';
import { toUint64 } from './proto.ts';
import { SessionStreams } from './session-stream.ts';
import {
  parseCloseSession,
  parseDescribe,
  parseKeepAlive,
  parseOpenSession,
  parseRelease,
  parseValidateFence,
} from './validate.ts';
import { watch } from './watch.ts';

/**
 * The calls of dlm.v1.Lock that both transports carry: each unary RPC, and the same
 * call on a Session stream (session-stream.ts), run one function, so validation,
 * answers and errors cannot drift apart.
 */
export interface LockCalls {
  OpenSession: LockCall<OpenSessionResponse>;
  KeepAlive: LockCall<KeepAliveResponse>;
  CloseSession: LockCall<CloseSessionResponse>;
  Acquire: LockCall<AcquireResponse>;
  AcquireAll: LockCall<AcquireAllResponse>;
  Release: LockCall<ReleaseResponse>;
  ValidateFence: LockCall<ValidateFenceResponse>;
  Describe: LockCall<DescribeResponse>;
}

/** One call: the raw request as decoded (validated here), and the caller's scope. */
export type LockCall<Response> = (
  context: ApiContext,
  raw: unknown,
  scope: CallScope,
) => Promise<Response>;

export const LOCK_CALLS: LockCalls = {
  OpenSession: (context, raw, scope) => openSession(context, raw, scope),
  KeepAlive: (context, raw, scope) => keepAlive(context, raw, scope),
  CloseSession: (context, raw, scope) => closeSession(context, raw, scope),
  Acquire: (context, raw, scope) =>
    timed(context, acquire(context, raw, scope), (answer) => answer.acquired),
  AcquireAll: (context, raw, scope) =>
    timed(context, acquireAll(context, raw, scope), (answer) => answer.acquired),
  Release: (context, raw, scope) => release(context, raw, scope),
  ValidateFence: (context, raw, scope) => validateFence(context, raw, scope),
  Describe: (context, raw, scope) => describe(context, raw, scope),
};

/**
 * dlm.v1.Lock on top of one node. Mutations go through the log; reads through ReadIndex.
 * `sessions` holds the open Session streams, for the server to drain when it stops.
 */
export function lockService(
  context: ApiContext,
  sessions: SessionStreams = new SessionStreams(),
): LockServiceHandlers {
  const unaryOf = <Response>(method: keyof LockCalls, call: LockCall<Response>) =>
    unary<Response>(context, method, (raw, _grpcCall, scope) => call(context, raw, scope));
  return {
    OpenSession: unaryOf('OpenSession', LOCK_CALLS.OpenSession),
    KeepAlive: unaryOf('KeepAlive', LOCK_CALLS.KeepAlive),
    CloseSession: unaryOf('CloseSession', LOCK_CALLS.CloseSession),
    Acquire: unaryOf('Acquire', LOCK_CALLS.Acquire),
    AcquireAll: unaryOf('AcquireAll', LOCK_CALLS.AcquireAll),
    Release: unaryOf('Release', LOCK_CALLS.Release),
    ValidateFence: unaryOf('ValidateFence', LOCK_CALLS.ValidateFence),
    Describe: unaryOf('Describe', LOCK_CALLS.Describe),
    AcquirePermits: unary(context, 'AcquirePermits', (raw, _call, scope) =>
      timed(context, acquirePermits(context, raw, scope), (answer) => answer.acquired),
    ),
    Campaign: unary(context, 'Campaign', (raw, _call, scope) =>
      timed(context, campaign(context, raw, scope), (answer) => answer.elected),
    ),
    Proclaim: unary(context, 'Proclaim', (raw, _call, scope) => proclaim(context, raw, scope)),
    Resign: unary(context, 'Resign', (raw, _call, scope) => resign(context, raw, scope)),
    Leader: unary(context, 'Leader', (raw, _call, scope) => leader(context, raw, scope)),
    Observe: (call) => observe(context, call),
    Watch: (call) => watch(context, call),
    Session: (call) => sessions.serve(context, LOCK_CALLS, call),
    ListLocks: unary(context, 'ListLocks', (raw, _call, scope) =>
      listLocks(context, raw, scope.caller),
    ),
    ListSessions: unary(context, 'ListSessions', (raw, _call, scope) =>
      listSessions(context, raw, scope.caller),
    ),
  };
}

/**
 * Reports how long an Acquire (or AcquireAll, AcquirePermits, Campaign) took, waiting
 * included, and how it ended; `granted` reads from its answer whether it got the grant.
 */
async function timed<Response>(
  context: ApiContext,
  answer: Promise<Response>,
  granted: (response: Response) => boolean,
): Promise<Response> {
  const startedMs = performance.now();
  const seconds = (): number => (performance.now() - startedMs) / 1_000;
  try {
    const response = await answer;
    context.observer?.acquireEnded(seconds(), granted(response) ? 'acquired' : 'not_acquired');
    return response;
  } catch (error) {
    context.observer?.acquireEnded(seconds(), 'error');
    throw error;
  }
}

/** Proposes a command for a call and returns its result, turning a refusal into its error. */
async function write<T extends LockResult['type']>(
  context: ApiContext,
  scope: CallScope,
  command: LockCommand,
  expected: T,
): Promise<AppliedProposal & { result: Extract<LockResult, { type: T }> }> {
  const applied = await clientWrite(context, scope, command);
  const { result } = applied;
  // Each RPC proposes the command of its name (OpenSessionRequest → OpenSession).
  if (result.type === 'Rejected') throw rejectionError(result, `${command.type}Request`);
  if (result.type !== expected) {
    throw new Error(`${command.type} was answered with ${result.type}, not ${expected}`);
  }
  return applied as AppliedProposal & { result: Extract<LockResult, { type: T }> };
}

async function openSession(
  context: ApiContext,
  raw: unknown,
  scope: CallScope,
): Promise<OpenSessionResponse> {
  requireSomePermission(context.auth, scope.caller, 'lock');
  const command = withFields(parseOpenSession(raw), askerFields(context.auth, scope.caller));
  const { index, result } = await write(context, scope, command, 'SessionOpened');
  return {
    header: header(context.node, index),
    session_id: toUint64(result.sessionId),
    ttl_ms: toUint64(result.ttlMs),
  };
}

async function keepAlive(
  context: ApiContext,
  raw: unknown,
  scope: CallScope,
): Promise<KeepAliveResponse> {
  const { sessionIds, batch } = parseKeepAlive(raw);
  requireSomePermission(context.auth, scope.caller, 'lock');
  // One entry for the whole batch; the state machine refuses one past keepAliveBatchMax
  // (the rules in force where it applies), naming KeepAliveRequest.session_ids.
  const { index, result } = await write(
    context,
    scope,
    { type: 'KeepAlive', sessionIds, ...identityField(context.auth, scope.caller) },
    'KeptAlive',
  );
  const expired = result.missing.map((id) => toUint64(id));
  if (batch) {
    return { header: header(context.node, index), ttl_ms: '0', expired_session_ids: expired };
  }
  const [sessionId] = sessionIds;
  // A session's TTL never changes, so the applied state's value is the one refreshed.
  const ttlMs = sessionId === undefined ? undefined : context.node.locks.session(sessionId)?.ttlMs;
  if (result.refreshed.length === 0 || ttlMs === undefined) {
    throw new ApiError('sessionNotFound', `session ${sessionId} is unknown or expired`);
  }
  return { header: header(context.node, index), ttl_ms: toUint64(ttlMs), expired_session_ids: [] };
}

async function closeSession(
  context: ApiContext,
  raw: unknown,
  scope: CallScope,
): Promise<CloseSessionResponse> {
  requireSomePermission(context.auth, scope.caller, 'lock');
  const command = withFields(parseCloseSession(raw), identityField(context.auth, scope.caller));
  const { index } = await write(context, scope, command, 'SessionClosed');
  return { header: header(context.node, index) };
}

async function release(
  context: ApiContext,
  raw: unknown,
  scope: CallScope,
): Promise<ReleaseResponse> {
  const request = parseRelease(raw);
  requirePermission(context.auth, scope.caller, 'lock', request.lock);
  const command = withFields(request, identityField(context.auth, scope.caller));
  const { index } = await write(context, scope, command, 'Released');
  return { header: header(context.node, index), released: true };
}

async function validateFence(
  context: ApiContext,
  raw: unknown,
  scope: CallScope,
): Promise<ValidateFenceResponse> {
  const query = parseValidateFence(raw);
  requirePermission(context.auth, scope.caller, 'read', query.lock);
  const { value, index } = await context.node.read((locks) => ({
    value: locks.validateFence(query.lock, query.token),
    index: locks.lastAppliedIndex,
  }));
  return {
    header: header(context.node, index),
    valid: value.valid,
    current_token: toUint64(value.currentToken ?? 0),
  };
}

async function describe(
  context: ApiContext,
  raw: unknown,
  scope: CallScope,
): Promise<DescribeResponse> {
  const query = parseDescribe(raw);
  // Holders' and waiters' owners are shown only to those who may read the lock.
  requirePermission(context.auth, scope.caller, 'read', query.lock);
  const run = (locks: ApiContext['node']['locks']) => ({
    value: locks.describe(query.lock),
    index: locks.lastAppliedIndex,
  });
  // A stale read skips the ReadIndex round: it answers from this node's state as is.
  const { value, index } = query.stale ? run(context.node.locks) : await context.node.read(run);
  const { holders, waiters, mode } = lockInfo(context, value);
  return {
    header: header(context.node, index),
    holders,
    waiters,
    mode,
  };
}
