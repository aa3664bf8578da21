import type { LockResult } from '../../lock/index.ts';
import type { Violation } from './checker.ts';
import { describeOp, GRANT_KINDS, type Op, type OpKind } from './history.ts';
import { type LogGrant, type ReplayedLog, requestKey } from './raft-log.ts';

/**
 * Every answer a client got from the cluster, replayed: the committed log, run through
 * the nodes' own state machine (raft-log.ts), must reproduce each `ok` answer at the
 * entry that carried its request, found by the request id the call carried. And each
 * `info` answer is resolved the same way: its request took effect in the log, or not.
 *
 * "Reproduces" means: an entry carrying the request (or, for a waiting Acquire, the grant
 * a later entry made to it) has the result the client was told, at or before the
 * applied index its response header named (the answer reflects that state, so what it
 * reports cannot come later). A KeepAlive carries no request id: its answer is checked
 * at the index its header named, which is the KeepAlive entry that refreshed it.
 *
 * Two refusals of an Acquire say something the log can deny (see refusalProblem): "not
 * acquired" says the request was never granted, and grantEnded says it was.
 */
export const REPLAYED_KINDS = [
  'open-session',
  'keep-alive',
  'acquire',
  'acquire-all',
  'release',
  'acquire-permits',
  'campaign',
  'proclaim',
  'resign',
  'close-session',
] as const;
export type ReplayedKind = (typeof REPLAYED_KINDS)[number];

export interface AnswerStats {
  /** `ok` answers of this kind in the history. */
  readonly ok: number;
  readonly reproduced: number;
  /** Answered from state before the replay's start (a snapshot): not checkable. */
  readonly beforeStart: number;
}

/** How the log resolved the `info` answers of one kind. */
export interface InfoStats {
  /** The request applied with effect (granted, released, opened, closed). */
  readonly tookEffect: number;
  /** Entries carried it, without that effect (a refusal, a wait that ended). */
  readonly noEffect: number;
  /** No committed entry after the replay's start carried it. */
  readonly notInLog: number;
  /** Nothing finds its entries: a KeepAlive carries no request id. */
  readonly unresolvable: number;
}

export interface AnswerCheck {
  readonly violations: Violation[];
  readonly answers: Readonly<Record<ReplayedKind, AnswerStats>>;
  readonly info: Readonly<Record<ReplayedKind, InfoStats>>;
}

/** The key of the request `op` made in ReplayedLog.requests, or null if it has none. */
export function requestKeyOfOp(op: Op): string | null {
  if (op.requestId === undefined) return null;
  switch (op.kind) {
    case 'open-session':
      return requestKey('OpenSession', '', op.requestId);
    case 'acquire':
      return sessionRequestKey('Acquire', op);
    case 'acquire-all':
      return sessionRequestKey('AcquireAll', op);
    case 'acquire-permits':
      return sessionRequestKey('AcquirePermits', op);
    case 'campaign':
      return sessionRequestKey('Campaign', op);
    case 'proclaim':
      return sessionRequestKey('Proclaim', op);
    // Resigning is a Release of the term's grant.
    case 'resign':
      return sessionRequestKey('Release', op);
    case 'release':
      return sessionRequestKey('Release', op);
    case 'close-session':
      return sessionRequestKey('CloseSession', op);
    default:
      return null;
  }
}

function sessionRequestKey(type: string, op: Op): string | null {
  return op.session === undefined || op.requestId === undefined
    ? null
    : requestKey(type, op.session, op.requestId);
}

/** The indexes of the committed entries that carried `op`'s request, in log order. */
export function entriesOf(op: Op, log: ReplayedLog): readonly number[] {
  const key = requestKeyOfOp(op);
  return key === null ? [] : (log.requests.get(key) ?? []);
}

