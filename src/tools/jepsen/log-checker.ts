import { type Hold, holdsOf, type Violation } from './checker.ts';
import { beliefsOf } from './coordination-checker.ts';
import { describeOp, GRANT_KINDS, type Op } from './history.ts';
import {
  type AnswerStats,
  checkAnswers,
  entriesOf,
  type InfoStats,
  type ReplayedKind,
} from './log-answers.ts';
import type { LogAgreement, LogGrant, ReplayedLog } from './raft-log.ts';
import type { RegisterDecision, RegisterMode } from './register.ts';

/**
 * Checks of the history against independent ground truth: the cluster's committed log
 * (raft-log.ts) and the register's own record of what it accepted (register.ts). Each
 * check is a promise made to users, stated in the log's terms:
 *
 * - The nodes' committed logs agree, and replaying the log reproduces every answer a
 *   client was told (log-answers.ts): an acknowledged grant is the log's grant of that
 *   token to that request, and so on for each call. An unanswered call is resolved there
 *   by its request id.
 * - No grant of the log is live, in real time, while another session's client believes
 *   it holds the lock. This is how an unanswered ('info') acquire is resolved: if the log
 *   granted it, it held the lock, whether or not its client ever learned so.
 * - A resource that honours fencing tokens accepts writes in the log's grant order.
 *
 * Real time and log indexes meet through the ops whose entries the log holds: an entry
 * created for a request is committed after the request was invoked, and an entry is
 * committed before the answer of any request whose entry is at or after it. So each
 * index gets a window [earliest, latest] of real time in which it was committed, and a
 * grant is certainly live from the latest commit time of its entry to the earliest
 * commit time of the entry that ended it.
 */

/** Real-time bounds on when each log index was committed, from the history. */
export class CommitClock {
  /** (index, invokeMs): every index at or after `index` was committed after invokeMs. */
  private readonly after: { index: number; ms: number }[] = [];
  /** (index, completeMs): every index at or before `index` was committed before completeMs. */
  private readonly before: { index: number; ms: number }[] = [];
  /** After sorting by index: the running max of `after` and the running min of `before` from the end. */
  private afterMaxMs: number[] | null = null;
  private beforeMinMs: number[] | null = null;

  invokedBefore(index: number, invokeMs: number): void {
    this.after.push({ index, ms: invokeMs });
    this.afterMaxMs = null;
  }

  answeredAfter(index: number, completeMs: number): void {
    this.before.push({ index, ms: completeMs });
    this.beforeMinMs = null;
  }

  /** The earliest real time `index` can have been committed (−∞ when nothing says). */
  earliestMs(index: number): number {
    if (this.afterMaxMs === null) {
      this.after.sort((a, b) => a.index - b.index);
      let max = Number.NEGATIVE_INFINITY;
      this.afterMaxMs = this.after.map((point) => {
        max = Math.max(max, point.ms);
        return max;
      });
    }
    // The last point at or before `index`.
    const position = countAtOrBefore(this.after, index) - 1;
    return position < 0 ? Number.NEGATIVE_INFINITY : (this.afterMaxMs[position] as number);
  }

  /** The latest real time by which `index` was committed (+∞ when nothing says). */
  latestMs(index: number): number {
    if (this.beforeMinMs === null) {
      this.before.sort((a, b) => a.index - b.index);
      const mins: number[] = new Array(this.before.length);
      let min = Number.POSITIVE_INFINITY;
      for (let i = this.before.length - 1; i >= 0; i--) {
        min = Math.min(min, (this.before[i] as { ms: number }).ms);
        mins[i] = min;
      }
      this.beforeMinMs = mins;
    }
    // The first point at or after `index`.
    const position = countAtOrBefore(this.before, index - 1);
    return position >= this.before.length
      ? Number.POSITIVE_INFINITY
      : (this.beforeMinMs[position] as number);
  }
}

/** How many points (sorted by index) have an index at or before `index`. */
function countAtOrBefore(points: readonly { index: number }[], index: number): number {
  let low = 0;
  let high = points.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((points[middle] as { index: number }).index <= index) low = middle + 1;
    else high = middle;
  }
  return low;
}

