/**
 * Model-based property tests of the lock state machine (issue 3): random interleavings
 * of every command, against the reference model in lock-model.ts, with snapshot/restore
 * in the middle of runs and a replay on a second instance that must give a byte-identical
 * snapshot. After every command: the state machine's own invariants, the model's
 * queries, and independent checks on the events (mutual exclusion, tokens increase,
 * FIFO, a gone session holds and waits for nothing).
 *
 * Teeth: subclasses each break one rule through a protected seam, and the same
 * property must find a counterexample for each within the same number of runs.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { IdentityQuota } from '../../src/lock/identity-quota.ts';
import {
  type LockCommand,
  type LockDelay,
  type LockEvent,
  type LockLimits,
  type LockMode,
  type LockResult,
  LockStateMachine,
  type RememberedResult,
} from '../../src/lock/index.ts';
import type { FencingToken, LogIndex, SessionId } from '../../src/util/ids.ts';
import { comparableResult, LockModel } from './lock-model.ts';

// ------------------------------------------------------------------ configuration

/** Runs of the main property; each injected bug must be caught within as many. */
const NUM_RUNS = Number(process.env.DLM_LOCK_PROPERTY_RUNS ?? 1_000);
/** Fixed so that `npm test` is deterministic; set DLM_LOCK_PROPERTY_SEED to explore. */
const SEED = Number(process.env.DLM_LOCK_PROPERTY_SEED ?? 20_240_603);
const MAX_COMMANDS = Number(process.env.DLM_LOCK_PROPERTY_COMMANDS ?? 100);

/** Small limits so that every one of them is reached. */
const BASE_LIMITS = {
  lockNameBytesMax: 6,
  ownerBytesMax: 4,
  clientNameBytesMax: 4,
  requestIdBytesMax: 4,
  sessionTtlMsMin: 1_000,
  sessionTtlMsMax: 5_000,
  sessionsMax: 4,
  locksMax: 3,
  waitersPerLockMax: 2,
  waitMsMax: 10_000,
  maxHoldMsMax: 10_000,
  keepAliveBatchMax: 3,
  lockDelayMs: 0,
  lockDelayMsMax: 1_000,
  dedupeWindowMax: 5,
} satisfies LockLimits;

/** 'ééé' is 6 bytes (at the limit), 'éééé' is 8 (past it). */
const LOCK_NAMES = ['a', 'b', 'ab', 'ééé'] as const;
const BAD_LOCK_NAMES = ['', 'éééé'] as const;
const ALL_LOCK_NAMES = [...LOCK_NAMES, ...BAD_LOCK_NAMES];
const BOGUS_SESSION_BASE = 10_000;
const BOGUS_INDEX = 99_999;

// ------------------------------------------------------------------ model and real worlds

interface ModelWorld {
  readonly m: LockModel;
  /** The index of the next entry. */
  next: number;
  /** Every session id ever opened, in order. */
  readonly opened: number[];
  /** Every refresh index of each session, in order. */
  readonly refreshes: Map<number, number[]>;
  /** Every token ever granted, per lock. */
  readonly tokens: Map<string, number[]>;
  /** Every lock-delay index ever started, per lock. */
  readonly delays: Map<string, number[]>;
  /** Commands that carry a request id, in log order, for retries. */
  readonly mutations: LockCommand[];
}

type LogStep =
  | {
      readonly kind: 'apply';
      readonly index: number;
      readonly command: LockCommand;
      readonly result: string;
    }
  | { readonly kind: 'skip'; readonly index: number };

interface TrackedHolder {
  readonly sessionId: number;
  readonly mode: LockMode;
  readonly token: number;
}

interface RealWorld {
  sut: LockStateMachine;
  readonly make: () => LockStateMachine;
  readonly log: LogStep[];
  /** Derived from events only, independently of the state machine's own bookkeeping. */
  readonly queues: Map<string, { sessionId: number; requestIndex: number; mode: LockMode }[]>;
  readonly holders: Map<string, TrackedHolder[]>;
  readonly lastGrant: Map<string, { token: number; index: number }>;
  readonly ended: Set<number>;
}

type Factory = (limits: LockLimits) => LockStateMachine;

const asIndex = (n: number) => n as LogIndex;
const asSession = (n: number) => n as SessionId;
const asToken = (n: number) => n as FencingToken;

function listOf<K, V>(map: Map<K, V[]>, key: K): V[] {
  let list = map.get(key);
  if (list === undefined) {
    list = [];
    map.set(key, list);
  }
  return list;
}

function pick<T>(items: readonly T[], k: number): T | undefined {
  return items.length === 0 ? undefined : items[k % items.length];
}

function addOnce(list: number[], value: number): void {
  if (!list.includes(value)) list.push(value);
}

// ------------------------------------------------------------------ reference resolution

/**
 * Commands are generated as references (session slot k, "the current token", ...) and
 * resolved against the model when they run, so that real ids, gone ids and bogus ids
 * all occur whatever came before.
 */
function resolveSession(w: ModelWorld, ref: number): number {
  const live = w.m.sessionIds();
  if (ref < 8 && live.length > 0) return pick(live, ref) as number;
  if (ref < 10 && w.opened.length > 0) return pick(w.opened, ref) as number;
  return BOGUS_SESSION_BASE + ref;
}

type TokenRef = { kind: 'current' | 'seen' | 'bogus'; k: number };

