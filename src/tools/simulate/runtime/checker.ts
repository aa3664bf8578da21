import {
  type ApplyOutput,
  type LockCommand,
  type LockLimits,
  type LockMode,
  LockStateMachine,
} from '../../../lock/index.ts';
import { decodeEntry } from '../../../node/entry-codec.ts';
import type { Entry } from '../../../raft/types.ts';
import { logIndex, type SessionId } from '../../../util/ids.ts';
import { SafetyViolation } from '../checker.ts';

/**
 * Checks what simulated clients were told against the checker's own ground truth: the
 * committed log as the disks report it (see SimDisk), decoded and replayed through a
 * reference LockStateMachine of its own. Nothing the node runtime or the API computed
 * is trusted: an answer is right only if the reference says so.
 *
 * Answers are checked once the reference has applied the index they name, since an
 * answer can reach a client before any disk reports its entry committed.
 */
export type Told =
  | { readonly kind: 'OpenSession'; readonly requestId: string; readonly sessionId: number }
  | { readonly kind: 'KeepAlive'; readonly sessionId: number }
  | { readonly kind: 'CloseSession'; readonly sessionId: number; readonly requestId: string }
  | {
      readonly kind: 'Acquire';
      readonly sessionId: number;
      readonly requestId: string;
      readonly lock: string;
      /** What the client asked for, and so believes it holds when told it acquired. */
      readonly mode: LockMode;
      readonly acquired: boolean;
      readonly token: number;
    }
  | {
      readonly kind: 'AcquireAll';
      readonly sessionId: number;
      readonly requestId: string;
      /** What the client asked for: each lock in its mode, all held when told acquired. */
      readonly locks: readonly { readonly lock: string; readonly mode: LockMode }[];
      readonly acquired: boolean;
      readonly token: number;
    }
  | {
      readonly kind: 'AcquirePermits';
      readonly sessionId: number;
      readonly requestId: string;
      readonly lock: string;
      readonly permits: number;
      readonly limit: number;
      readonly acquired: boolean;
      readonly token: number;
    }
  | {
      readonly kind: 'Campaign';
      readonly sessionId: number;
      readonly requestId: string;
      readonly lock: string;
      readonly value: string;
      /** Elected. */
      readonly acquired: boolean;
      readonly token: number;
    }
  | {
      readonly kind: 'Proclaim';
      readonly sessionId: number;
      readonly requestId: string;
      readonly lock: string;
      readonly token: number;
      readonly value: string;
      /** The leader the answer names. */
      readonly leader: ToldLeader | null;
    }
  | {
      readonly kind: 'Leader';
      readonly lock: string;
      readonly leader: ToldLeader | null;
      readonly ackedBeforeIndex: number;
    }
  | {
      readonly kind: 'Release';
      readonly sessionId: number;
      readonly requestId: string;
      readonly lock: string;
      readonly token: number;
    }
  | {
      readonly kind: 'Describe';
      readonly lock: string;
      readonly holders: readonly { readonly sessionId: number; readonly token: number }[];
      /** The highest index of a write acknowledged to anyone before the read began. */
      readonly ackedBeforeIndex: number;
    }
  | {
      readonly kind: 'ValidateFence';
      readonly lock: string;
      readonly token: number;
      readonly valid: boolean;
      readonly currentToken: number;
      readonly ackedBeforeIndex: number;
    };

/** A leader as an answer names it. */
export interface ToldLeader {
  readonly sessionId: number;
  readonly token: number;
  readonly value: string;
}

export interface Answer {
  readonly client: string;
  readonly node: string;
  readonly atMs: number;
  /** The index the answer's header names. */
  readonly index: number;
  readonly told: Told;
}

interface CommittedEntry {
  readonly term: number;
  readonly kind: Entry['kind'];
  readonly proposalId: string | null;
  readonly command: LockCommand | null;
  /** What the reference computed, once it applied the entry. */
  output: ApplyOutput | null;
  /**
   * The reference's rules in force right after the entry (JSON), once it applied it;
   * null while none were set through the log (each node then applies its own file's).
   */
  rules: string | null;
}

/** A span of log indexes [from, to) over which a session held or waited for a lock. */
interface Tenure {
  readonly sessionId: number;
  readonly kind: 'hold' | 'wait';
  readonly token: number;
  readonly mode: LockMode;
  readonly requestIndex: number;
  readonly from: number;
  to: number;
  /** A semaphore grant's permits (0 for a lock or an election). */
  readonly permits: number;
  /** An election leader's values, each from the index that set it (campaign, proclaims). */
  readonly values: { readonly from: number; readonly value: string }[];
  /**
   * A hold's requests told of it: the one it was granted for, then each later request of
   * the session answered with it (a re-acquire). Any of their callers may hold it.
   */
  readonly told: string[];
}

interface Belief {
  readonly client: string;
  readonly sessionId: number;
  readonly lock: string;
  readonly token: number;
  readonly mode: LockMode;
  /** Semaphore permits believed held (0 for a lock or an election). */
  readonly permits: number;
  readonly fromMs: number;
  toMs: number;
}

