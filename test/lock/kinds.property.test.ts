/**
 * Model-based property test of semaphores and elections (issue 17): random interleavings
 * of AcquirePermits, Campaign, Proclaim, Release (a Resign, for an election), plain
 * Acquires of the same names, Promotes, wait expiries and session ends by a few sessions,
 * against the promise in kinds-model.ts. Snapshot/restore (through JSON) happens in the
 * middle of runs, and every run ends by replaying its log on a fresh machine, which must
 * give the same results and a byte-identical snapshot. Besides each answer and the
 * state, every step checks the safety promises directly: permits held within the limit,
 * at most one leader per election, and every new grant's token above every earlier one
 * of its name.
 *
 * Teeth: a machine that grants permits past the limit and one that seats two leaders,
 * each injected through a protected seam, must fail the same property (with the
 * machine's own invariant check off, so that the promise is what catches them), and
 * must trip checkInvariants when it is on.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_SEMAPHORES_ELECTIONS,
  type LockCommand,
  type LockResult,
  LockStateMachine,
} from '../../src/lock/index.ts';
import { AssertionError as MachineAssertionError } from '../../src/util/assert.ts';
import type { FencingToken, LogIndex, SessionId } from '../../src/util/ids.ts';
import { type Expected, KindPromise } from './kinds-model.ts';

const NUM_RUNS = Number(process.env.DLM_KINDS_RUNS ?? 1_000);
const SEED = Number(process.env.DLM_KINDS_SEED ?? 20_251_205);
const MAX_STEPS = 70;
const NAMES = ['p', 'q', 'r'] as const;
const LIMITS = [3, 4] as const;

type Factory = () => LockStateMachine;

interface Run {
  readonly promise: KindPromise;
  sut: LockStateMachine;
  readonly make: Factory;
  readonly checkOwn: boolean;
  index: number;
  requests: number;
  readonly opened: number[];
  readonly log: { command: LockCommand; result: string }[];
}

const action = fc.record({
  op: fc.integer({ min: 0, max: 13 }),
  a: fc.nat(),
  b: fc.nat(),
  c: fc.nat(),
  d: fc.nat(),
});

function pick<T>(items: readonly T[], k: number): T {
  return items[k % items.length] as T;
}

/** The command an action stands for, from the run's state (so tokens are mostly real). */
function commandOf(run: Run, act: Act): LockCommand {
  const { op, a, b, c, d } = act;
  const name = pick(NAMES, b);
  const session = (run.opened.length === 0 ? 1 : pick(run.opened, a)) as SessionId;
  const requestId = `r${++run.requests}`;
  const common = { lock: name, sessionId: session, requestId, owner: 'o', maxHoldMs: 0 };
  const waitMs = d % 4 === 0 ? 0 : 1_000;
  const holders = run.promise.names.get(name)?.holders ?? [];
  const held = holders.find((grant) => grant.session === session);
  const token = (
    c % 5 === 0 ? (held?.token ?? 0) + 1 : (held?.token ?? pick([1, 7], c))
  ) as FencingToken;
  switch (op) {
    case 0:
      return { type: 'OpenSession', ttlMs: 10_000, clientName: 'c', requestId };
    case 1:
      return { type: 'CloseSession', sessionId: session, requestId };
    case 2:
    case 3:
    case 4: {
      const limit = pick(LIMITS, c);
      return {
        type: 'AcquirePermits',
        ...common,
        permits: 1 + (d % limit),
        limit,
        waitMs,
        lockDelayMs: 0,
      };
    }
    case 5:
    case 6:
      return { type: 'Campaign', ...common, value: `v${c % 3}`, waitMs, lockDelayMs: 0 };
    case 7:
      return { type: 'Acquire', ...common, mode: 'exclusive', waitMs, lockDelayMs: 0 };
    case 8:
      return {
        type: 'Proclaim',
        lock: name,
        sessionId: session,
        token,
        value: `w${d % 3}`,
        requestId,
      };
    case 9:
    case 10:
      return { type: 'Release', lock: name, sessionId: session, token, requestId };
    case 11: {
      const waiter = run.promise.names.get(name)?.queue[0];
      return {
        type: 'WaitExpired',
        lock: name,
        sessionId: (waiter?.session ?? session) as SessionId,
        waiterIndex: (waiter?.index ?? 0) as LogIndex,
      };
    }
    default:
      return { type: 'Promote', lock: name, afterIndex: run.index as LogIndex };
  }
}

type Act = { op: number; a: number; b: number; c: number; d: number };

/** What the promise expects of `command`, applied to the model at the run's next index. */
function expect_(run: Run, command: LockCommand): Expected {
  const m = run.promise;
  switch (command.type) {
    case 'SetBehaviour':
      return { type: 'Other' };
    case 'OpenSession':
      return m.open();
    case 'CloseSession':
      return m.close(command.sessionId);
    case 'AcquirePermits':
      return m.acquire({
        kind: 'semaphore',
        name: command.lock,
        session: command.sessionId,
        requestId: command.requestId,
        waitMs: command.waitMs,
        limit: command.limit,
        permits: command.permits,
      });
    case 'Campaign':
      return m.acquire({
        kind: 'election',
        name: command.lock,
        session: command.sessionId,
        requestId: command.requestId,
        waitMs: command.waitMs,
        value: command.value,
      });
    case 'Acquire':
      return m.acquire({
        kind: 'lock',
        name: command.lock,
        session: command.sessionId,
        requestId: command.requestId,
        waitMs: command.waitMs,
      });
    case 'Proclaim':
      return m.proclaim(command.sessionId, command.lock, command.token, command.value);
    case 'Release':
      return m.release(command.sessionId, command.lock, command.token);
    case 'WaitExpired':
      return m.waitExpired(command.sessionId, command.lock, command.waiterIndex);
    case 'Promote':
      return m.promoteEntry(command.lock);
    default:
      throw new Error(`no promise for ${command.type}`);
  }
}