export interface LogCheckStats {
  /** Per kind of call: its `ok` answers, and how many the replay reproduced. */
  readonly answers: Readonly<Record<ReplayedKind, AnswerStats>>;
  /** Per kind of call: its `info` answers, resolved by the log. */
  readonly info: Readonly<Record<ReplayedKind, InfoStats>>;
  /**
   * Grants in the log (a set's once per lock), and of them how many no acknowledged
   * acquire or acquire-all stands for.
   */
  readonly grants: number;
  readonly grantsUnacknowledged: number;
  readonly committedIndex: number;
  readonly startIndex: number;
  readonly agreement: LogAgreement;
  /**
   * What each directory read held, `id first..last (commit c)`: the nodes' and the copies
   * kept of wiped ones (log-archive.ts), so a report shows what the replay stood on.
   */
  readonly logs: readonly string[];
}

export interface LogCheckResult {
  readonly violations: Violation[];
  readonly stats: LogCheckStats;
}

function grantsByLockToken(log: ReplayedLog): Map<string, LogGrant> {
  const byKey = new Map<string, LogGrant>();
  for (const grant of log.grants) byKey.set(`${grant.lock}/${grant.token}`, grant);
  return byKey;
}

/** Indexes the history's ops against the log, giving each index its commit-time bounds. */
function commitClockOf(
  ops: readonly Op[],
  log: ReplayedLog,
  byToken: ReadonlyMap<string, LogGrant>,
): CommitClock {
  const clock = new CommitClock();
  for (const op of ops) {
    const first = firstEntryOf(op, log);
    if (first === null) continue;
    clock.invokedBefore(first, op.invokeMs);
    if (op.completeMs === null || op.outcome === 'info') continue;
    // An acknowledged grant's answer follows the commit of its granting entry (as the log
    // has it: a token the log does not confirm is check (a)'s business, not a fact here);
    // any other answer follows the commit of the first entry that carried its request.
    // A set's grant is one per lock at one index: its first lock's stands for it.
    const grant = GRANT_KINDS.has(op.kind) ? byToken.get(`${op.lock}/${op.token}`) : undefined;
    const confirmed =
      op.outcome === 'ok' &&
      grant !== undefined &&
      grant.sessionId === op.session &&
      grant.requestId === op.requestId;
    clock.answeredAfter(confirmed ? grant.index : first, op.completeMs);
  }
  return clock;
}

/** The first log entry that carried this op's request, or null if none did. */
function firstEntryOf(op: Op, log: ReplayedLog): number | null {
  return entriesOf(op, log)[0] ?? null;
}

/** Every check of the history against the committed log. */
export function checkAgainstLog(
  ops: readonly Op[],
  log: ReplayedLog,
  endOfRunMs: number,
): LogCheckResult {
  const violations: Violation[] = log.problems.map((problem) => ({
    check: 'log',
    message: problem,
    ops: [],
  }));
  const answers = checkAnswers(ops, log);
  violations.push(...answers.violations);
  violations.push(...checkLogExclusion(log));
  const clock = commitClockOf(ops, log, grantsByLockToken(log));
  violations.push(...checkGrantedWhileHeld(ops, log, clock, endOfRunMs));
  const acknowledgedOwners = new Set(
    ops.filter((op) => GRANT_KINDS.has(op.kind) && op.outcome === 'ok').map((op) => op.owner),
  );
  return {
    violations,
    stats: {
      answers: answers.answers,
      info: answers.info,
      grants: log.grants.length,
      grantsUnacknowledged: log.grants.filter((grant) => !acknowledgedOwners.has(grant.owner))
        .length,
      committedIndex: log.commitIndex,
      startIndex: log.startIndex,
      agreement: log.agreement,
      logs: log.nodes.map(
        (node) => `${node.id} ${node.firstIndex}..${node.lastIndex} (commit ${node.commitIndex})`,
      ),
    },
  };
}

/**
 * The log itself: no two grants of an exclusive lock overlap in log order, and a grant's
 * token is the index of the entry that made it.
 */