export function checkAnswers(ops: readonly Op[], log: ReplayedLog): AnswerCheck {
  const replay = new AnswerReplay(log);
  const answers = tally(() => ({ ok: 0, reproduced: 0, beforeStart: 0 }));
  const info = tally(() => ({ tookEffect: 0, noEffect: 0, notInLog: 0, unresolvable: 0 }));
  const violations: Violation[] = [];
  for (const op of ops) {
    if (!isReplayed(op.kind)) continue;
    if (op.outcome === 'info') info[op.kind][replay.infoEffect(op)]++;
    const refusal = op.outcome === 'fail' ? replay.refusalProblem(op) : null;
    if (refusal !== null) {
      violations.push({
        check: 'acknowledged-grant',
        message: `${describeOp(op)} was told ${refusal}`,
        ops: [op.id],
      });
    }
    if (op.outcome !== 'ok') continue;
    const stats = answers[op.kind];
    stats.ok++;
    if (op.answerIndex !== undefined && op.answerIndex <= log.startIndex) {
      stats.beforeStart++;
      continue;
    }
    const problem = replay.problemWith(op);
    if (problem === null) stats.reproduced++;
    else
      violations.push({
        check: checkOf(op.kind),
        message: `${describeOp(op)} was acknowledged, but ${problem}`,
        ops: [op.id],
      });
  }
  return { violations, answers, info };
}

function isReplayed(kind: OpKind): kind is ReplayedKind {
  return (REPLAYED_KINDS as readonly string[]).includes(kind);
}

function checkOf(kind: ReplayedKind): Violation['check'] {
  if (GRANT_KINDS.has(kind)) return 'acknowledged-grant';
  if (kind === 'release' || kind === 'resign') return 'acknowledged-release';
  if (kind === 'proclaim') return 'acknowledged-proclaim';
  return 'acknowledged-session';
}

function tally<T>(zero: () => T): Record<ReplayedKind, T> {
  return Object.fromEntries(REPLAYED_KINDS.map((kind) => [kind, zero()])) as Record<
    ReplayedKind,
    T
  >;
}

/**
 * The error the client library reports when the wait of a one-name grant ended without
 * it (each a LockNotAcquiredError but the campaign's), by kind: such an answer says the
 * log never granted the request.
 */
const NOT_ACQUIRED_ERROR: Partial<Record<OpKind, string>> = {
  acquire: 'LockNotAcquiredError',
  'acquire-permits': 'PermitsNotAcquiredError',
  campaign: 'NotElectedError',
};

/** The result that says a request of each kind took effect (a grant also by a later entry). */
const EFFECT: Partial<Record<OpKind, LockResult['type']>> = {
  'open-session': 'SessionOpened',
  acquire: 'Acquired',
  'acquire-all': 'AcquiredAll',
  'acquire-permits': 'Acquired',
  campaign: 'Acquired',
  proclaim: 'Proclaimed',
  resign: 'Released',
  release: 'Released',
  'close-session': 'SessionClosed',
};

/** The replayed log, asked about one op at a time. */
class AnswerReplay {
  /** Grants by `${sessionId}/${requestId}`: a waiting Acquire is granted by a later entry. */
  private readonly grants = new Map<string, LogGrant[]>();
  /** Grants by `${lock}/${token}`, to say where a token the client was told went. */
  private readonly byToken = new Map<string, LogGrant>();

  constructor(private readonly log: ReplayedLog) {
    for (const grant of log.grants) {
      const key = `${grant.sessionId}/${grant.requestId}`;
      const same = this.grants.get(key);
      if (same === undefined) this.grants.set(key, [grant]);
      else same.push(grant);
      this.byToken.set(`${grant.lock}/${grant.token}`, grant);
    }
  }

  /** Why the replay does not reproduce `op`'s `ok` answer, or null when it does. */
  problemWith(op: Op): string | null {
    const problem = this.requestProblem(op);
    if (problem === null || !GRANT_KINDS.has(op.kind)) return problem;
    const grant = this.byToken.get(`${op.lock}/${op.token}`);
    const where =
      grant === undefined
        ? `the log made no grant of ${op.lock} with token ${op.token}`
        : `the log's grant with that token went to session ${grant.sessionId}, request ${grant.requestId}`;
    return `${problem}; ${where}`;
  }

  private requestProblem(op: Op): string | null {
    const where = this.reproducedAt(op);
    const answerIndex = op.answerIndex ?? Number.POSITIVE_INFINITY;
    if (where.some((index) => index <= answerIndex)) return null;
    if (where.length > 0) {
      return `the replay reproduces it only at index ${where.join(', ')}, after index ${answerIndex} its answer named`;
    }
    if (op.kind === 'keep-alive') return this.keepAliveProblem(op);
    const entries = entriesOf(op, this.log);
    if (entries.length === 0) {
      return `no committed entry (to index ${this.log.commitIndex}) carried its request`;
    }
    const results = entries.map(
      (index) => `${describeResult(this.log.results.get(index))} at ${index}`,
    );
    return `the replay answers its request with: ${results.join('; ')}`;
  }