export interface CheckerStats {
  committedEntries: number;
  answersChecked: number;
  beliefs: number;
  proposalIdsReused: number;
}

const OPEN = Number.POSITIVE_INFINITY;

/** What a node applied at one index, waiting for the reference to get there. */
interface NodeOutput {
  readonly node: string;
  readonly output: string;
  readonly rules: string;
}

export class RuntimeChecker {
  private readonly log = new Map<number, CommittedEntry>();
  private readonly reference: LockStateMachine;
  private referenceIndex: number;
  private readonly tenures = new Map<string, Tenure[]>();
  private readonly pending: Answer[] = [];
  /** What nodes applied at indexes the reference has not reached yet, by index. */
  private readonly nodeOutputs = new Map<number, NodeOutput[]>();
  /** The rules set through the log, as JSON (see CommittedEntry.rules); recomputed only when a SetRules applies. */
  private referenceRulesJson: string | null = null;
  private readonly beliefs = new Map<string, Belief[]>();
  private readonly safeUntilMs = new Map<string, number>();
  private readonly proposalIds = new Map<string, number>();
  /** The index at which each Proclaim (`${sessionId}/${requestId}`) first applied. */
  private readonly proclaimedAt = new Map<string, number>();
  /** Releases clients sent, by `${sessionId}/${requestId}`. */
  private readonly releasesSent = new Set<string>();
  /** Grants freed by a Release no client sent, by `${lock}/${sessionId}/${token}`: the index. */
  private readonly freedByApi = new Map<string, number>();
  /** The highest index any client was told a write applied at. */
  maxAckedIndex = 0;
  readonly stats: CheckerStats = {
    committedEntries: 0,
    answersChecked: 0,
    beliefs: 0,
    proposalIdsReused: 0,
  };
  /** Notes for the trace of a failure. */
  readonly notes: string[] = [];
  /**
   * The first violation. Checks also run inside clients' async code, where a throw would
   * only reject a promise nobody awaits, so the runner stops on this field.
   */
  violation: string | null = null;
  /** Sees every entry the reference applies, for a verbose replay of one seed. */
  onApplied: ((index: number, entry: string) => void) | null = null;

  constructor(
    startIndex: number,
    /** Virtual time, to tell which beliefs are live when an entry commits. */
    private readonly nowMs: () => number,
  ) {
    // Each node starts from its own file's rules, the reference from the defaults: they
    // agree because no entry but a SetRules applies before the first SetRules (a leader
    // holds every other write back until then), which applyReference checks.
    this.reference = new LockStateMachine();
    this.reference.skipTo(logIndex(startIndex));
    this.referenceIndex = startIndex;
  }

  get appliedIndex(): number {
    return this.referenceIndex;
  }

  // ------------------------------------------------------------ ground truth

  /** A disk reports entries committed on it; every report of an index must agree. */
  committed(node: string, entries: readonly Entry[]): void {
    for (const entry of entries) {
      const known = this.log.get(entry.index);
      const decoded = entry.kind === 'normal' ? decodeEntry(entry.data) : null;
      if (known !== undefined) {
        const same =
          known.term === entry.term &&
          known.kind === entry.kind &&
          JSON.stringify(known.command) === JSON.stringify(decoded?.command ?? null);
        if (!same) {
          this.fail(
            `State machine safety: ${node} committed ${entry.index}:${entry.term} but ${known.term} was committed there before`,
          );
        }
        continue;
      }
      if (entry.index <= this.referenceIndex) continue;
      this.log.set(entry.index, {
        term: entry.term,
        kind: entry.kind,
        proposalId: decoded?.proposalId ?? null,
        command: decoded?.command ?? null,
        output: null,
        rules: null,
      });
    }
    this.advance();
  }

  private advance(): void {
    for (;;) {
      const index = this.referenceIndex + 1;
      const entry = this.log.get(index);
      if (entry === undefined) break;
      this.applyReference(index, entry);
    }
    this.checkPending();
  }

  private applyReference(index: number, entry: CommittedEntry): void {
    this.referenceIndex = index;
    this.stats.committedEntries++;
    if (entry.command === null) {
      this.reference.skipTo(logIndex(index));
      return;
    }
    if (entry.proposalId !== null) {
      const earlier = this.proposalIds.get(entry.proposalId);
      if (earlier !== undefined) {
        this.stats.proposalIdsReused++;
        this.note(`proposal id ${entry.proposalId} at ${index} was used at ${earlier} before`);
      }
      this.proposalIds.set(entry.proposalId, index);
    }
    if (this.reference.rulesSetIndex === null && entry.command.type !== 'SetRules') {
      this.fail(
        `Rules: ${describeCommand(entry.command)} committed at ${index} before any SetRules: each node would apply it under its own file's rules`,
      );
    }
    const output = this.reference.apply(logIndex(index), entry.command, entry.proposalId);
    this.reference.checkInvariants();
    entry.output = output;
    if (output.result.type === 'RulesSet')
      this.referenceRulesJson = JSON.stringify(this.reference.rules);
    entry.rules = this.referenceRulesJson;
    for (const applied of this.nodeOutputs.get(index) ?? [])
      this.compareOutput(index, applied, entry);
    this.nodeOutputs.delete(index);
    if (entry.command.type === 'Release' && output.result.type === 'Released') {
      this.checkReleaser(index, entry.command);
    }
    this.onApplied?.(
      index,
      `${describeCommand(entry.command)} [${entry.proposalId}] -> ${JSON.stringify(output.result)}`,
    );
    this.trackTenures(index, output);
    this.trackRetold(entry.command, output);
    if (
      entry.command.type === 'Proclaim' &&
      output.events.some((event) => event.type === 'proclaimed')
    ) {
      this.proclaimedAt.set(`${entry.command.sessionId}/${entry.command.requestId}`, index);
    }
  }