function agrees(expected: Expected, result: LockResult): boolean {
  switch (expected.type) {
    case 'Other':
      return result.type !== 'Rejected';
    case 'Acquired':
      return result.type === 'Acquired' && result.token === expected.token;
    case 'Queued':
      return result.type === 'Queued' && result.position === expected.position;
    case 'Rejected':
      return result.type === 'Rejected' && result.code === expected.code;
    case 'Promoted':
      return result.type === 'Promoted' && result.sessionId === expected.session;
    default:
      return result.type === expected.type;
  }
}

function step(run: Run, command: LockCommand): void {
  run.index += 1;
  run.promise.begin(run.index);
  const before = new Map(run.promise.lastToken);
  const expected = expect_(run, command);
  const { result } = run.sut.apply(run.index as LogIndex, command);
  run.log.push({ command, result: JSON.stringify(result) });
  if (command.type === 'OpenSession' && result.type === 'SessionOpened') {
    run.opened.push(result.sessionId);
  }
  if (run.checkOwn) run.sut.checkInvariants();
  if (!agrees(expected, result)) {
    throw new Error(
      `${JSON.stringify(command)} at ${run.index}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(result)}`,
    );
  }
  checkState(run, before);
}

/** The machine's names agree with the promise's, and the safety promises hold. */
function checkState(run: Run, tokensBefore: ReadonlyMap<string, number>): void {
  for (const name of NAMES) {
    const real = run.sut.describe(name);
    const model = run.promise.names.get(name);
    const holders = real.holders.map((h) => [h.sessionId, h.token, h.permits, h.value]);
    const wanted = (model?.holders ?? []).map((g) => [g.session, g.token, g.permits, g.value]);
    expect(holders).toEqual(wanted);
    expect(real.waiters.map((w) => w.sessionId)).toEqual(
      (model?.queue ?? []).map((place) => place.session),
    );
    expect(real.kind ?? (real.holders.length + real.waiters.length > 0 ? 'lock' : undefined)).toBe(
      model?.kind,
    );
    expect(run.sut.promotionPending(name)).toBe(run.promise.owesPromote(name));
    // Safety, from the machine's own answer alone.
    if (real.kind === 'semaphore') {
      const held = real.holders.reduce((sum, h) => sum + (h.permits ?? 0), 0);
      if (held > (real.limit ?? 0)) throw new Error(`${name}: ${held} permits over ${real.limit}`);
    }
    if (real.kind === 'election' && real.holders.length > 1) {
      throw new Error(`${name}: ${real.holders.length} leaders`);
    }
    const highest = tokensBefore.get(name) ?? 0;
    for (const holder of real.holders) {
      if (holder.token === run.index && holder.token <= highest) {
        throw new Error(`${name}: token ${holder.token} not above ${highest}`);
      }
    }
  }
}

function runOnce(make: Factory, checkOwn: boolean, acts: readonly Act[], cut: number): void {
  const run: Run = {
    promise: new KindPromise(),
    sut: make(),
    make,
    checkOwn,
    index: 0,
    requests: 0,
    opened: [],
    log: [],
  };
  step(run, { type: 'SetBehaviour', version: BEHAVIOUR_SEMAPHORES_ELECTIONS });
  for (let k = 0; k < 3; k++) step(run, commandOf(run, { op: 0, a: 0, b: 0, c: 0, d: 0 }));
  acts.forEach((act, k) => {
    if (k === cut) {
      const saved = JSON.parse(JSON.stringify(run.sut.snapshot()));
      run.sut = make();
      run.sut.restore(saved);
      expect(JSON.stringify(run.sut.snapshot())).toBe(JSON.stringify(saved));
    }
    step(run, commandOf(run, act));
  });
  // The log replays as it first ran, to a byte-identical state.
  const replay = make();
  run.log.forEach(({ command, result }, k) => {
    expect(JSON.stringify(replay.apply((k + 1) as LogIndex, command).result)).toBe(result);
  });
  expect(JSON.stringify(replay.snapshot())).toBe(JSON.stringify(run.sut.snapshot()));
}

function property(make: Factory, checkOwn: boolean): fc.IPropertyWithHooks<[Act[], number]> {
  return fc.property(
    fc.array(action, { minLength: 1, maxLength: MAX_STEPS }),
    fc.nat({ max: MAX_STEPS }),
    (acts, cut) => runOnce(make, checkOwn, acts, cut),
  );
}

class OverLimit extends LockStateMachine {
  protected override permitsFit(): boolean {
    return true;
  }
}

class TwoLeaders extends LockStateMachine {
  protected override leaderSeatFree(leaders: number): boolean {
    return leaders < 2;
  }
}

describe('semaphores and elections against the promise', () => {
  it(`holds over ${NUM_RUNS} random runs, with snapshot/restore and replay`, () => {
    fc.assert(
      property(() => new LockStateMachine(), true),
      { numRuns: NUM_RUNS, seed: SEED },
    );
  });

  for (const [name, make] of [
    ['a permit granted over the limit', () => new OverLimit()],
    ['two leaders of one election', () => new TwoLeaders()],
  ] as const) {
    it(`catches ${name} by the promise alone`, () => {
      const found = fc.check(property(make, false), { numRuns: NUM_RUNS, seed: SEED });
      expect(found.failed).toBe(true);
    });

    it(`catches ${name} by checkInvariants`, () => {
      const found = fc.check(property(make, true), { numRuns: NUM_RUNS, seed: SEED });
      expect(found.failed).toBe(true);
      expect(found.errorInstance).toBeInstanceOf(MachineAssertionError);
    });
  }
});