function resolveToken(w: ModelWorld, lock: string, sessionId: number, ref: TokenRef): number {
  const mine = w.m.describe(lock).holders.find((holder) => holder.sessionId === sessionId);
  if (ref.kind === 'current' && mine !== undefined) return mine.token;
  const seen = pick(w.tokens.get(lock) ?? [], ref.k);
  if (ref.kind !== 'bogus' && seen !== undefined) return seen;
  return BOGUS_INDEX;
}

// ------------------------------------------------------------------ checks

function fail(message: string): never {
  throw new Error(message);
}

/** Checks one entry's events against what the events so far imply. */
function checkEvents(real: RealWorld, index: number, events: readonly LockEvent[]): void {
  const promoted = new Set<string>();
  for (const event of events) {
    switch (event.type) {
      case 'queued': {
        const { sessionId, requestIndex, mode } = event.waiter;
        if (requestIndex !== index)
          fail(`queued waiter has requestIndex ${requestIndex} at ${index}`);
        if (real.ended.has(sessionId)) fail(`gone session ${sessionId} queued for ${event.lock}`);
        listOf(real.queues, event.lock).push({ sessionId, requestIndex, mode });
        break;
      }
      case 'waitEnded': {
        const queue = listOf(real.queues, event.lock);
        const position = queue.findIndex(
          (w) => w.sessionId === event.sessionId && w.requestIndex === event.requestIndex,
        );
        if (position < 0) fail(`waitEnded for ${event.sessionId} on ${event.lock}, not waiting`);
        if (event.reason === 'granted') {
          if (position !== 0) {
            fail(`FIFO: ${event.lock} granted waiter ${event.sessionId} at position ${position}`);
          }
          promoted.add(`${event.lock}/${event.sessionId}`);
        }
        queue.splice(position, 1);
        break;
      }
      case 'granted': {
        const { sessionId, mode, token } = event.holder;
        if (real.ended.has(sessionId)) fail(`gone session ${sessionId} granted ${event.lock}`);
        if (token !== index) fail(`${event.lock} granted with token ${token} by entry ${index}`);
        // Every grant has a token of its own: one entry grants a lock at most once.
        const last = real.lastGrant.get(event.lock);
        if (last !== undefined && !(token > last.token)) {
          fail(`${event.lock} token ${token} after ${last.token}: tokens must strictly increase`);
        }
        real.lastGrant.set(event.lock, { token, index });
        if (
          !promoted.delete(`${event.lock}/${sessionId}`) &&
          listOf(real.queues, event.lock).length > 0
        ) {
          fail(`${event.lock} granted to ${sessionId} ahead of its waiters`);
        }
        const holders = listOf(real.holders, event.lock);
        if (holders.some((holder) => holder.sessionId === sessionId)) {
          fail(`${event.lock} granted twice to ${sessionId}`);
        }
        if (mode === 'exclusive' && holders.length > 0) {
          fail(`${event.lock} granted exclusive to ${sessionId} beside ${holders.length} holders`);
        }
        if (mode === 'shared' && holders.some((holder) => holder.mode === 'exclusive')) {
          fail(`${event.lock} granted shared to ${sessionId} beside an exclusive holder`);
        }
        holders.push({ sessionId, mode, token });
        break;
      }
      case 'released': {
        const holders = listOf(real.holders, event.lock);
        const position = holders.findIndex(
          (holder) => holder.sessionId === event.sessionId && holder.token === event.token,
        );
        if (position < 0) fail(`released ${event.lock} by ${event.sessionId}, not a holder`);
        holders.splice(position, 1);
        break;
      }
      case 'sessionEnded': {
        real.ended.add(event.sessionId);
        for (const [lock, holders] of real.holders) {
          if (holders.some((holder) => holder.sessionId === event.sessionId)) {
            fail(`ended session ${event.sessionId} still holds ${lock}`);
          }
        }
        for (const [lock, queue] of real.queues) {
          if (queue.some((waiter) => waiter.sessionId === event.sessionId)) {
            fail(`ended session ${event.sessionId} still waits for ${lock}`);
          }
        }
        break;
      }
      case 'promotionPending': {
        const head = listOf(real.queues, event.lock)[0];
        const holders = listOf(real.holders, event.lock);
        if (head === undefined) fail(`promotionPending for ${event.lock} with no waiter`);
        if (
          head.mode === 'exclusive'
            ? holders.length > 0
            : holders.some((h) => h.mode === 'exclusive')
        ) {
          fail(`promotionPending for ${event.lock}, whose head waiter does not fit its holders`);
        }
        break;
      }
      case 'sessionRefreshed':
      case 'delayStarted':
      case 'delayEnded':
        break;
    }
  }
  if (promoted.size > 0)
    fail(`waiters left the queue as granted but got no grant: ${[...promoted]}`);
}

/**
 * What an answer tells the client is true after its entry, by the state the events
 * built (not the model): an Acquired names a grant the session holds, in the mode it
 * asked for, beside the holders there are; a Queued names its place in the queue.
 */