  private trackTenures(index: number, output: ApplyOutput): void {
    for (const event of output.events) {
      switch (event.type) {
        case 'granted': {
          const { holder } = event;
          this.endTenure(event.lock, holder.sessionId, 'wait', index);
          this.tenuresOf(event.lock).push({
            sessionId: holder.sessionId,
            kind: 'hold',
            token: holder.token,
            mode: holder.mode,
            requestIndex: holder.requestIndex,
            from: index,
            to: OPEN,
            permits: holder.permits ?? 0,
            values: holder.value === undefined ? [] : [{ from: index, value: holder.value }],
            told: [event.requestId],
          });
          break;
        }
        case 'proclaimed': {
          const tenure = this.tenureAt(event.lock, event.sessionId, 'hold', index);
          tenure?.values.push({ from: index, value: event.value });
          break;
        }
        case 'queued':
          this.tenuresOf(event.lock).push({
            sessionId: event.waiter.sessionId,
            kind: 'wait',
            token: 0,
            mode: event.waiter.mode,
            requestIndex: event.waiter.requestIndex,
            from: index,
            to: OPEN,
            permits: event.waiter.permits ?? 0,
            values: [],
            told: [],
          });
          break;
        case 'released':
          this.endTenure(event.lock, event.sessionId, 'hold', index);
          break;
        case 'waitEnded':
          if (event.reason !== 'granted')
            this.endTenure(event.lock, event.sessionId, 'wait', index);
          break;
        default:
          break;
      }
    }
  }

  /**
   * A request answered with a grant its session already had (no `granted` event for
   * it) was told of that grant: its caller may hold it as much as the first one's.
   */
  private trackRetold(command: LockCommand, output: ApplyOutput): void {
    const { result } = output;
    const locks =
      result.type === 'Acquired'
        ? [result.lock]
        : result.type === 'AcquiredAll'
          ? result.locks.map((each) => each.lock)
          : [];
    if (locks.length === 0 || !('sessionId' in command) || !('requestId' in command)) return;
    const { sessionId, requestId } = command;
    for (const lock of locks) {
      const granted = output.events.some(
        (event) =>
          event.type === 'granted' && event.lock === lock && event.holder.sessionId === sessionId,
      );
      if (granted) continue;
      const hold = this.tenureAt(lock, sessionId, 'hold', this.referenceIndex);
      if (hold !== undefined && !hold.told.includes(requestId)) hold.told.push(requestId);
    }
  }

  private tenuresOf(lock: string): Tenure[] {
    let list = this.tenures.get(lock);
    if (list === undefined) {
      list = [];
      this.tenures.set(lock, list);
    }
    return list;
  }

  private endTenure(lock: string, sessionId: number, kind: Tenure['kind'], index: number): void {
    for (const tenure of this.tenuresOf(lock)) {
      if (tenure.sessionId === sessionId && tenure.kind === kind && tenure.to === OPEN) {
        tenure.to = index;
      }
    }
  }

  /** The tenure of `kind` that `session` had on `lock` right after the entry at `index`. */
  private tenureAt(
    lock: string,
    sessionId: number,
    kind: Tenure['kind'],
    index: number,
  ): Tenure | undefined {
    return this.tenuresOf(lock).find(
      (tenure) =>
        tenure.sessionId === sessionId &&
        tenure.kind === kind &&
        tenure.from <= index &&
        index < tenure.to,
    );
  }

  private holdersAt(lock: string, index: number): Tenure[] {
    return this.tenuresOf(lock).filter(
      (tenure) => tenure.kind === 'hold' && tenure.from <= index && index < tenure.to,
    );
  }

  /**
   * A grant a client was told it holds may end only by that client's own release, its
   * session's end, or a timer. A release the client never sent (the API's cleanup of
   * an abandoned Acquire) must not take away a grant some client was told it holds.
   */
  private checkReleaser(index: number, release: Extract<LockCommand, { type: 'Release' }>): void {
    if (this.releasesSent.has(`${release.sessionId}/${release.requestId}`)) return;
    this.freedByApi.set(`${release.lock}/${release.sessionId}/${release.token}`, index);
    const now = this.nowMs();
    for (const belief of this.beliefs.get(release.lock) ?? []) {
      if (belief.sessionId !== release.sessionId || belief.token !== release.token) continue;
      const endMs = Math.min(belief.toMs, this.safeUntilMs.get(belief.client) ?? OPEN);
      if (belief.fromMs <= now && now < endMs) {
        this.fail(
          `Give-back: the Release at ${index} (session ${release.sessionId}, request ${release.requestId}, not sent by a client) freed ${release.lock} token ${release.token}, which ${belief.client} was told at ${belief.fromMs} ms it holds`,
        );
      }
    }
  }