function checkLogExclusion(log: ReplayedLog): Violation[] {
  const violations: Violation[] = [];
  const byLock = new Map<string, LogGrant[]>();
  for (const grant of log.grants) {
    if (grant.source === 'log' && grant.token !== String(grant.index)) {
      violations.push({
        check: 'log',
        message: `the grant of ${grant.lock} at index ${grant.index} carries token ${grant.token}`,
        ops: [],
      });
    }
    const list = byLock.get(grant.lock) ?? [];
    list.push(grant);
    byLock.set(grant.lock, list);
  }
  for (const [lock, grants] of byLock) {
    grants.sort((a, b) => a.index - b.index);
    for (let i = 1; i < grants.length; i++) {
      const previous = grants[i - 1] as LogGrant;
      const grant = grants[i] as LogGrant;
      const exclusive = previous.mode === 'exclusive' || grant.mode === 'exclusive';
      const previousEnd = previous.endIndex ?? Number.POSITIVE_INFINITY;
      if (exclusive && grant.index < previousEnd) {
        violations.push({
          check: 'log',
          message: `${lock}: the log granted it at ${grant.index} to session ${grant.sessionId} while the grant at ${previous.index} to session ${previous.sessionId} was live (ended at ${previous.endIndex ?? 'never'})`,
          ops: [],
        });
      }
    }
  }
  return violations;
}

/**
 * (b) No grant of the log is certainly live while another session's client believes it
 * holds the same lock: from the acknowledgement of its acquire to the invocation of its
 * release or its session's signal. The grant may be one nobody was told of: an
 * unanswered acquire that the log granted counts as granted.
 */
function checkGrantedWhileHeld(
  ops: readonly Op[],
  log: ReplayedLog,
  clock: CommitClock,
  endOfRunMs: number,
): Violation[] {
  const violations: Violation[] = [];
  const opByOwner = new Map<string, Op>();
  for (const op of ops)
    if (GRANT_KINDS.has(op.kind) && op.owner !== undefined) opByOwner.set(op.owner, op);
  const beliefs = [
    ...holdsOf(ops, endOfRunMs).filter((hold) => hold.endMs > hold.startMs),
    ...leaderHolds(ops, endOfRunMs),
  ];
  for (const grant of log.grants) {
    if (grant.mode !== 'exclusive') continue;
    const liveFromMs = clock.latestMs(grant.index);
    const liveToMs = grant.endIndex === null ? endOfRunMs : clock.earliestMs(grant.endIndex);
    if (!(liveFromMs < liveToMs)) continue;
    for (const belief of beliefs) {
      if (belief.lock !== grant.lock || belief.acquire.session === grant.sessionId) continue;
      if (!(belief.startMs < liveToMs && liveFromMs < belief.endMs)) continue;
      const grantOp = opByOwner.get(grant.owner);
      violations.push({
        check: 'granted-while-held',
        message: `${grant.lock}: the log's grant at index ${grant.index} to session ${grant.sessionId} (${grantOp === undefined ? `owner ${grant.owner}` : describeOp(grantOp)}) was live during [${liveFromMs.toFixed(1)}, ${liveToMs.toFixed(1)}) ms, while ${belief.client} believed it held token ${belief.acquire.token} during [${belief.startMs.toFixed(1)}, ${belief.endMs.toFixed(1)})`,
        ops: grantOp === undefined ? [belief.acquire.id] : [grantOp.id, belief.acquire.id],
      });
    }
  }
  return violations;
}

/** Each believed term of leadership, as a hold of its election (an exclusive grant in the log). */
function leaderHolds(ops: readonly Op[], endOfRunMs: number): Hold[] {
  return beliefsOf(ops, 'campaign', 'resign', endOfRunMs).map((belief) => ({
    client: belief.acquire.client,
    lock: belief.name,
    acquire: belief.acquire,
    release: belief.end,
    startMs: belief.startMs,
    endMs: belief.endMs,
  }));
}

export interface RegisterCheckStats {
  readonly mode: RegisterMode;
  readonly accepted: number;
  readonly refused: number;
  /** Accepted writes under a grant older than one whose write it had already accepted. */
  readonly staleAccepted: number;
  /** Writes whose client got no answer, resolved by the register's record. */
  readonly infoLanded: number;
  readonly infoLost: number;
}

/**
 * (c) The register's record against the log: in the order the register decided, every
 * accepted write carries a token the log granted to the writer's session on that lock,
 * and its grant is not older, in log order, than a grant whose write it already
 * accepted (that write would be lost under a stale one). A refusal needs such a later
 * grant to explain it. And every answer a client got matches the record: an acknowledged
 * write is in it, accepted; a refused one is in it, refused.
 */
