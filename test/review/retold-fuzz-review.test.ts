/**
 * Review of 0dbc683 (a retried Acquire told of a grant from memory counts again among the
 * requests told of it): a random-command fuzz of the single-lock machine against an
 * independent model of what callers were told.
 *
 * The model keeps one "caller" per Acquire entry (attempt) that was told Acquired, or
 * whose wait was granted while it still waited. A caller holds its grant until the
 * session releases that grant, the session ends, the grant is revoked or reaches its
 * max hold, or the caller's own attempt is withdrawn (its call failed: it was never
 * told). Checked after every entry:
 * - every caller still holding finds its grant (same session, same token) in the lock;
 *   in particular, a Withdraw never frees a grant a caller that did not withdraw holds;
 * - a retry of a request whose grant is still held is told that grant;
 * - a replica restored from a snapshot mid-way, and one replaying the whole log from
 *   the start, give byte-identical results, events and snapshots.
 * Also counted (not failed): grants left with no caller holding or waiting for them
 * ("kept"), which the design accepts only past a bound (dedupe window, OPEN_ATTEMPTS_MAX,
 * TOLD_REQUESTS_MAX) until the session ends.
 */
import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_VERSIONED,
  type LockCommand,
  type LockMode,
  type LockResult,
  type LockSnapshot,
} from '../../src/lock/index.ts';
import type { LogIndex, SessionId } from '../../src/util/ids.ts';
import { Log } from '../unit/lock-log.ts';

type Acquire = Extract<LockCommand, { type: 'Acquire' }>;

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

interface Caller {
  readonly attempt: number;
  readonly sessionId: SessionId;
  readonly requestId: string;
  readonly lock: string;
  readonly token: number;
}

interface Attempt {
  readonly command: Acquire;
  readonly index: number;
  readonly result: LockResult;
}

interface Settings {
  readonly names: readonly string[];
  readonly sessions: number;
  readonly dedupeWindowMax: number;
  readonly steps: number;
}

class Fuzz {
  readonly log: Log;
  mirror: Log | null = null;
  readonly commands: LockCommand[] = [];
  readonly problems: string[] = [];
  readonly sessions: SessionId[] = [];
  readonly attempts: Attempt[] = [];
  /** Callers told of a grant that still hold it, by attempt index. */
  readonly holding = new Map<number, Caller>();
  /** Attempts answered Queued whose wait has not ended, by "session/lock". */
  readonly waitingAttempts = new Map<string, Attempt[]>();
  readonly withdrawn = new Set<number>();
  keptSteps = 0;
  /** Per "Acquire/session/request", the last entry after which it was not in the dedupe window. */
  readonly forgottenAt = new Map<string, number>();
  /**
   * Frees of a grant whose told callers' requests all left the dedupe window after they
   * were told (a later attempt of the request then ran afresh): pre-existing, see
   * retold-window-review.test.ts.
   */
  readonly pastWindow: string[] = [];
  overflowSteps = 0;
  withdrawsThatFreed = 0;
  retriesToldFromMemory = 0;