  /** A client is about to send a Release: releases it did not send are the API's own. */
  releaseSent(sessionId: number, requestId: string): void {
    this.releasesSent.add(`${sessionId}/${requestId}`);
  }

  /**
   * A node applied the entry at `index`: its result and events (what it answers and
   * what changed) must be the reference's, and so must the rules in force after it
   * (which judge the entries that follow) once any were set, whatever its own config says.
   */
  nodeApplied(node: string, index: number, output: ApplyOutput, rules: LockLimits): void {
    const applied: NodeOutput = {
      node,
      output: JSON.stringify(output),
      rules: JSON.stringify(rules),
    };
    const entry = this.log.get(index);
    if (index <= this.referenceIndex && entry?.output != null) {
      this.compareOutput(index, applied, entry);
    } else if (index > this.referenceIndex) {
      const list = this.nodeOutputs.get(index) ?? [];
      list.push(applied);
      this.nodeOutputs.set(index, list);
    }
  }

  private compareOutput(index: number, applied: NodeOutput, entry: CommittedEntry): void {
    const reference = JSON.stringify(entry.output);
    if (applied.output !== reference) {
      this.fail(
        `State machine safety: ${applied.node} applied ${index} as ${applied.output.slice(0, 300)}, the reference replay of the committed log as ${reference.slice(0, 300)}`,
      );
    }
    if (entry.rules !== null && applied.rules !== entry.rules) {
      this.fail(
        `Rules: after ${index} ${applied.node} has the lock rules ${applied.rules}, the reference replay of the committed log ${entry.rules}`,
      );
    }
  }

  // ------------------------------------------------------------ answers

  /** A client was told something; checked now or once the reference reaches its index. */
  told(answer: Answer): void {
    const { told } = answer;
    const isWrite = told.kind !== 'Describe' && told.kind !== 'ValidateFence';
    if (isWrite && answer.index > this.maxAckedIndex) this.maxAckedIndex = answer.index;
    this.pending.push(answer);
    this.checkPending();
  }