  /** The indexes at which the replay gives `op`'s answer. */
  private reproducedAt(op: Op): number[] {
    switch (op.kind) {
      // A semaphore's permits and an election's term are granted as a lock is (kinds.ts).
      case 'acquire-permits':
      case 'campaign':
      case 'acquire':
        return [
          ...this.entriesWith(op, (r) => r.type === 'Acquired' && String(r.token) === op.token),
          ...this.grantsOf(op)
            .filter((grant) => grant.token === op.token)
            .map((grant) => grant.index),
        ];
      case 'acquire-all':
        return this.setGrantedAt(op, op.token);
      case 'release':
      case 'resign':
        return this.entriesWith(op, (r) => r.type === 'Released');
      case 'proclaim':
        return this.entriesWith(
          op,
          (r) => r.type === 'Proclaimed' && String(r.token) === op.token && r.value === op.value,
        );
      case 'close-session':
        return this.entriesWith(op, (r) => r.type === 'SessionClosed');
      case 'open-session':
        return this.entriesWith(
          op,
          (r) =>
            r.type === 'SessionOpened' &&
            String(r.sessionId) === op.session &&
            r.ttlMs === op.ttlMs,
        );
      case 'keep-alive':
        return op.answerIndex !== undefined && this.refreshedAt(op.answerIndex, op)
          ? [op.answerIndex]
          : [];
      default:
        return [];
    }
  }

  /**
   * Why the replay denies `op`'s refusal, or null when it does not (or it says nothing
   * the log can deny). The answer to a request is the same for every attempt of it
   * (README, "Exactly once"), so:
   *
   * - told "not acquired" (history.ts records LockNotAcquiredError): no entry up to the
   *   index its answer named granted the request. A grant that was withdrawn still
   *   counts: others were refused by it, and a retry must be told grantEnded (the bug
   *   fixed in 865128a was such a retry run afresh, queued, and told not acquired).
   * - told grantEnded: the log granted it. Checked only when the replay starts at the
   *   log's beginning: a grant made and ended before a snapshot is not in the replay.
   */
  refusalProblem(op: Op): string | null {
    if (op.kind === 'acquire-all') return this.setRefusalProblem(op);
    const notAcquired = NOT_ACQUIRED_ERROR[op.kind];
    if (notAcquired === undefined || requestKeyOfOp(op) === null) return null;
    const grantedAt = [
      ...this.entriesWith(op, (r) => r.type === 'Acquired'),
      ...this.grantsOf(op).map((grant) => grant.index),
    ];
    return this.grantRefusalProblem(op, grantedAt, notAcquired);
  }

  /**
   * As refusalProblem, for a set. Told "not acquired" (LockSetNotAcquiredError) or
   * grantEnded: as for one lock. Told deadlock (DeadlockError, decisive: nothing was
   * queued or granted): an entry carrying the request, at or before the index its answer
   * named, was refused with code deadlock, and none up to there granted it.
   */
  private setRefusalProblem(op: Op): string | null {
    if (requestKeyOfOp(op) === null) return null;
    const grantedAt = this.setGrantedAt(op, undefined);
    if (op.error?.startsWith('deadlock:') === true) {
      const answerIndex = op.answerIndex ?? Number.POSITIVE_INFINITY;
      const granted = grantedAt.filter((index) => index <= answerIndex);
      if (granted.length > 0)
        return `deadlock, but the log granted its request at index ${granted.join(', ')}`;
      const refused = this.entriesWith(
        op,
        (r) => r.type === 'Rejected' && r.code === 'deadlock',
      ).filter((index) => index <= answerIndex);
      if (refused.length > 0) return null;
      const entries = entriesOf(op, this.log).map(
        (index) => `${describeResult(this.log.results.get(index))} at ${index}`,
      );
      return `deadlock, but no entry up to index ${answerIndex} refused its request so (${entries.join('; ') || 'no committed entry carried it'})`;
    }
    return this.grantRefusalProblem(op, grantedAt, 'LockSetNotAcquiredError');
  }

