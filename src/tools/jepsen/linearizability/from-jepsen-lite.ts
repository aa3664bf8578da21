import type { AcquireFailCode, CloseSessionOp, LinOp } from './history.ts';

/**
 * The fields this converter reads from an op of src/tools/jepsen/history.ts (the run's
 * own history). Declared here by shape, so this checker stands on its own and extra
 * fields added there later do not matter.
 */
export interface JepsenLiteOp {
  readonly id: number;
  readonly client: string;
  readonly session?: string;
  readonly kind: string;
  readonly lock: string;
  readonly invokeMs: number;
  readonly completeMs: number | null;
  readonly outcome: 'ok' | 'fail' | 'info';
  readonly token?: string;
  readonly error?: string;
  /** For an `ok` open-session: the lease length granted. */
  readonly ttlMs?: number;
}

export interface FromJepsenLiteOptions {
  /**
   * Whether a session whose close the history does not record may have been closed
   * after its last recorded op: adds an unanswered close there. Histories recorded
   * before the run recorded its session calls (the fixtures) need it: the run gave
   * sessions up unrecorded. A history with every close recorded should say false, so
   * that no close is made up. Default true.
   */
  readonly closeAfterLastOp?: boolean;
}

/**
 * Converts the Jepsen-lite history to the checker's. Writes to the fenced register are
 * not lock operations and are left out; run.ts takes exclusive locks only. Without
 * recorded OpenSession and KeepAlive ops no session has a known refresh, so the checker
 * cannot tell an early expiry from a lawful one: only fencing, holder and release rules
 * are checked then.
 */
export function fromJepsenLite(
  ops: readonly JepsenLiteOp[],
  options: FromJepsenLiteOptions = {},
): LinOp[] {
  const converted: LinOp[] = [];
  for (const op of ops) {
    const linOp = convertOp(op);
    if (linOp !== null) converted.push(linOp);
  }
  if (options.closeAfterLastOp ?? true) converted.push(...closesAfterLastOps(converted));
  return converted;
}

function convertOp(op: JepsenLiteOp): LinOp | null {
  switch (op.kind) {
    case 'acquire':
    case 'release':
      return convertLockOp(op);
    case 'open-session':
      // Only an answered open names its session; one that failed or went unanswered is
      // used by no later op (its client never learned the id), so it constrains nothing.
      if (op.outcome !== 'ok' || op.session === undefined || op.ttlMs === undefined) return null;
      return { ...commonOf(op), type: 'openSession', ttlMs: op.ttlMs };
    case 'keep-alive':
      return op.session === undefined ? null : { ...commonOf(op), type: 'keepAlive' };
    case 'close-session':
      if (op.session === undefined) return null;
      if (op.outcome !== 'fail') return { ...commonOf(op), type: 'closeSession' };
      return { ...commonOf(op), type: 'closeSession', failCode: closeFailCodeOf(op.error) };
    default:
      return null;
  }
}

function commonOf(op: JepsenLiteOp) {
  return {
    id: op.id,
    client: op.client,
    // An op with no session is given one of its own, so it constrains no other op.
    session: op.session ?? `${op.client}#op${op.id}`,
    invokeMs: op.invokeMs,
    completeMs: op.outcome === 'info' ? null : op.completeMs,
    outcome: op.outcome,
  };
}

function convertLockOp(op: JepsenLiteOp): LinOp {
  const common = commonOf(op);
  if (op.kind === 'acquire') {
    if (op.outcome === 'ok')
      return { ...common, type: 'acquire', lock: op.lock, mode: 'exclusive', token: tokenOf(op) };
    if (op.outcome === 'fail') {
      return {
        ...common,
        type: 'acquire',
        lock: op.lock,
        mode: 'exclusive',
        failCode: failCodeOf(op.error),
      };
    }
    return { ...common, type: 'acquire', lock: op.lock, mode: 'exclusive' };
  }
  return { ...common, type: 'release', lock: op.lock, token: tokenOf(op) };
}

function tokenOf(op: JepsenLiteOp): number {
  const token = Number(op.token);
  if (!Number.isSafeInteger(token))
    throw new Error(`op #${op.id}: token ${op.token} is not an integer`);
  return token;
}

/**
 * run.ts records the error as `name: message`, or a cluster's refusal as `code: message`
 * (history.ts errorText). A wait that ended without the lock is a statement about the
 * lock; so is a grant that ended before the answer (grantEnded, FAILED_PRECONDITION: its
 * grant was withdrawn, revoked or reached its max hold); a session found lost by the
 * client before sending is not.
 */
function failCodeOf(error: string | undefined): AcquireFailCode {
  if (error?.startsWith('LockNotAcquiredError') === true) return 'busy';
  if (error?.startsWith('grantEnded:') === true) return 'grantEnded';
  return 'other';
}

/**
 * The server answers a close of a session it does not know (closed, or expired) with
 * NOT_FOUND, which the client library names sessionNotFound (errorText: `code: message`).
 */
function closeFailCodeOf(error: string | undefined): 'sessionGone' | 'other' {
  return error?.startsWith('sessionNotFound:') === true ? 'sessionGone' : 'other';
}

/** An unanswered close per session, invoked no later than the client could have sent it. */
function closesAfterLastOps(ops: readonly LinOp[]): CloseSessionOp[] {
  const last = new Map<string, { client: string; atMs: number }>();
  const closed = new Set<string>();
  let nextId = 0;
  for (const op of ops) {
    nextId = Math.max(nextId, op.id + 1);
    if (op.type === 'closeSession') closed.add(op.session);
    const atMs = op.completeMs ?? op.invokeMs;
    const seen = last.get(op.session);
    if (seen === undefined || atMs > seen.atMs) last.set(op.session, { client: op.client, atMs });
  }
  const closes: CloseSessionOp[] = [];
  for (const [session, { client, atMs }] of last) {
    if (closed.has(session)) continue;
    closes.push({
      id: nextId++,
      type: 'closeSession',
      client,
      session,
      invokeMs: atMs,
      completeMs: null,
      outcome: 'info',
    });
  }
  return closes;
}