  private checkPending(): void {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const answer = this.pending[i];
      if (answer === undefined || answer.index > this.referenceIndex) continue;
      this.pending.splice(i, 1);
      this.stats.answersChecked++;
      const problem = this.problemWith(answer);
      if (problem !== null) {
        this.fail(
          `Answer: ${answer.client} was told by ${answer.node} at ${answer.atMs} ms ${JSON.stringify(answer.told)} at index ${answer.index}, but ${problem}`,
        );
      }
    }
  }

  /** Answers still waiting for their index, which must be none once the cluster is quiet. */
  get unverifiedAnswers(): readonly Answer[] {
    return this.pending;
  }

  private problemWith(answer: Answer): string | null {
    const { told, index } = answer;
    const entry = this.log.get(index);
    if (entry === undefined && index > 1) return `index ${index} was never seen committed`;
    const command = entry?.command ?? null;
    const result = entry?.output?.result ?? null;
    const what = `the entry there is ${describeCommand(command)} [proposal ${entry?.proposalId ?? 'none'}] with result ${JSON.stringify(result)}`;
    switch (told.kind) {
      case 'OpenSession':
        if (command?.type !== 'OpenSession' || command.requestId !== told.requestId) return what;
        if (result?.type !== 'SessionOpened' || result.sessionId !== told.sessionId) return what;
        return null;
      case 'KeepAlive':
        if (command?.type !== 'KeepAlive' || !command.sessionIds.includes(sid(told.sessionId)))
          return what;
        if (result?.type !== 'KeptAlive' || !result.refreshed.includes(sid(told.sessionId)))
          return what;
        return null;
      case 'CloseSession':
        if (!this.sameRequest(command, 'CloseSession', told.sessionId, told.requestId)) return what;
        return result?.type === 'SessionClosed' ? null : what;
      case 'Release':
        if (!this.sameRequest(command, 'Release', told.sessionId, told.requestId)) return what;
        return result?.type === 'Released' ? null : what;
      case 'Acquire':
        return this.acquireProblem(told, index, command, result, what);
      case 'AcquireAll':
        return this.acquireAllProblem(told, index, command, result, what);
      case 'AcquirePermits':
      case 'Campaign':
        return this.kindAcquireProblem(told, index, command, result, what);
      case 'Proclaim':
        return this.proclaimProblem(told, command, result, what);
      case 'Leader': {
        if (index < told.ackedBeforeIndex)
          return `the read is stale: a write at ${told.ackedBeforeIndex} was acknowledged before it began`;
        const leaders = this.holdersAt(told.lock, index);
        const expected = leaders.map((tenure) => describeLeader(tenure, index)).join(', ');
        const actual = told.leader === null ? '' : describeToldLeader(told.leader);
        if (leaders.length > 1) return `${told.lock} had leaders ${expected} at ${index}`;
        if (expected !== actual) return `the leader at ${index} was ${expected || 'none'}`;
        return null;
      }
      case 'Describe': {
        if (index < told.ackedBeforeIndex)
          return `the read is stale: a write at ${told.ackedBeforeIndex} was acknowledged before it began`;
        const expected = this.holdersAt(told.lock, index)
          .map((tenure) => `${tenure.sessionId}:${tenure.token}`)
          .sort();
        const actual = told.holders.map((holder) => `${holder.sessionId}:${holder.token}`).sort();
        if (expected.join(',') !== actual.join(','))
          return `the holders at ${index} were [${expected.join(', ')}]`;
        return null;
      }
      case 'ValidateFence': {
        if (index < told.ackedBeforeIndex)
          return `the read is stale: a write at ${told.ackedBeforeIndex} was acknowledged before it began`;
        const holders = this.holdersAt(told.lock, index);
        const valid = holders.some((tenure) => tenure.token === told.token);
        const current = Math.max(0, ...holders.map((tenure) => tenure.token));
        if (valid !== told.valid || current !== told.currentToken)
          return `at ${index} valid=${valid} and the current token was ${current}`;
        return null;
      }
    }
  }

  private acquireProblem(
    told: Extract<Told, { kind: 'Acquire' }>,
    index: number,
    command: LockCommand | null,
    result: ApplyOutput['result'] | null,
    what: string,
  ): string | null {
    // An exclusive request answered with a shared grant leaves the client believing it
    // is alone while others share the lock. (A shared request answered with an exclusive
    // grant is harmless: the client holds more than it thinks.)
    if (told.acquired && told.mode === 'exclusive') {
      const grant = this.tenureAt(told.lock, told.sessionId, 'hold', index);
      if (grant !== undefined && grant.token === told.token && grant.mode === 'shared') {
        return `the session's grant there (token ${grant.token}) is ${grant.mode}, not the ${told.mode} it asked for`;
      }
    }
    const own = this.sameRequest(command, 'Acquire', told.sessionId, told.requestId);
    if (own) {
      // The Acquire's own entry answered it: the result must be that entry's result.
      if (told.acquired) {
        if (result?.type === 'Acquired' && result.token === told.token) return null;
      } else if (result?.type === 'NotAcquired') return null;
      // A queued Acquire can also be answered from the state at its own index.
      if (result?.type !== 'Queued') return what;
    }
    // A waiting Acquire is answered by the entry that ended its wait, or from the state
    // at the index it names: there the session held the lock through this request, or
    // no longer waited for it.
    if (told.acquired) {
      const hold = this.tenureAt(told.lock, told.sessionId, 'hold', index);
      if (hold === undefined) return `session ${told.sessionId} did not hold ${told.lock} there`;
      if (hold.token !== told.token) return `the grant there had token ${hold.token}`;
      // The grant may come from an earlier Acquire of the same session that still
      // waited: the state machine answers a second Acquire of a waiting session with
      // that same wait. Both are this client's; anyone else's would be wrong.
      // A set's grant of the lock is the session's too (a re-acquire is told of it).
      const request = this.log.get(hold.requestIndex)?.command ?? null;
      if (request === null || !requestNames(request, told.sessionId, told.lock))
        return `the grant there came from ${describeCommand(request)} at ${hold.requestIndex}`;
      return null;
    }
    if (this.tenureAt(told.lock, told.sessionId, 'hold', index) !== undefined)
      return `session ${told.sessionId} held ${told.lock} there`;
    if (this.tenureAt(told.lock, told.sessionId, 'wait', index) !== undefined)
      return `session ${told.sessionId} still waited for ${told.lock} there`;
    return null;
  }

  /**
   * A set is acquired whole at one index with one token, or not at all: told acquired,
   * the session must hold every lock of it there, in at least the mode asked, through
   * this request's grant; told not acquired, it must neither hold nor wait for any lock
   * through this request there.
   */
  private acquireAllProblem(
    told: Extract<Told, { kind: 'AcquireAll' }>,
    index: number,
    command: LockCommand | null,
    result: ApplyOutput['result'] | null,
    what: string,
  ): string | null {
    if (this.sameRequest(command, 'AcquireAll', told.sessionId, told.requestId)) {
      if (told.acquired && result?.type === 'AcquiredAll' && result.token !== told.token)
        return what;
      if (!told.acquired && result?.type === 'AcquiredAll') return what;
    }
    const names = told.locks.map((claim) => claim.lock);
    for (const { lock, mode } of told.locks) {
      const hold = this.tenureAt(lock, told.sessionId, 'hold', index);
      const holdIsThis = hold !== undefined && this.isRequest(hold.requestIndex, told);
      if (told.acquired) {
        if (hold === undefined) return `session ${told.sessionId} did not hold ${lock} there`;
        if (hold.token !== told.token) return `its grant of ${lock} there had token ${hold.token}`;
        // An earlier request of the session for the very same set may have made the grant
        // (it waited, and its caller gave up): the state machine tells a set request of
        // the set the session holds, as it tells an Acquire of the lock it holds.
        if (!holdIsThis && !this.isSameSet(hold.requestIndex, told.sessionId, names))
          return `its grant of ${lock} came from the entry at ${hold.requestIndex}, not this request or one for the same set`;
        if (mode === 'exclusive' && hold.mode === 'shared')
          return `its grant of ${lock} there is shared, not the exclusive it asked for`;
        continue;
      }
      if (holdIsThis) return `session ${told.sessionId} held ${lock} there through this request`;
      const wait = this.tenureAt(lock, told.sessionId, 'wait', index);
      if (wait !== undefined && this.isRequest(wait.requestIndex, told))
        return `session ${told.sessionId} still waited for ${lock} there through this request`;
    }
    return null;
  }

  /** Whether the entry at `index` is an AcquireAll of `sessionId` for exactly `names`. */
  private isSameSet(index: number, sessionId: number, names: readonly string[]): boolean {
    const command = this.log.get(index)?.command ?? null;
    if (command?.type !== 'AcquireAll' || command.sessionId !== sessionId) return false;
    const asked = command.locks.map((claim) => claim.lock).sort();
    const told = [...names].sort();
    return asked.length === told.length && asked.every((name, i) => name === told[i]);
  }

  /**
   * Permits or a candidacy, judged as an Acquire is: the request's own entry answered
   * it with its result, or the state at the index it names does. Told acquired, the
   * session held the name there with the told token through this request (or an earlier
   * request of its own for the same, which a retry or a second ask is told of) with the
   * permits asked; told not acquired, it neither held nor waited for it there.
   */
  private kindAcquireProblem(
    told: Extract<Told, { kind: 'AcquirePermits' | 'Campaign' }>,
    index: number,
    command: LockCommand | null,
    result: ApplyOutput['result'] | null,
    what: string,
  ): string | null {
    if (this.sameRequest(command, told.kind, told.sessionId, told.requestId)) {
      if (told.acquired) {
        if (result?.type === 'Acquired' && result.token !== told.token) return what;
        if (result?.type === 'NotAcquired') return what;
      } else if (result?.type === 'Acquired') return what;
      if (result?.type === 'Rejected') return what;
    }
    const hold = this.tenureAt(told.lock, told.sessionId, 'hold', index);
    if (told.acquired) {
      if (hold === undefined) return `session ${told.sessionId} did not hold ${told.lock} there`;
      if (hold.token !== told.token) return `the grant there had token ${hold.token}`;
      const request = this.log.get(hold.requestIndex)?.command ?? null;
      if (request?.type !== told.kind || request.sessionId !== told.sessionId)
        return `the grant there came from ${describeCommand(request)} at ${hold.requestIndex}`;
      if (told.kind === 'AcquirePermits' && hold.permits !== told.permits)
        return `the grant there holds ${hold.permits} permits, not the ${told.permits} asked`;
      return null;
    }
    if (hold !== undefined && this.isRequest(hold.requestIndex, told))
      return `session ${told.sessionId} held ${told.lock} there through this request`;
    const wait = this.tenureAt(told.lock, told.sessionId, 'wait', index);
    if (wait !== undefined && this.isRequest(wait.requestIndex, told))
      return `session ${told.sessionId} still waited for ${told.lock} there through this request`;
    return null;
  }

  /**
   * A Proclaim answered is the request's entry with result Proclaimed (the first, or a
   * retry given it back), naming the caller as the leader with its token and new value;
   * and where it first applied, the caller led the election with that token: a Proclaim
   * is accepted only from the current leader.
   */
  private proclaimProblem(
    told: Extract<Told, { kind: 'Proclaim' }>,
    command: LockCommand | null,
    result: ApplyOutput['result'] | null,
    what: string,
  ): string | null {
    if (!this.sameRequest(command, 'Proclaim', told.sessionId, told.requestId)) return what;
    if (result?.type !== 'Proclaimed' || result.token !== told.token) return what;
    if (result.value !== told.value) return what;
    const leader = told.leader;
    if (
      leader === null ||
      leader.sessionId !== told.sessionId ||
      leader.token !== told.token ||
      leader.value !== told.value
    )
      return `the answer names the leader ${leader === null ? 'none' : describeToldLeader(leader)}, not the caller with its token and value`;
    const first = this.proclaimedAt.get(`${told.sessionId}/${told.requestId}`);
    if (first === undefined) return 'the Proclaim never applied with a proclaimed event';
    const led = this.tenureAt(told.lock, told.sessionId, 'hold', first);
    if (led?.token !== told.token)
      return `Election: at ${first}, where the Proclaim applied, session ${told.sessionId} did not lead ${told.lock} with token ${told.token} (${led === undefined ? 'it did not lead' : `its term was ${led.token}`})`;
    return null;
  }

  /** Whether the entry at `index` carried the request (session and id) of `told`. */
  private isRequest(index: number, told: { sessionId: number; requestId: string }): boolean {
    const command = this.log.get(index)?.command ?? null;
    return (
      command !== null &&
      'requestId' in command &&
      'sessionId' in command &&
      command.sessionId === told.sessionId &&
      command.requestId === told.requestId
    );
  }

  private sameRequest(
    command: LockCommand | null,
    type:
      | 'Acquire'
      | 'AcquireAll'
      | 'AcquirePermits'
      | 'Campaign'
      | 'Proclaim'
      | 'Release'
      | 'CloseSession',
    sessionId: number,
    requestId: string,
  ): boolean {
    return (
      command !== null &&
      command.type === type &&
      command.sessionId === sessionId &&
      command.requestId === requestId
    );
  }

  // ------------------------------------------------------------ beliefs

  /**
   * The client now lasts no longer than `safeUntilMs` without hearing from the cluster:
   * it stops acting on its locks then (the client library's safe deadline).
   */
  safeUntil(client: string, safeUntilMs: number): void {
    this.safeUntilMs.set(client, safeUntilMs);
  }

  /**
   * A client was told it holds `lock` and acts on it from `atMs`. No other client may
   * believe it holds the lock in a conflicting mode at the same time, and its token must
   * exceed every token whose holder stopped acting on it before this belief began.
   */
  beliefStarted(
    client: string,
    sessionId: number,
    lock: string,
    token: number,
    mode: LockMode,
    atMs: number,
  ): void {
    this.stats.beliefs++;
    // The other order of checkReleaser: the grant was freed before the client heard of it.
    const freedAt = this.freedByApi.get(`${lock}/${sessionId}/${token}`);
    if (freedAt !== undefined) {
      this.fail(
        `Give-back: ${client} was told at ${atMs} ms it holds ${lock} token ${token}, which a Release no client sent freed at ${freedAt}`,
      );
    }
    const list = this.beliefs.get(lock) ?? [];
    this.beliefs.set(lock, list);
    for (const other of list) {
      if (other.client === client) continue;
      const endMs = Math.min(other.toMs, this.safeUntilMs.get(other.client) ?? OPEN);
      const conflicting = mode === 'exclusive' || other.mode === 'exclusive';
      if (conflicting && other.fromMs <= atMs && atMs < endMs) {
        this.fail(
          `Mutual exclusion: ${client} was told at ${atMs} ms it holds ${lock} (${mode}, token ${token}) while ${other.client} believes it holds it (${other.mode}, token ${other.token}) since ${other.fromMs} ms`,
        );
      }
      // Shared grants overlap: one may outlive a later one, so only a conflicting pair
      // must come in token order.
      if (conflicting && endMs <= atMs && other.token >= token) {
        this.fail(
          `Fencing: ${client} was told token ${token} for ${lock} at ${atMs} ms, not above token ${other.token} that ${other.client} stopped using at ${endMs} ms`,
        );
      }
    }
    // The client's own earlier beliefs of this lock are over: it has a new grant.
    for (const mine of list) if (mine.client === client) mine.toMs = Math.min(mine.toMs, atMs);
    list.push({ client, sessionId, lock, token, mode, permits: 0, fromMs: atMs, toMs: OPEN });
  }

  /**
   * A client was told it holds `permits` of the semaphore `lock` and acts on them from
   * `atMs`: with the permits the other clients believe they hold at that instant, they
   * must stay within the limit. (Tokens of permits held side by side come in no order.)
   */
  permitsBeliefStarted(
    client: string,
    sessionId: number,
    lock: string,
    token: number,
    permits: number,
    limit: number,
    atMs: number,
  ): void {
    this.stats.beliefs++;
    const freedAt = this.freedByApi.get(`${lock}/${sessionId}/${token}`);
    if (freedAt !== undefined) {
      this.fail(
        `Give-back: ${client} was told at ${atMs} ms it holds ${permits} permits of ${lock} token ${token}, which a Release no client sent freed at ${freedAt}`,
      );
    }
    const list = this.beliefs.get(lock) ?? [];
    this.beliefs.set(lock, list);
    for (const mine of list) if (mine.client === client) mine.toMs = Math.min(mine.toMs, atMs);
    const live = list.filter((other) => {
      const endMs = Math.min(other.toMs, this.safeUntilMs.get(other.client) ?? OPEN);
      return other.client !== client && other.fromMs <= atMs && atMs < endMs;
    });
    const held = live.reduce((sum, other) => sum + other.permits, 0);
    if (held + permits > limit) {
      const others = live.map((other) => `${other.client} ${other.permits} (token ${other.token})`);
      this.fail(
        `Semaphore: ${client} was told at ${atMs} ms it holds ${permits} permits of ${lock} (limit ${limit}, token ${token}) while others believe they hold ${held}: ${others.join(', ')}`,
      );
    }
    list.push({
      client,
      sessionId,
      lock,
      token,
      mode: 'shared',
      permits,
      fromMs: atMs,
      toMs: OPEN,
    });
  }

  /**
   * A client was told it leads the election `lock` from `atMs`: no other client may
   * believe it leads at that instant, and its term's token must exceed every token of a
   * leader that stopped acting as one before.
   */
  leadBeliefStarted(
    client: string,
    sessionId: number,
    lock: string,
    token: number,
    atMs: number,
  ): void {
    const list = this.beliefs.get(lock) ?? [];
    for (const other of list) {
      if (other.client === client) continue;
      const endMs = Math.min(other.toMs, this.safeUntilMs.get(other.client) ?? OPEN);
      if (other.fromMs <= atMs && atMs < endMs) {
        this.fail(
          `Election: ${client} was told at ${atMs} ms it leads ${lock} (token ${token}) while ${other.client} believes it leads (token ${other.token}) since ${other.fromMs} ms`,
        );
      }
    }
    this.beliefStarted(client, sessionId, lock, token, 'exclusive', atMs);
  }

  beliefEnded(client: string, lock: string, atMs: number): void {
    for (const belief of this.beliefs.get(lock) ?? []) {
      if (belief.client === client) belief.toMs = Math.min(belief.toMs, atMs);
    }
  }

  // ------------------------------------------------------------ quiescence

  /** The rules in force in the reference replay, and the index of the entry that set them. */
  referenceRules(): { rules: LockLimits; rulesSetIndex: number | null } {
    return { rules: this.reference.rules, rulesSetIndex: this.reference.rulesSetIndex };
  }

  /** The behaviour version in force in the reference replay of the committed log. */
  referenceBehaviour(): number {
    return this.reference.behaviour;
  }

  /** The reference's state, for comparing with each node's at the same index. */
  referenceSnapshot(): string {
    return JSON.stringify(this.reference.snapshot());
  }

  /**
   * Whether `sessionId` still holds a lock through the Acquire with `requestId`: the
   * grant's request entry is that Acquire (or a retry of it), or the request was told of
   * the grant later (a re-acquire). With its token, every request told of the grant:
   * its callers may hold it, so it is left behind only if all of them gave up.
   */
  holdsThrough(
    sessionId: number,
    requestId: string,
    lock: string,
  ): { readonly token: number; readonly told: readonly string[] } | null {
    const hold = this.tenureAt(lock, sessionId, 'hold', this.referenceIndex);
    if (hold === undefined) return null;
    const request = this.log.get(hold.requestIndex)?.command ?? null;
    const through =
      this.sameRequest(request, 'Acquire', sessionId, requestId) ||
      this.sameRequest(request, 'AcquireAll', sessionId, requestId) ||
      this.sameRequest(request, 'AcquirePermits', sessionId, requestId) ||
      this.sameRequest(request, 'Campaign', sessionId, requestId) ||
      hold.told.includes(requestId);
    return through ? { token: hold.token, told: hold.told } : null;
  }

  sessionAlive(sessionId: number): boolean {
    return this.reference.session(sid(sessionId)) !== null;
  }

  /** Records the first violation and throws, which stops whatever found it. */
  fail(message: string): never {
    this.violated(message);
    throw new SafetyViolation(message);
  }

  /** Records the first violation where throwing would not stop the run (a node's observer). */
  violated(message: string): void {
    this.violation ??= message;
  }

  /** Something went wrong outside the checks (a client crashed on an exception). */
  harnessError(error: unknown): void {
    if (error instanceof SafetyViolation) return;
    const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
    this.violation ??= `Harness or code under test threw: ${text}`;
  }

  private note(text: string): void {
    if (this.notes.length < 20) this.notes.push(text);
  }
}