function checkTruth(
  real: RealWorld,
  command: LockCommand,
  result: LockResult,
  label: string,
  reused: boolean,
): void {
  if (result.type === 'Acquired' && command.type === 'Acquire') {
    const holders = listOf(real.holders, result.lock);
    const mine = holders.find((holder) => holder.sessionId === command.sessionId);
    if (mine === undefined || mine.token !== result.token) {
      fail(`${label} told Acquired with token ${result.token}, which session does not hold`);
    }
    if (!reused && (result.mode !== command.mode || mine.mode !== result.mode)) {
      fail(`${label} asked ${command.mode} and was told Acquired ${result.mode}`);
    }
    assert.deepStrictEqual(
      result.holders.map((holder) => [holder.sessionId, holder.token]),
      holders.map((holder) => [holder.sessionId, holder.token]),
      `holders told by ${label}`,
    );
  }
  if (result.type === 'Queued' && command.type === 'Acquire') {
    const waiter = listOf(real.queues, result.lock)[result.position];
    if (waiter?.sessionId !== command.sessionId || (!reused && waiter.mode !== command.mode)) {
      fail(`${label} told Queued at ${result.position}, where it does not wait`);
    }
  }
  if (result.type === 'Promoted') {
    const holder = listOf(real.holders, result.lock).find((h) => h.token === result.token);
    if (holder?.sessionId !== result.sessionId) fail(`${label} promoted no such holder`);
  }
}

/** The state machine's state against the model's, and the safety properties on it. */
function checkState(w: ModelWorld, real: RealWorld): void {
  const sut = real.sut;
  sut.checkInvariants();
  for (const name of ALL_LOCK_NAMES) {
    const actual = sut.describe(name);
    assert.deepStrictEqual(actual, w.m.describe(name), `describe(${name})`);
    const modes = actual.holders.map((holder) => holder.mode);
    if (modes.includes('exclusive') && modes.length > 1) {
      fail(`${name} has an exclusive holder beside ${modes.length - 1} others`);
    }
    const tracked = listOf(real.holders, name).map((holder) => holder.sessionId);
    assert.deepStrictEqual(
      actual.holders.map((holder) => holder.sessionId),
      tracked,
      `holders of ${name} as the events tell`,
    );
    const queued = listOf(real.queues, name).map((waiter) => waiter.sessionId);
    assert.deepStrictEqual(
      actual.waiters.map((waiter) => waiter.sessionId),
      queued,
      `waiters of ${name} as the events tell`,
    );
    const modelLock = w.m.locks.find((lock) => lock.name === name);
    assert.equal(
      sut.promotionPending(name),
      modelLock !== undefined && w.m.headGrantable(modelLock),
      `promotionPending(${name})`,
    );
    for (const token of [...(w.tokens.get(name) ?? []), BOGUS_INDEX]) {
      assert.deepStrictEqual(
        sut.validateFence(name, asToken(token)),
        w.m.validateFence(name, token),
        `validateFence(${name}, ${token})`,
      );
    }
  }
  assert.deepStrictEqual(sut.sessionIds(), w.m.sessionIds(), 'sessionIds()');
  assert.deepStrictEqual(sut.rules, w.m.limits, 'rules');
  assert.equal(sut.rulesSetIndex, w.m.rulesSetAt, 'rulesSetIndex');
  assert.equal(sut.behaviour, w.m.behaviour, 'behaviour');
  // Binaries older than behaviour versions read only version 3: written until the raise.
  assert.equal(sut.snapshot().version, w.m.behaviour === 1 ? 3 : 4, 'snapshot version');
  assert.equal(sut.sessionCount, w.m.sessions.length, 'sessionCount');
  assert.equal(sut.lockCount, w.m.locksInUse().length, 'lockCount');
  for (const id of [...w.opened, BOGUS_SESSION_BASE]) {
    const session = sut.session(asSession(id));
    assert.deepStrictEqual(session, w.m.session(id), `session(${id})`);
    if (session === null) {
      // A gone session holds nothing and waits for nothing, on any lock in use.
      for (const name of sut.listLocks('', Number.MAX_SAFE_INTEGER)) {
        const description = sut.describe(name);
        if (description.holders.some((holder) => holder.sessionId === id)) {
          fail(`gone session ${id} holds ${name}`);
        }
        if (description.waiters.some((waiter) => waiter.sessionId === id)) {
          fail(`gone session ${id} waits for ${name}`);
        }
      }
    }
  }
  for (const prefix of ['', 'a', 'é']) {
    for (const limit of [1, 100]) {
      assert.deepStrictEqual(
        sut.listLocks(prefix, limit),
        w.m.listLocks(prefix, limit),
        `listLocks(${prefix}, ${limit})`,
      );
    }
  }
}

/** Notes what the model now holds, so later commands can refer to real and stale values. */
function recordHistory(w: ModelWorld): void {
  for (const session of w.m.sessions) {
    addOnce(w.opened, session.id);
    addOnce(listOf(w.refreshes, session.id), session.lastRefreshIndex);
  }
  for (const lock of w.m.locks) {
    for (const holder of lock.holders) addOnce(listOf(w.tokens, lock.name), holder.token);
    for (const delay of lock.delays) addOnce(listOf(w.delays, lock.name), delay.index);
  }
}

// ------------------------------------------------------------------ commands

