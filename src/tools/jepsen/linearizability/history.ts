/**
 * The history the linearizability checker reads: what clients asked the lock service and
 * what they were told, with times from one monotonic clock (the test process's).
 *
 * Outcomes follow Jepsen: `ok` happened, `fail` certainly did not happen (save an acquire
 * answered `grantEnded`, whose effect had been undone by its answer), `info` is
 * unknown — it may take effect at any time after its invocation, or never.
 */
export type Outcome = 'ok' | 'fail' | 'info';

export type LockMode = 'exclusive' | 'shared';

/**
 * Why an acquire was refused, where the refusal says something about the lock:
 * `busy` — another session held the lock (a try-lock, or a wait that ran out);
 * `sessionGone` — the session had expired or was closed;
 * `grantEnded` — the request WAS granted, and that grant had ended by the answer (an
 *   answer that could not be delivered was withdrawn, and the retry was told so; or the
 *   grant was revoked or reached its max hold). The request id is new to the call, so
 *   the grant and its end both lie within the op's interval: partition.ts splits the op
 *   into that grant and a GrantEndOp, each linearized within it;
 * `other` — anything that only means "not granted" (validation, limits, a client-side
 *   refusal before sending). The checker treats it as having no effect.
 */
export type AcquireFailCode = 'busy' | 'sessionGone' | 'grantEnded' | 'other';

interface OpCommon {
  /** Unique in the history; names the op in a report. */
  readonly id: number;
  readonly client: string;
  readonly session: string;
  readonly invokeMs: number;
  /** null exactly when the outcome is `info`: the answer never came. */
  readonly completeMs: number | null;
  readonly outcome: Outcome;
}

export interface OpenSessionOp extends OpCommon {
  readonly type: 'openSession';
  readonly ttlMs: number;
}

/** A refresh of the session's lease. */
export interface KeepAliveOp extends OpCommon {
  readonly type: 'keepAlive';
  /** The TTL the answer carried, when the session's open is not in the history. */
  readonly ttlMs?: number;
}

export interface CloseSessionOp extends OpCommon {
  readonly type: 'closeSession';
  /**
   * For a `fail` close: `sessionGone` when it was refused because the session was
   * unknown, which says the session had ended by its answer (expired, or closed by an
   * earlier attempt of this same close); `other` or none for a refusal that says nothing.
   */
  readonly failCode?: 'sessionGone' | 'other';
}

export interface AcquireOp extends OpCommon {
  readonly type: 'acquire';
  readonly lock: string;
  readonly mode: LockMode;
  readonly requestId?: string;
  /** The granted fencing token, for an `ok` acquire. */
  readonly token?: number;
  /** Why it was refused, for a `fail` acquire. */
  readonly failCode?: AcquireFailCode;
}

export interface ReleaseOp extends OpCommon {
  readonly type: 'release';
  readonly lock: string;
  readonly token: number;
}

/**
 * A resource asking whether `token` is still the current grant of `lock` (Chubby's
 * CheckSequencer). A read: only an answered one says anything. Its `session` is whoever
 * asked; no session is needed.
 */
export interface ValidateFenceOp extends OpCommon {
  readonly type: 'validateFence';
  readonly lock: string;
  readonly token: number;
  /** The answer, for an `ok` op. */
  readonly valid?: boolean;
}

export type LinOp =
  | OpenSessionOp
  | KeepAliveOp
  | CloseSessionOp
  | AcquireOp
  | ReleaseOp
  | ValidateFenceOp;

/**
 * The second half of an acquire answered `grantEnded`: the end of the grant its first
 * half made. Not a history op: partition.ts makes it, with the acquire's id and interval.
 */
export interface GrantEndOp extends OpCommon {
  readonly type: 'grantEnd';
  readonly lock: string;
}

/** The ops that belong to one lock's partition (a close belongs to each lock its session used). */
export type PartitionOp = AcquireOp | GrantEndOp | ReleaseOp | CloseSessionOp | ValidateFenceOp;

/** The end half of an acquire answered `grantEnded`, over the same interval. */
export function grantEndOf(op: AcquireOp): GrantEndOp {
  const { id, client, session, invokeMs, completeMs, outcome, lock } = op;
  return { id, client, session, invokeMs, completeMs, outcome, lock, type: 'grantEnd' };
}

/** The time the op's answer came, or +∞ for an op that never answered. */
export function returnMs(op: { readonly completeMs: number | null }): number {
  return op.completeMs ?? Number.POSITIVE_INFINITY;
}

/** Throws on a history the checker cannot read soundly (a programmer or recorder error). */
export function validateHistory(ops: readonly LinOp[]): void {
  const ids = new Set<number>();
  for (const op of ops) {
    if (ids.has(op.id)) throw new Error(`op id ${op.id} appears twice`);
    ids.add(op.id);
    if (!Number.isFinite(op.invokeMs)) throw new Error(`op #${op.id}: invokeMs is not finite`);
    if ((op.completeMs === null) !== (op.outcome === 'info')) {
      throw new Error(`op #${op.id}: completeMs must be null exactly when the outcome is info`);
    }
    if (op.completeMs !== null && op.completeMs < op.invokeMs) {
      throw new Error(`op #${op.id}: completes before it is invoked`);
    }
    if (op.type === 'acquire' && op.outcome === 'ok' && !Number.isSafeInteger(op.token)) {
      throw new Error(`op #${op.id}: an ok acquire needs an integer token`);
    }
    if (op.type === 'acquire' && op.failCode === 'grantEnded' && op.outcome !== 'fail') {
      throw new Error(`op #${op.id}: only a fail acquire can be answered grantEnded`);
    }
    if (op.type === 'validateFence' && op.outcome === 'ok' && op.valid === undefined) {
      throw new Error(`op #${op.id}: an ok validateFence needs its answer`);
    }
  }
}

/** One line per op, for violation reports. */
export function describeLinOp(op: LinOp | GrantEndOp): string {
  const done = op.completeMs === null ? '∞' : op.completeMs.toFixed(1);
  const span = `[${op.invokeMs.toFixed(1)}..${done}]`;
  const who = `${op.client}/${op.session}`;
  switch (op.type) {
    case 'openSession':
      return `#${op.id} ${who} openSession ttl=${op.ttlMs} ${op.outcome} ${span}`;
    case 'keepAlive':
    case 'closeSession':
      return `#${op.id} ${who} ${op.type} ${op.outcome} ${span}`;
    case 'acquire': {
      const token = op.token === undefined ? '' : ` token=${op.token}`;
      const code = op.failCode === undefined ? '' : ` (${op.failCode})`;
      return `#${op.id} ${who} acquire ${op.lock} ${op.mode} ${op.outcome}${code}${token} ${span}`;
    }
    case 'grantEnd':
      return `#${op.id} ${who} (end of the grant of ${op.lock} it was told had ended) ${span}`;
    case 'release':
      return `#${op.id} ${who} release ${op.lock} token=${op.token} ${op.outcome} ${span}`;
    case 'validateFence': {
      const answer = op.valid === undefined ? '' : ` valid=${op.valid}`;
      return `#${op.id} ${who} validateFence ${op.lock} token=${op.token} ${op.outcome}${answer} ${span}`;
    }
  }
}