function sid(value: number): SessionId {
  return value as SessionId;
}

/** The command is an Acquire or AcquireAll of `sessionId` that names `lock`. */
function requestNames(command: LockCommand, sessionId: number, lock: string): boolean {
  if (command.type === 'Acquire') return command.sessionId === sessionId && command.lock === lock;
  if (command.type !== 'AcquireAll') return false;
  return command.sessionId === sessionId && command.locks.some((claim) => claim.lock === lock);
}

/** A leader as the reference has it at `index`: session, term token and value then. */
function describeLeader(tenure: Tenure, index: number): string {
  const value = tenure.values.filter((each) => each.from <= index).at(-1)?.value ?? '';
  return `${tenure.sessionId}/${tenure.token}/${JSON.stringify(value)}`;
}

function describeToldLeader(leader: ToldLeader): string {
  return `${leader.sessionId}/${leader.token}/${JSON.stringify(leader.value)}`;
}

function describeCommand(command: LockCommand | null): string {
  if (command === null) return 'no lock command';
  const { type } = command;
  const session = 'sessionId' in command ? ` session ${command.sessionId}` : '';
  const request = 'requestId' in command ? ` request ${command.requestId}` : '';
  const lock = 'lock' in command ? ` ${command.lock}` : '';
  return `${type}${lock}${session}${request}`;
}