/** Applies one command to the state machine and the model, and checks everything. */
function step(w: ModelWorld, real: RealWorld, command: LockCommand): string {
  if ('requestId' in command) w.mutations.push(command);
  const index = w.next;
  w.next += 1;
  const label = `@${index} ${JSON.stringify(command)}`;
  const early = real.sut.ownerRefusal(command);
  const appliedBefore = real.sut.lastAppliedIndex;
  const output = real.sut.apply(asIndex(index), command);
  checkOwnerRefusal(command, early, appliedBefore, output.result, label);
  real.log.push({ kind: 'apply', index, command, result: JSON.stringify(output.result) });
  const expected = w.m.apply(index, command);
  assert.deepStrictEqual(comparableResult(output.result), expected, `result of ${label}`);
  if (output.result.type === 'Rejected' && output.result.detail.length === 0) {
    fail(`Rejected without a detail: ${label}`);
  }
  // Exactly once: a retry answered from memory changes nothing.
  if (w.m.lastRetried !== null && output.events.length > 0) {
    fail(`retry ${label} acted again: ${JSON.stringify(output.events)}`);
  }
  checkEvents(real, index, output.events);
  // A request id reused for another request gets that request's answer (ids are the
  // client's to keep unique); only a word-for-word retry must match what it asked.
  const reused =
    w.m.lastRetried !== null && JSON.stringify(w.m.lastRetried) !== JSON.stringify(command);
  checkTruth(real, command, output.result, label, reused);
  recordHistory(w);
  checkState(w, real);
  return label;
}

/**
 * What the API refuses before proposing (ownerRefusal, issue 15) is exactly the refusal
 * the entry gets when it applies next; and every notSessionOwner refusal is found early
 * when each session the command names is at or below the applied index (a later id may
 * yet be opened, so only the log can tell).
 */
function checkOwnerRefusal(
  command: LockCommand,
  early: LockResult | null,
  appliedBefore: number,
  result: LockResult,
  label: string,
): void {
  if (early !== null) {
    assert.deepStrictEqual(result, early, `ownerRefusal before ${label}`);
    return;
  }
  if (result.type !== 'Rejected' || result.code !== 'notSessionOwner') return;
  const ids =
    command.type === 'KeepAlive'
      ? command.sessionIds
      : 'sessionId' in command
        ? [command.sessionId]
        : [];
  if (ids.every((id) => id <= appliedBefore)) fail(`ownerRefusal missed ${label}`);
}

/**
 * A generated command. Its references resolve against the model when it runs; the
 * resolved command (with its index) is in every failure message, while toString shows
 * what was generated, which stays true of the shrunk counterexample.
 */
class ApplyCommand implements fc.Command<ModelWorld, RealWorld> {
  constructor(
    private readonly name: string,
    private readonly args: unknown,
    private readonly resolve: (w: ModelWorld) => LockCommand,
  ) {}

  check(): boolean {
    return true;
  }

  run(w: ModelWorld, real: RealWorld): void {
    step(w, real, this.resolve(w));
  }

  toString(): string {
    return `${this.name}${JSON.stringify(this.args)}`;
  }
}

/** Entries that carry no lock command (Raft no-ops, config changes). */
class SkipCommand implements fc.Command<ModelWorld, RealWorld> {
  constructor(private readonly gap: number) {}
  check(): boolean {
    return true;
  }
  run(w: ModelWorld, real: RealWorld): void {
    const index = w.next - 1 + this.gap;
    real.sut.skipTo(asIndex(index));
    real.log.push({ kind: 'skip', index });
    w.next = index + 1;
    checkState(w, real);
  }
  toString(): string {
    return `Skip(${this.gap})`;
  }
}

/** Moves the run onto a fresh state machine restored from a snapshot that went through JSON. */
class SnapshotRestoreCommand implements fc.Command<ModelWorld, RealWorld> {
  check(): boolean {
    return true;
  }
  run(w: ModelWorld, real: RealWorld): void {
    const text = JSON.stringify(real.sut.snapshot());
    const fresh = real.make();
    fresh.restore(JSON.parse(text));
    assert.equal(JSON.stringify(fresh.snapshot()), text, 'restore(snapshot()) round-trips');
    assert.equal(fresh.lastAppliedIndex, real.sut.lastAppliedIndex, 'lastAppliedIndex restored');
    real.sut = fresh;
    checkState(w, real);
  }
  toString(): string {
    return 'SnapshotRestore';
  }
}

/** Replays the whole log on a second instance: same results, byte-identical snapshot. */
class ReplayCompareCommand implements fc.Command<ModelWorld, RealWorld> {
  check(): boolean {
    return true;
  }
  run(_w: ModelWorld, real: RealWorld): void {
    const other = real.make();
    for (const entry of real.log) {
      if (entry.kind === 'skip') {
        other.skipTo(asIndex(entry.index));
        continue;
      }
      const result = JSON.stringify(other.apply(asIndex(entry.index), entry.command).result);
      assert.equal(result, entry.result, `replayed result at ${entry.index}`);
    }
    assert.equal(
      JSON.stringify(other.snapshot()),
      JSON.stringify(real.sut.snapshot()),
      'replayed snapshot is byte-identical',
    );
  }
  toString(): string {
    return 'ReplayCompare';
  }
}

// ------------------------------------------------------------------ arbitraries

/** Mostly a valid value, now and then one of the invalid ones. */
function mostly<T>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<T>, odds = 30): fc.Arbitrary<T> {
  return fc.oneof({ weight: odds, arbitrary: valid }, { weight: 1, arbitrary: invalid });
}

/** 0-7: a live session (if any), 8-9: any session ever opened (maybe gone), 10-11: bogus. */
const sessionRef = fc.nat({ max: 11 });
const lockName = mostly(
  fc.constantFrom('a', 'a', 'a', 'a', 'b', 'b', 'ab', 'ééé'),
  fc.constantFrom(...BAD_LOCK_NAMES),
);
/**
 * Fresh requests draw from a pool small enough that ids recur after the dedupe window
 * moved on, and now and then collide across command types; true retries come from
 * `retry` below.
 */