  constructor(
    readonly seed: number,
    readonly random: () => number,
    readonly settings: Settings,
  ) {
    this.log = new Log({ dedupeWindowMax: settings.dedupeWindowMax });
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)] as T;
  }

  apply(command: LockCommand): LockResult {
    this.commands.push(command);
    const output = this.log.applyFull(command);
    const { result, events } = output;
    if (process.env.REVIEW_TRACE === String(this.seed)) {
      console.log(this.log.index, JSON.stringify(command), '=>', JSON.stringify(result));
      for (const e of events) console.log('   ', JSON.stringify(e));
    }
    this.log.sm.checkInvariants();
    if (this.mirror !== null) {
      const theirs = this.mirror.applyFull(command);
      if (JSON.stringify(theirs) !== JSON.stringify(output)) {
        this.problem(`restored replica differs: ${JSON.stringify(theirs.result)}`);
        this.mirror = null;
      }
    }
    const index = this.log.index;
    if (command.type === 'Acquire') {
      const attempt = { command, index, result };
      this.attempts.push(attempt);
      if (result.type === 'Acquired') {
        this.holding.set(index, { ...this.who(command), attempt: index, token: result.token });
      }
      if (result.type === 'Queued') {
        const key = `${command.sessionId}/${command.lock}`;
        this.waitingAttempts.set(key, [...(this.waitingAttempts.get(key) ?? []), attempt]);
      }
    }
    if (command.type === 'Withdraw') {
      this.withdrawn.add(command.attemptIndex);
      this.holding.delete(command.attemptIndex);
      const key = `${command.sessionId}/${command.lock}`;
      const left = (this.waitingAttempts.get(key) ?? []).filter(
        (each) => each.index !== command.attemptIndex,
      );
      this.waitingAttempts.set(key, left);
    }
    for (const event of events) {
      if (event.type === 'granted') {
        const key = `${event.holder.sessionId}/${event.lock}`;
        for (const waited of this.waitingAttempts.get(key) ?? []) {
          if (waited.command.requestId !== event.requestId) continue;
          this.holding.set(waited.index, {
            ...this.who(waited.command),
            attempt: waited.index,
            token: event.holder.token,
          });
        }
        this.waitingAttempts.delete(key);
      }
      if (event.type === 'waitEnded' && event.reason !== 'granted') {
        this.waitingAttempts.delete(`${event.sessionId}/${event.lock}`);
      }
      if (event.type === 'released') {
        const theirs = [...this.holding.values()].filter(
          (caller) =>
            caller.sessionId === event.sessionId &&
            caller.lock === event.lock &&
            caller.token === event.token,
        );
        if (command.type === 'Withdraw') {
          this.withdrawsThatFreed++;
          const forgotten = theirs.every(
            (caller) =>
              (this.forgottenAt.get(`Acquire/${caller.sessionId}/${caller.requestId}`) ?? 0) >
              caller.attempt,
          );
          if (theirs.length > 0 && forgotten) {
            this.pastWindow.push(`seed ${this.seed} entry ${this.log.index}`);
            for (const caller of theirs) this.holding.delete(caller.attempt);
          } else if (theirs.length > 0) {
            this.problem(
              `Withdraw of ${command.requestId}@${command.attemptIndex} freed ${event.lock} (token ${event.token}) told to callers still holding it: ${theirs.map((c) => `${c.requestId}@${c.attempt}`)}`,
            );
          }
        }
        for (const caller of theirs) this.holding.delete(caller.attempt);
      }
    }
    this.noteWindow();
    this.checkHolding();
    return result;
  }

  /** Which requests left the dedupe window, and whether a bound (told, attempts) was passed. */
  private noteWindow(): void {
    const saved = this.log.sm.snapshot() as unknown as {
      dedupe: [string, { attemptsDropped?: true }][];
      locks: { holders: { requestId: string }[] }[];
    };
    const kept = new Set(saved.dedupe.map(([key]) => key));
    for (const attempt of this.attempts) {
      const key = `Acquire/${attempt.command.sessionId}/${attempt.command.requestId}`;
      if (!kept.has(key)) this.forgottenAt.set(key, this.log.index);
    }
    const dropped = saved.dedupe.some(([, each]) => each.attemptsDropped === true);
    const noRequest = saved.locks.some((lock) => lock.holders.some((h) => h.requestId === ''));
    if (dropped || noRequest) this.overflowSteps++;
  }

  private who(command: Acquire) {
    return { sessionId: command.sessionId, requestId: command.requestId, lock: command.lock };
  }

  private problem(text: string): void {
    this.problems.push(`seed ${this.seed} entry ${this.log.index}: ${text}`);
  }

  /** Every caller still holding finds its grant; count grants nobody holds or waits for. */
  private checkHolding(): void {
    for (const caller of this.holding.values()) {
      const grant = this.log.sm
        .describe(caller.lock)
        .holders.find((each) => each.sessionId === caller.sessionId);
      if (grant?.token !== caller.token) {
        this.problem(
          `caller ${caller.requestId}@${caller.attempt} was told token ${caller.token} of ${caller.lock} and did not let go, but the lock holds ${JSON.stringify(this.log.sm.describe(caller.lock).holders)}`,
        );
        this.holding.delete(caller.attempt);
      }
    }
    for (const name of this.settings.names) {
      for (const grant of this.log.sm.describe(name).holders) {
        const held = [...this.holding.values()].some(
          (caller) => caller.sessionId === grant.sessionId && caller.lock === name,
        );
        if (!held) this.keptSteps++;
      }
    }
  }

  /** A retry of a request whose grant is still held must be told that grant. */
  retry(): void {
    const earlier = this.attempts.filter((each) => each.result.type === 'Acquired');
    if (earlier.length === 0) return;
    const first = this.pick(earlier);
    if (first.result.type !== 'Acquired') return;
    const token = first.result.token;
    const holder = this.log.sm
      .describe(first.command.lock)
      .holders.find((each) => each.sessionId === first.command.sessionId);
    const stillHeld = holder?.token === token;
    const result = this.apply(first.command);
    if (result.type === 'Acquired' && result.token === token) this.retriesToldFromMemory++;
    if (stillHeld && (result.type !== 'Acquired' || result.token !== token)) {
      this.problem(
        `retry of ${first.command.requestId} (told token ${token}, still held) answered ${JSON.stringify(result)}`,
      );
    }
  }

  step(): void {
    const roll = this.random();
    const session = this.pick(this.sessions);
    const live = this.log.sm.session(session) !== null;
    const names = this.settings.names;
    if (roll < 0.3) {
      if (!live) return;
      const mode: LockMode = this.random() < 0.3 ? 'shared' : 'exclusive';
      this.apply(
        this.log.acquireCommand(session, this.pick(names), {
          mode,
          waitMs: this.random() < 0.3 ? 0 : 60_000,
          maxHoldMs: this.random() < 0.2 ? 1000 : 0,
          lockDelayMs: this.random() < 0.1 ? 1000 : 0,
        }),
      );
    } else if (roll < 0.45) {
      this.retry();
    } else if (roll < 0.52) {
      // Any earlier request again (queued, refused, or one whose grant ended).
      if (this.attempts.length > 0) this.apply(this.pick(this.attempts).command);
    } else if (roll < 0.58) {
      const name = this.pick(names);
      const holder = this.log.sm.describe(name).holders.find((h) => h.sessionId === session);
      if (holder === undefined) return;
      this.apply({
        type: 'Release',
        lock: name,
        sessionId: session,
        token: holder.token,
        requestId: this.log.nextRequestId(),
      });
    } else if (roll < 0.8) {
      // Withdraw an attempt, preferring recent ones (a failed call withdraws soon).
      const recent = this.attempts.slice(-12);
      const attempt = recent.length > 0 ? this.pick(recent) : undefined;
      if (attempt === undefined || this.withdrawn.has(attempt.index)) return;
      this.apply({
        type: 'Withdraw',
        lock: attempt.command.lock,
        sessionId: attempt.command.sessionId,
        requestId: attempt.command.requestId,
        attemptIndex: attempt.index as LogIndex,
      });
    } else if (roll < 0.84) {
      const name = this.pick(names);
      const waiter = this.log.sm.describe(name).waiters.find((w) => w.sessionId === session);
      if (waiter === undefined) return;
      if (this.random() < 0.5) {
        this.apply({
          type: 'WaitExpired',
          lock: name,
          sessionId: session,
          waiterIndex: waiter.requestIndex,
        });
      } else {
        this.apply({
          type: 'CancelWait',
          lock: name,
          sessionId: session,
          requestId: this.log.nextRequestId(),
        });
      }
    } else if (roll < 0.87) {
      const name = this.pick(names);
      const holder = this.log.sm.describe(name).holders.find((h) => h.sessionId === session);
      if (holder === undefined) return;
      if (this.random() < 0.5) {
        this.apply({ type: 'MaxHoldReached', lock: name, sessionId: session, token: holder.token });
      } else {
        this.apply({ type: 'Revoke', lock: name, reason: 'review' });
      }
    } else if (roll < 0.89) {
      const described = this.log.sm.session(session);
      if (described === null) return;
      if (this.random() < 0.5) {
        this.apply({
          type: 'ExpireSession',
          sessionId: session,
          lastRefreshIndex: described.lastRefreshIndex,
        });
      } else {
        this.apply({
          type: 'CloseSession',
          sessionId: session,
          requestId: this.log.nextRequestId(),
        });
      }
      const opened = this.apply({
        type: 'OpenSession',
        ttlMs: 10_000,
        clientName: 'c',
        requestId: this.log.nextRequestId(),
      });
      if (opened.type === 'SessionOpened') {
        // Calls of the ended session are over: drop them from the model.
        for (const [at, caller] of this.holding) {
          if (caller.sessionId === session) this.holding.delete(at);
        }
        this.sessions.splice(this.sessions.indexOf(session), 1, opened.sessionId);
      }
    } else if (roll < 0.93) {
      const name = this.pick(names);
      const delay = this.log.sm.describe(name).delays[0];
      if (delay !== undefined) {
        this.apply({ type: 'LockDelayEnded', lock: name, delayIndex: delay.index as LogIndex });
      }
    } else {
      const name = this.pick(names);
      if (!this.log.sm.promotionPending(name)) return;
      this.apply({ type: 'Promote', lock: name, afterIndex: this.log.index as LogIndex });
    }
  }

  openSession(): SessionId | null {
    const opened = this.apply({
      type: 'OpenSession',
      ttlMs: 10_000,
      clientName: 'c',
      requestId: this.log.nextRequestId(),
    });
    if (opened.type !== 'SessionOpened') return null;
    this.sessions.push(opened.sessionId);
    return opened.sessionId;
  }

  restoreMirror(): void {
    const mirror = new Log({ dedupeWindowMax: this.settings.dedupeWindowMax });
    mirror.sm.restore(JSON.parse(JSON.stringify(this.log.sm.snapshot())) as LockSnapshot);
    mirror.index = this.log.index;
    this.mirror = mirror;
  }

  /** A replica that replays every entry from the start ends byte-identical. */
  checkReplay(): void {
    const replay = new Log({ dedupeWindowMax: this.settings.dedupeWindowMax });
    for (const command of this.commands) replay.applyFull(command);
    const mine = JSON.stringify(this.log.sm.snapshot());
    if (JSON.stringify(replay.sm.snapshot()) !== mine) this.problem('full replay differs');
    if (this.mirror !== null && JSON.stringify(this.mirror.sm.snapshot()) !== mine) {
      this.problem('restored replica snapshot differs');
    }
  }
}