export function checkRegister(
  ops: readonly Op[],
  decisions: readonly RegisterDecision[],
  log: ReplayedLog,
  mode: RegisterMode,
): { violations: Violation[]; stats: RegisterCheckStats } {
  const violations: Violation[] = [];
  const byToken = grantsByLockToken(log);
  const writes = new Map<string, Op>();
  for (const op of ops)
    if (op.kind === 'write' && op.register === mode) writes.set(String(op.id), op);
  // The grant's index; for a grant before the replay's start (a snapshot covers it) its
  // token, which is the index of the entry that made the grant.
  const latestAccepted = new Map<
    string,
    { index: number; sessionId: string | null; decision: RegisterDecision }
  >();
  let staleAccepted = 0;
  const sorted = [...decisions].sort((a, b) => a.seq - b.seq);
  for (const decision of sorted) {
    const op = writes.get(decision.writeId);
    const opIds = op === undefined ? [] : [op.id];
    const grant = byToken.get(`${decision.lock}/${decision.token}`);
    const latest = latestAccepted.get(decision.lock);
    const what = `register (${mode}) write #${decision.seq} of ${decision.lock} token ${decision.token} by ${decision.client} (session ${decision.session})`;
    if (!decision.accepted) {
      const explained =
        latest !== undefined && latest.index > (grant?.index ?? Number(decision.token));
      if (!explained) {
        violations.push({
          check: 'register-refusal',
          message: `${what} was refused, but it had accepted no write under a later grant`,
          ops: opIds,
        });
      }
      continue;
    }
    if (grant === undefined) {
      if (Number(decision.token) <= log.startIndex) {
        // Before the replay's snapshot: unchecked, but later refusals are explained by it.
        const index = Number(decision.token);
        if (latest === undefined || index > latest.index)
          latestAccepted.set(decision.lock, { index, sessionId: null, decision });
        continue;
      }
      violations.push({
        check: 'register-token',
        message: `${what} was accepted, but the log never granted ${decision.lock} with that token`,
        ops: opIds,
      });
      continue;
    }
    if (grant.sessionId !== decision.session) {
      violations.push({
        check: 'register-token',
        message: `${what} was accepted, but the log granted that token to session ${grant.sessionId}`,
        ops: opIds,
      });
    }
    if (latest !== undefined && grant.index < latest.index) {
      staleAccepted++;
      const latestOp = writes.get(latest.decision.writeId);
      violations.push({
        check: 'register-stale-write',
        message: `${what} was accepted after write #${latest.decision.seq} under the later grant at index ${latest.index} (session ${latest.sessionId ?? latest.decision.session}): a stale holder's write over a newer holder's, a lost update`,
        ops: latestOp === undefined ? opIds : [latestOp.id, ...opIds],
      });
      continue;
    }
    latestAccepted.set(decision.lock, { index: grant.index, sessionId: grant.sessionId, decision });
  }
  const answers = checkRegisterAnswers(writes, sorted, mode, violations);
  return {
    violations,
    stats: {
      mode,
      accepted: sorted.filter((decision) => decision.accepted).length,
      refused: sorted.filter((decision) => !decision.accepted).length,
      staleAccepted,
      ...answers,
    },
  };
}

/** The clients' answers against the register's record (no acknowledged write lost). */
function checkRegisterAnswers(
  writes: ReadonlyMap<string, Op>,
  decisions: readonly RegisterDecision[],
  mode: RegisterMode,
  violations: Violation[],
): { infoLanded: number; infoLost: number } {
  const byWrite = new Map(decisions.map((decision) => [decision.writeId, decision]));
  let infoLanded = 0;
  let infoLost = 0;
  for (const [writeId, op] of writes) {
    const decision = byWrite.get(writeId);
    if (op.outcome === 'info') {
      if (decision === undefined) infoLost++;
      else infoLanded++;
      continue;
    }
    const told = op.outcome === 'ok';
    if (decision === undefined || decision.accepted !== told) {
      violations.push({
        check: 'register-answer',
        message: `${describeOp(op)} was told ${told ? 'accepted' : 'refused'}, but the register (${mode}) record ${decision === undefined ? 'has no such write' : `says ${decision.accepted ? 'accepted' : 'refused'}`}`,
        ops: [op.id],
      });
    }
  }
  for (const decision of decisions) {
    if (writes.has(decision.writeId)) continue;
    violations.push({
      check: 'register-answer',
      message: `register (${mode}) recorded write ${decision.writeId} (#${decision.seq}), which no client made`,
      ops: [],
    });
  }
  return { infoLanded, infoLost };
}