const requestId = mostly(
  fc.integer({ min: 0, max: 39 }).map((n) => `r${n}`),
  fc.constantFrom('', 'r0000'),
);
const tokenRef: fc.Arbitrary<TokenRef> = fc.record({
  kind: fc.constantFrom<TokenRef['kind']>('current', 'current', 'current', 'seen', 'bogus'),
  k: fc.nat({ max: 20 }),
});

/** Who opens a session (issue 15): anonymous (no field), or one of two identities. */
const opener = fc.constantFrom<string | undefined>(undefined, undefined, 'a', 'b');
/** Per-identity limits small enough to be reached; usually none. */
const quota = fc.option(
  fc.record({
    sessionsMax: fc.integer({ min: 0, max: 3 }),
    locksHeldMax: fc.integer({ min: 0, max: 3 }),
    waitersMax: fc.integer({ min: 0, max: 2 }),
  }),
  { freq: 3, nil: undefined },
);
/** Who asks on a session: mostly its opener, now and then another identity. */
const asker = fc.constantFrom('own', 'own', 'own', 'own', 'own', 'own', 'other', 'a');
type Asker = { identity?: string };

function askerOf(w: ModelWorld, sessionId: number, who: string): Asker {
  const own = w.m.findSession(sessionId)?.identity ?? '';
  if (who === 'own') return own === '' ? {} : { identity: own };
  if (who === 'other') return { identity: own === 'b' ? 'a' : 'b' };
  return { identity: who };
}

function withQuota<T extends object>(command: T, limits: IdentityQuota | undefined): T {
  return limits === undefined ? command : { ...command, quota: limits };
}

const openSession = fc
  .record({
    ttlMs: mostly(fc.constantFrom(1_000, 3_000, 5_000), fc.constantFrom(999, 5_001, 1_500.5), 15),
    clientName: mostly(fc.constantFrom('c', '', 'ü'), fc.constant('cccccc'), 15),
    requestId,
    identity: opener,
    quota,
  })
  .map(
    ({ identity, quota: limits, ...args }) =>
      new ApplyCommand('OpenSession', { identity, limits, ...args }, () =>
        withQuota(
          {
            type: 'OpenSession' as const,
            ...args,
            ...(identity === undefined ? {} : { identity }),
          },
          limits,
        ),
      ),
  );

const keepAlive = fc
  .record({
    refs: mostly(
      fc.array(sessionRef, { minLength: 1, maxLength: 3 }),
      fc.array(sessionRef, { minLength: 0, maxLength: 4 }),
      10,
    ),
    who: asker,
  })
  .map(
    ({ refs, who }) =>
      new ApplyCommand('KeepAlive', { refs, who }, (w) => {
        const sessionIds = refs.map((ref) => asSession(resolveSession(w, ref)));
        return {
          type: 'KeepAlive',
          sessionIds,
          ...askerOf(w, sessionIds[0] ?? 0, who),
        };
      }),
  );

const closeSession = fc.record({ ref: sessionRef, requestId, who: asker }).map(
  ({ ref, requestId, who }) =>
    new ApplyCommand('CloseSession', { ref, requestId, who }, (w) => {
      const sessionId = resolveSession(w, ref);
      return {
        type: 'CloseSession',
        sessionId: asSession(sessionId),
        requestId,
        ...askerOf(w, sessionId, who),
      };
    }),
);

const expireSession = fc
  .record({
    ref: sessionRef,
    guard: fc.constantFrom('current', 'old', 'old', 'bogus'),
    k: fc.nat(9),
  })
  .map(
    ({ ref, guard, k }) =>
      new ApplyCommand('ExpireSession', { ref, guard, k }, (w) => {
        const sessionId = resolveSession(w, ref);
        const history = w.refreshes.get(sessionId) ?? [];
        const current = w.m.findSession(sessionId)?.lastRefreshIndex ?? history.at(-1);
        let lastRefreshIndex = BOGUS_INDEX;
        if (guard === 'current' && current !== undefined) lastRefreshIndex = current;
        if (guard === 'old') lastRefreshIndex = pick(history, k) ?? sessionId;
        return {
          type: 'ExpireSession',
          sessionId: asSession(sessionId),
          lastRefreshIndex: asIndex(lastRefreshIndex),
        };
      }),
  );

/** At most one field of an Acquire is invalid, and rarely. */
const acquireFault = mostly<Partial<Extract<LockCommand, { type: 'Acquire' }>> | null>(
  fc.constant(null),
  fc.constantFrom(
    { owner: '€€' },
    { mode: 'upgradable' as LockMode },
    { waitMs: 10_001 },
    { waitMs: -1 },
    { maxHoldMs: 10_001 },
    { maxHoldMs: 0.5 },
    { lockDelayMs: 1_001 },
  ),
  20,
);

const acquire = fc
  .record({
    lock: lockName,
    ref: sessionRef,
    mode: fc.constantFrom<LockMode>('exclusive', 'shared'),
    waitMs: fc.constantFrom(0, 1_000, 1_000, 1_000),
    requestId,
    owner: fc.constantFrom('o', '', 'öö'),
    maxHoldMs: fc.constantFrom(0, 0, 0, 500),
    lockDelayMs: fc.constantFrom(0, 0, 0, 100),
    fault: acquireFault,
    who: asker,
    quota,
  })
  .map(
    ({ ref, fault, who, quota: limits, ...args }) =>
      new ApplyCommand('Acquire', { ref, ...args, ...fault, who, limits }, (w) => {
        const sessionId = resolveSession(w, ref);
        return withQuota(
          {
            type: 'Acquire' as const,
            sessionId: asSession(sessionId),
            ...args,
            ...fault,
            ...askerOf(w, sessionId, who),
          },
          limits,
        );
      }),
  );