interface Outcome {
  readonly problems: string[];
  readonly pastWindow: number;
  readonly overflow: number;
  readonly kept: number;
  readonly freed: number;
  readonly retold: number;
}

function run(seed: number, settings: Settings): Outcome {
  const fuzz = new Fuzz(seed, rng(seed), settings);
  // Raised in the log, as a cluster would (0dbc683's rule holds at every version).
  fuzz.apply({ type: 'SetBehaviour', version: BEHAVIOUR_VERSIONED });
  for (let k = 0; k < settings.sessions; k++) fuzz.openSession();
  const restoreAt = Math.floor(settings.steps / 3);
  for (let k = 0; k < settings.steps && fuzz.problems.length === 0; k++) {
    if (k === restoreAt) fuzz.restoreMirror();
    fuzz.step();
  }
  if (fuzz.problems.length === 0) fuzz.checkReplay();
  return {
    problems: fuzz.problems,
    pastWindow: fuzz.pastWindow.length,
    overflow: fuzz.overflowSteps,
    kept: fuzz.keptSteps,
    freed: fuzz.withdrawsThatFreed,
    retold: fuzz.retriesToldFromMemory,
  };
}

function runAll(settings: Settings, seeds: number) {
  const results = Array.from({ length: seeds }, (_, k) => run(k + 1, settings));
  const problems = results.flatMap((each) => each.problems);
  const sum = (pick: (each: Outcome) => number) => results.reduce((s, e) => s + pick(e), 0);
  if (process.env.REVIEW_STATS !== undefined) {
    console.log(
      JSON.stringify({
        settings,
        pastWindow: sum((e) => e.pastWindow),
        overflow: sum((e) => e.overflow),
        kept: sum((e) => e.kept),
        freed: sum((e) => e.freed),
        retold: sum((e) => e.retold),
      }),
    );
  }
  return { problems, freed: sum((e) => e.freed), retold: sum((e) => e.retold) };
}

const SEEDS = Number(process.env.REVIEW_SEEDS ?? 300);
const STEPS = Number(process.env.REVIEW_STEPS ?? 150);

describe('review retold: single locks, retries, withdrawals, a restored and a replayed replica', () => {
  for (const settings of [
    { names: ['x'], sessions: 2, dedupeWindowMax: 1000, steps: STEPS },
    { names: ['x'], sessions: 2, dedupeWindowMax: 4, steps: STEPS },
    { names: ['x', 'y'], sessions: 3, dedupeWindowMax: 8, steps: STEPS },
  ]) {
    it(`tells no caller it holds what it does not (${JSON.stringify(settings)})`, () => {
      const { problems, freed, retold } = runAll(settings, SEEDS);
      expect({ count: problems.length, first: problems.slice(0, 3) }).toEqual({
        count: 0,
        first: [],
      });
      // Teeth: withdrawals do free grants, and retries are told grants from memory.
      expect(freed).toBeGreaterThan(20);
      expect(retold).toBeGreaterThan(20);
    });
  }
});