  /** The refusals of an acquire or a set that say whether the log granted it. */
  private grantRefusalProblem(
    op: Op,
    grantedAt: readonly number[],
    notAcquiredError: string,
  ): string | null {
    if (op.error?.startsWith(`${notAcquiredError}:`) === true) {
      const answerIndex = op.answerIndex ?? Number.POSITIVE_INFINITY;
      const before = [...new Set(grantedAt.filter((index) => index <= answerIndex))];
      if (before.length === 0) return null;
      const named = op.answerIndex === undefined ? '' : ` (its answer named index ${answerIndex})`;
      return `not acquired${named}, but the log granted its request at index ${before.sort((a, b) => a - b).join(', ')}`;
    }
    if (op.error?.startsWith('grantEnded:') === true) {
      if (grantedAt.length > 0 || this.log.startIndex > 1) return null;
      return `its grant ended, but the log (replayed from its start) never granted its request`;
    }
    return null;
  }

  /** Resolves an `info` op by its request id. */
  infoEffect(op: Op): keyof InfoStats {
    if (requestKeyOfOp(op) === null) return 'unresolvable';
    const entries = entriesOf(op, this.log);
    if (entries.length === 0) return 'notInLog';
    const applied = this.entriesWith(op, (r) => r.type === EFFECT[op.kind]).length > 0;
    return applied ||
      (NOT_ACQUIRED_ERROR[op.kind] !== undefined && this.grantsOf(op).length > 0) ||
      (op.kind === 'acquire-all' && this.setGrantedAt(op, undefined).length > 0)
      ? 'tookEffect'
      : 'noEffect';
  }

  private entriesWith(op: Op, matches: (result: LockResult) => boolean): number[] {
    return entriesOf(op, this.log).filter((index) => {
      const result = this.log.results.get(index);
      return result !== undefined && matches(result);
    });
  }

  /**
   * The indexes at which the log granted `op`'s set (with `token`, when given): an
   * AcquiredAll entry carrying its request for exactly its locks, or a later entry that
   * granted the waiting request every lock of the set at once, which the replay sees as
   * one grant per lock at one index.
   */
  private setGrantedAt(op: Op, token: string | undefined): number[] {
    const asked = [...(op.locks ?? [])].sort();
    const sameSet = (names: readonly string[]): boolean =>
      names.length === asked.length && [...names].sort().every((name, i) => name === asked[i]);
    const answered = this.entriesWith(
      op,
      (r) =>
        r.type === 'AcquiredAll' &&
        (token === undefined || String(r.token) === token) &&
        sameSet(r.locks.map((each) => each.lock)),
    );
    const byIndex = new Map<number, string[]>();
    for (const grant of this.grants.get(`${op.session}/${op.requestId}`) ?? []) {
      if (token !== undefined && grant.token !== token) continue;
      const names = byIndex.get(grant.index) ?? [];
      names.push(grant.lock);
      byIndex.set(grant.index, names);
    }
    const promoted = [...byIndex].filter(([, names]) => sameSet(names)).map(([index]) => index);
    return [...new Set([...answered, ...promoted])];
  }

  private grantsOf(op: Op): readonly LogGrant[] {
    const found = this.grants.get(`${op.session}/${op.requestId}`) ?? [];
    return found.filter((grant) => grant.lock === op.lock);
  }

  private refreshedAt(index: number, op: Op): boolean {
    const result = this.log.results.get(index);
    return result?.type === 'KeptAlive' && result.refreshed.some((id) => String(id) === op.session);
  }

  private keepAliveProblem(op: Op): string {
    if (op.answerIndex === undefined) return 'its answer named no index';
    const result = this.log.results.get(op.answerIndex);
    if (result === undefined) {
      return `the committed log (to index ${this.log.commitIndex}) has no lock command at index ${op.answerIndex}, which its answer named`;
    }
    return `the entry at index ${op.answerIndex}, which its answer named, is ${describeResult(result)}, no refresh of session ${op.session}`;
  }
}

/** A result in a few words, for messages. */
function describeResult(result: LockResult | undefined): string {
  if (result === undefined) return 'no lock command';
  switch (result.type) {
    case 'Acquired':
      return `Acquired token ${result.token}`;
    case 'AcquiredAll':
      return `AcquiredAll [${result.locks.map((each) => each.lock).join(', ')}] token ${result.token}`;
    case 'SessionOpened':
      return `SessionOpened session ${result.sessionId} ttl ${result.ttlMs}`;
    case 'KeptAlive':
      return `KeptAlive [${result.refreshed.join(', ')}]`;
    case 'Rejected':
      return `Rejected ${result.code}`;
    default:
      return result.type;
  }
}