/**
 * A live session that neither holds nor waits for a busy lock queues for it, shared
 * more often than not: so that shared waiters pile up behind a holder and a release
 * leaves more than one to grant (one per entry, then Promote).
 */
const queueBehind = fc
  .record({
    k: fc.nat(9),
    ref: fc.nat(7),
    mode: fc.constantFrom<LockMode>('shared', 'shared', 'exclusive'),
    requestId,
  })
  .map(
    ({ k, ref, mode, requestId }) =>
      new ApplyCommand('QueueBehind', { k, ref, mode, requestId }, (w) => {
        const busy = w.m.locksInUse().filter((lock) => lock.holders.length > 0);
        const lock = pick(busy, k);
        const involved = (id: number) =>
          lock !== undefined &&
          [...lock.holders, ...lock.waiters].some((person) => person.sessionId === id);
        const free = w.m.sessionIds().filter((id) => !involved(id));
        return {
          type: 'Acquire',
          lock: lock?.name ?? 'a',
          sessionId: asSession(pick(free, ref) ?? resolveSession(w, ref)),
          mode,
          waitMs: 1_000,
          requestId,
          owner: 'o',
          maxHoldMs: 0,
          lockDelayMs: 0,
        };
      }),
  );

/**
 * Most timer and release commands aim at a lock in use that has holders (or waiters, or
 * a lock-delay), and at one of them, so that they often match; the rest aim anywhere.
 */
const target = fc.record({ lock: lockName, ref: sessionRef, focus: fc.nat(3), k: fc.nat(9) });
type Target = { lock: string; ref: number; focus: number; k: number };

function aim(
  w: ModelWorld,
  t: Target,
  which: 'holders' | 'waiters',
): { lock: string; sessionId: number } {
  if (t.focus > 0) {
    const busy = w.m.locksInUse().filter((lock) => lock[which].length > 0);
    const lock = pick(busy, t.k);
    const people: readonly { sessionId: number }[] = lock === undefined ? [] : lock[which];
    const person = pick(people, t.ref);
    if (lock !== undefined && person !== undefined)
      return { lock: lock.name, sessionId: person.sessionId };
  }
  return { lock: t.lock, sessionId: resolveSession(w, t.ref) };
}

const release = fc.record({ target, token: tokenRef, requestId, who: asker }).map(
  ({ target, token, requestId, who }) =>
    new ApplyCommand('Release', { target, token, requestId, who }, (w) => {
      const { lock, sessionId } = aim(w, target, 'holders');
      return {
        type: 'Release',
        lock,
        sessionId: asSession(sessionId),
        token: asToken(resolveToken(w, lock, sessionId, token)),
        requestId,
        ...askerOf(w, sessionId, who),
      };
    }),
);

const cancelWait = fc.record({ target, requestId }).map(
  ({ target, requestId }) =>
    new ApplyCommand('CancelWait', { target, requestId }, (w) => {
      const { lock, sessionId } = aim(w, target, 'waiters');
      return { type: 'CancelWait', lock, sessionId: asSession(sessionId), requestId };
    }),
);

const waitExpired = fc.record({ target, exact: fc.nat(2), k: fc.nat(40) }).map(
  ({ target, exact, k }) =>
    new ApplyCommand('WaitExpired', { target, exact, k }, (w) => {
      const { lock, sessionId } = aim(w, target, 'waiters');
      const waiter = w.m.describe(lock).waiters.find((c) => c.sessionId === sessionId);
      const waiterIndex = exact > 0 && waiter !== undefined ? waiter.requestIndex : k;
      return {
        type: 'WaitExpired',
        lock,
        sessionId: asSession(sessionId),
        waiterIndex: asIndex(waiterIndex),
      };
    }),
);

const lockDelayEnded = fc
  .record({
    lock: lockName,
    which: fc.constantFrom('current', 'current', 'seen', 'bogus'),
    k: fc.nat(9),
  })
  .map(
    ({ lock: named, which, k }) =>
      new ApplyCommand('LockDelayEnded', { lock: named, which, k }, (w) => {
        const delayed = w.m.locksInUse().filter((candidate) => candidate.delays.length > 0);
        const lock = which === 'current' ? (pick(delayed, k)?.name ?? named) : named;
        const current = pick(w.m.describe(lock).delays, k)?.index;
        const seen = pick(w.delays.get(lock) ?? [], k);
        let delayIndex = BOGUS_INDEX;
        if (which === 'current') delayIndex = current ?? seen ?? BOGUS_INDEX;
        if (which === 'seen') delayIndex = seen ?? BOGUS_INDEX;
        return { type: 'LockDelayEnded', lock, delayIndex: asIndex(delayIndex) };
      }),
  );

/**
 * A holder's session runs out: the leader's expiry with the guard it timed, so that
 * shared holders expire one after another and their lock-delays pile up.
 */
const expireHolder = target.map(
  (target) =>
    new ApplyCommand('ExpireHolder', target, (w) => {
      const { sessionId } = aim(w, { ...target, focus: 1 }, 'holders');
      const session = w.m.findSession(sessionId);
      return {
        type: 'ExpireSession',
        sessionId: asSession(sessionId),
        lastRefreshIndex: asIndex(session?.lastRefreshIndex ?? BOGUS_INDEX),
      };
    }),
);

