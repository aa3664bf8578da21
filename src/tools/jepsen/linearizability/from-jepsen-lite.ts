import type { AcquireFailCode, CloseSessionOp, LinOp } from './history.ts';

/**
 * The fields this converter reads from an op of test/jepsen/history.ts (the run's own
 * history). Declared here by shape, so src/ does not import test code and extra fields
 * added there later do not matter.
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
}

export interface FromJepsenLiteOptions {
  /**
   * Session-level ops the run recorded (OpenSession, KeepAlive, CloseSession) in this
   * checker's format. Without them no session has a known refresh, so the checker
   * cannot tell an early expiry from a lawful one: only fencing, holder and release
   * rules are checked.
   */
  readonly sessionOps?: readonly LinOp[];
  /**
   * Whether each session may have been closed after its last recorded op (test/jepsen
   * run.ts closes a session it gives up without recording it, and the client releases an
   * unknown grant in the background). Adds an unanswered close there. Default true.
   */
  readonly closeAfterLastOp?: boolean;
}

/**
 * Converts the Jepsen-lite history to the checker's. Writes to the fenced register are
 * not lock operations and are left out; run.ts takes exclusive locks only.
 */
export function fromJepsenLite(
  ops: readonly JepsenLiteOp[],
  options: FromJepsenLiteOptions = {},
): LinOp[] {
  const converted: LinOp[] = [];
  for (const op of ops) {
    const lockOp = convertOp(op);
    if (lockOp !== null) converted.push(lockOp);
  }
  const sessionOps = options.sessionOps ?? [];
  const all = [...converted, ...sessionOps];
  if (options.closeAfterLastOp ?? true) all.push(...closesAfterLastOps(all));
  return all;
}

function convertOp(op: JepsenLiteOp): LinOp | null {
  const common = {
    id: op.id,
    client: op.client,
    // An op with no session is given one of its own, so it constrains no other op.
    session: op.session ?? `${op.client}#op${op.id}`,
    invokeMs: op.invokeMs,
    completeMs: op.outcome === 'info' ? null : op.completeMs,
    outcome: op.outcome,
  };
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
  if (op.kind === 'release')
    return { ...common, type: 'release', lock: op.lock, token: tokenOf(op) };
  return null;
}

function tokenOf(op: JepsenLiteOp): number {
  const token = Number(op.token);
  if (!Number.isSafeInteger(token))
    throw new Error(`op #${op.id}: token ${op.token} is not an integer`);
  return token;
}

/**
 * run.ts records the error as `name: message`. A wait that ended without the lock is a
 * statement about the lock; a session found lost by the client before sending is not.
 */
function failCodeOf(error: string | undefined): AcquireFailCode {
  if (error?.startsWith('LockNotAcquiredError') === true) return 'busy';
  return 'other';
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