const maxHoldReached = fc.record({ target, token: tokenRef }).map(
  ({ target, token }) =>
    new ApplyCommand('MaxHoldReached', { target, token }, (w) => {
      const { lock, sessionId } = aim(w, target, 'holders');
      return {
        type: 'MaxHoldReached',
        lock,
        sessionId: asSession(sessionId),
        token: asToken(resolveToken(w, lock, sessionId, token)),
      };
    }),
);

/** A client retries one of its recent requests, word for word. */
const retry = fc.nat(7).map(
  (k) =>
    new ApplyCommand('Retry', { k }, (w) => {
      return (
        w.mutations.at(-1 - (k % Math.max(1, Math.min(8, w.mutations.length)))) ?? {
          type: 'OpenSession',
          ttlMs: 1_000,
          clientName: 'c',
          requestId: 'r0',
        }
      );
    }),
);

/**
 * The leader's Promote: mostly for a lock whose promotion is pending (as the timers
 * would), now and then for any lock, with the index of the entry before it.
 */
const promote = fc.record({ lock: lockName, focus: fc.nat(3), k: fc.nat(9) }).map(
  ({ lock: named, focus, k }) =>
    new ApplyCommand('Promote', { lock: named, focus, k }, (w) => {
      const pending = w.m.locksInUse().filter((lock) => w.m.headGrantable(lock));
      const lock = focus > 0 ? (pick(pending, k)?.name ?? named) : named;
      return { type: 'Promote', lock, afterIndex: asIndex(w.next - 1) };
    }),
);

/**
 * A client retries one of its earlier Acquires, however long ago: after its wait ended,
 * its grant was released, revoked or reached max-hold, or its session expired.
 */
const retryAcquire = fc.nat(40).map(
  (k) =>
    new ApplyCommand('RetryAcquire', { k }, (w) => {
      const acquires = w.mutations.filter((command) => command.type === 'Acquire');
      return (
        pick(acquires, k) ?? {
          type: 'OpenSession',
          ttlMs: 1_000,
          clientName: 'c',
          requestId: 'r0',
        }
      );
    }),
);

/**
 * The API withdraws an abandoned attempt of an earlier Acquire: mostly its latest
 * attempt (as the model remembers it), now and then an older one or another lock.
 */
const withdraw = fc
  .record({
    k: fc.nat(40),
    attempt: fc.constantFrom('latest', 'latest', 'latest', 'other'),
    lock: lockName,
  })
  .map(
    ({ k, attempt, lock: named }) =>
      new ApplyCommand('Withdraw', { k, attempt, lock: named }, (w) => {
        const acquires = w.mutations.filter((command) => command.type === 'Acquire');
        const target = pick(acquires, k);
        if (target === undefined || target.type !== 'Acquire') {
          return {
            type: 'Withdraw',
            lock: named,
            sessionId: asSession(resolveSession(w, k)),
            requestId: 'r0',
            attemptIndex: asIndex(k),
          };
        }
        const key = `Acquire/${target.sessionId}/${target.requestId}`;
        const latest = w.m.dedupe.find((entry) => entry.key === key)?.openAttempts.at(-1);
        return {
          type: 'Withdraw',
          lock: attempt === 'latest' ? target.lock : named,
          sessionId: target.sessionId,
          requestId: target.requestId,
          attemptIndex: asIndex(attempt === 'latest' ? (latest ?? k) : k),
        };
      }),
  );

const revoke = fc
  .record({ lock: lockName, reason: fc.constantFrom('operator', '') })
  .map((args) => new ApplyCommand('Revoke', args, () => ({ type: 'Revoke', ...args })));

/**
 * Rules that tighten or loosen the limits the other commands reach (lowering a limit
 * below what is in use too), a few invalid ones, and the bootstrap form (onlyIfUnset).
 */
const setRules = fc
  .record({
    lockDelayMs: fc.constantFrom(0, 50),
    waitersPerLockMax: fc.constantFrom(1, 2, 3),
    sessionsMax: fc.constantFrom(2, 4),
    locksMax: fc.constantFrom(1, 3),
    dedupeWindowMax: fc.constantFrom(1, 5),
    sessionTtlMsMin: fc.constantFrom(1_000, 2_000),
    broken: fc.constantFrom('no', 'no', 'no', 'zero', 'order', 'extra'),
    onlyIfUnset: fc.boolean(),
  })
  .map(({ broken, onlyIfUnset, ...overrides }) => {
    const rules: Record<string, number> = { ...BASE_LIMITS, ...overrides };
    if (broken === 'zero') rules.sessionsMax = 0;
    if (broken === 'order') rules.sessionTtlMsMin = BASE_LIMITS.sessionTtlMsMax + 1;
    if (broken === 'extra') rules.surplusMax = 1;
    const args = { rules: rules as unknown as LockLimits, onlyIfUnset };
    return new ApplyCommand('SetRules', { broken, ...args }, () => ({ type: 'SetRules', ...args }));
  });

/** A raise, now and then a repeat or a lowering (Stale), or a version that is none. */
const setBehaviour = fc
  .constantFrom(2, 2, 2, 1, 0, 1.5)
  .map(
    (version) =>
      new ApplyCommand('SetBehaviour', { version }, () => ({ type: 'SetBehaviour', version })),
  );

const commandArbitraries: fc.Arbitrary<fc.Command<ModelWorld, RealWorld>>[] = [
  setRules,
  setBehaviour,
  openSession,
  openSession,
  openSession,
  keepAlive,
  keepAlive,
  closeSession,
  expireSession,
  expireHolder,
  acquire,
  acquire,
  acquire,
  acquire,
  acquire,
  acquire,
  queueBehind,
  queueBehind,
  queueBehind,
  queueBehind,
  release,
  release,
  release,
  cancelWait,
  waitExpired,
  lockDelayEnded,
  maxHoldReached,
  promote,
  promote,
  promote,
  promote,
  promote,
  promote,
  promote,
  promote,

  revoke,
  retry,
  retry,
  retry,
  retryAcquire,
  retryAcquire,
  withdraw,
  withdraw,
  fc.integer({ min: 1, max: 3 }).map((gap) => new SkipCommand(gap)),
  fc.constant(null).map(() => new SnapshotRestoreCommand()),
  fc.constant(null).map(() => new ReplayCompareCommand()),
];

const limitsArb: fc.Arbitrary<LockLimits> = fc
  .record({ lockDelayMs: fc.constantFrom(0, 50), waitersPerLockMax: fc.constantFrom(1, 2, 3, 3) })
  .map((overrides) => ({ ...BASE_LIMITS, ...overrides }));

function lockProperty(factory: Factory) {
  return fc.property(
    limitsArb,
    fc.commands(commandArbitraries, { maxCommands: MAX_COMMANDS, size: 'max' }),
    (limits, commands) => {
      const setup = (): { model: ModelWorld; real: RealWorld } => {
        const world: { model: ModelWorld; real: RealWorld } = {
          model: {
            m: new LockModel(limits),
            next: 1,
            opened: [],
            refreshes: new Map(),
            tokens: new Map(),
            delays: new Map(),
            mutations: [],
          },
          real: {
            sut: factory(limits),
            make: () => factory(limits),
            log: [],
            queues: new Map(),
            holders: new Map(),
            lastGrant: new Map(),
            ended: new Set(),
          },
        };
        // Two sessions to start with, so that runs do not idle before their first open.
        for (const requestId of ['p0', 'p1']) {
          step(world.model, world.real, {
            type: 'OpenSession',
            ttlMs: 1_000,
            clientName: 'c',
            requestId,
          });
        }
        return world;
      };
      fc.modelRun(setup, commands);
    },
  );
}

// ------------------------------------------------------------------ injected bugs

/** (a) A grant to a second exclusive holder: every mode is compatible. */
class GrantsSecondExclusive extends LockStateMachine {
  protected override modesCompatible(): boolean {
    return true;
  }
}

/** (b) A promoted waiter's token is its request entry, not the entry that granted it. */
class TokenFromRequest extends LockStateMachine {
  protected override grantToken(requestIndex: LogIndex): FencingToken {
    return requestIndex as number as FencingToken;
  }
}

/** (c) An expiry applies even when a refresh came after the one it was timed from. */
class UnguardedExpiry extends LockStateMachine {
  protected override expiryGuardHolds(): boolean {
    return true;
  }
}

/** (d) Dedupe by request id is off: a retry runs again. */
class NoDedupe extends LockStateMachine {
  protected override rememberedResult(): RememberedResult | undefined {
    return undefined;
  }
}

/** (e) A new lock-delay replaces the one in force, so a short one cuts a long one short. */
class DelayOverwrites extends LockStateMachine {
  protected override placeDelay(delays: LockDelay[], delay: LockDelay): void {
    delays.splice(0, delays.length, delay);
  }
}

/** (f) One entry grants every compatible waiter, so two shared grants share a token. */
class ManyGrantsPerEntry extends LockStateMachine {
  protected override grantsPerEntryPerLockMax(): number {
    return Number.POSITIVE_INFINITY;
  }
}

/** (g) A retry is answered with its remembered result as it was, true or not. */
class VerbatimRetry extends LockStateMachine {
  protected override answerRetry(
    _command: LockCommand,
    _key: string,
    remembered: RememberedResult,
  ): LockResult {
    return remembered.result;
  }
}

const BUGS: readonly [string, Factory][] = [
  ['a grant to a second exclusive holder', (limits) => new GrantsSecondExclusive(limits)],
  ['a token taken from the waiter request entry', (limits) => new TokenFromRequest(limits)],
  ['an expiry applied without its guard', (limits) => new UnguardedExpiry(limits)],
  ['dedupe by request id turned off', (limits) => new NoDedupe(limits)],
  ['a lock-delay that replaces the one in force', (limits) => new DelayOverwrites(limits)],
  ['one entry granting several holders of a lock', (limits) => new ManyGrantsPerEntry(limits)],
  ['a retry told its remembered result verbatim', (limits) => new VerbatimRetry(limits)],
];

// ------------------------------------------------------------------ tests

describe('lock state machine against the reference model', () => {
  it(`agrees with the model and keeps every invariant (${NUM_RUNS} runs)`, () => {
    fc.assert(lockProperty((limits) => new LockStateMachine(limits)));
  });

  describe('catches each injected bug', () => {
    for (const [name, factory] of BUGS) {
      it(name, () => {
        const details = fc.check(lockProperty(factory), {
          seed: SEED,
          numRuns: NUM_RUNS,
          endOnFailure: true,
        });
        expect(details.failed).toBe(true);
        expect(details.numRuns).toBeLessThanOrEqual(NUM_RUNS);
      });
    }
  });
});
