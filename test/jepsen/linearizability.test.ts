import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type CheckOptions,
  checkLockHistory,
  explainCheck,
  type LinOp,
  type LockMode,
} from '../../src/tools/jepsen/index.ts';
import { bruteForceLinearizable } from './linearizability-brute.ts';
import {
  type Command,
  type CommandKind,
  generateRun,
  mutateLeaseStillLive,
  mutateOverlappingExclusive,
  mutateReleaseNotHeld,
  mutateTokenNotAbove,
  type RunShape,
} from './linearizability-gen.ts';

// --- small builders for hand-written histories -----------------------------------------

let nextId = 0;
type Span = [number, number | null];

function open(session: string, ttlMs: number, [from, to]: Span): LinOp {
  return {
    id: nextId++,
    type: 'openSession',
    client: session,
    session,
    ttlMs,
    invokeMs: from,
    completeMs: to,
    outcome: to === null ? 'info' : 'ok',
  };
}

function keepAlive(session: string, [from, to]: Span): LinOp {
  return {
    id: nextId++,
    type: 'keepAlive',
    client: session,
    session,
    invokeMs: from,
    completeMs: to,
    outcome: to === null ? 'info' : 'ok',
  };
}

function granted(
  session: string,
  lock: string,
  token: number,
  [from, to]: [number, number],
  mode: LockMode = 'exclusive',
): LinOp {
  return {
    id: nextId++,
    type: 'acquire',
    client: session,
    session,
    lock,
    mode,
    token,
    invokeMs: from,
    completeMs: to,
    outcome: 'ok',
  };
}

function acquireUnknown(session: string, lock: string, from: number): LinOp {
  return {
    id: nextId++,
    type: 'acquire',
    client: session,
    session,
    lock,
    mode: 'exclusive',
    invokeMs: from,
    completeMs: null,
    outcome: 'info',
  };
}

function refused(
  session: string,
  lock: string,
  failCode: 'busy' | 'sessionGone',
  [from, to]: [number, number],
): LinOp {
  return {
    id: nextId++,
    type: 'acquire',
    client: session,
    session,
    lock,
    mode: 'exclusive',
    failCode,
    invokeMs: from,
    completeMs: to,
    outcome: 'fail',
  };
}

function released(
  session: string,
  lock: string,
  token: number,
  [from, to]: [number, number],
): LinOp {
  return {
    id: nextId++,
    type: 'release',
    client: session,
    session,
    lock,
    token,
    invokeMs: from,
    completeMs: to,
    outcome: 'ok',
  };
}

function verdict(history: LinOp[], options: CheckOptions = {}): string {
  return checkLockHistory(history, options).verdict;
}

describe('linearizability checker: the lock model', () => {
  it('passes an empty history and a plain acquire-release-acquire', () => {
    expect(verdict([])).toBe('ok');
    expect(
      verdict([
        granted('a', 'L', 1, [0, 1]),
        released('a', 'L', 1, [2, 3]),
        granted('b', 'L', 2, [4, 5]),
      ]),
    ).toBe('ok');
  });

  it('fails two exclusive grants one after the other with no release and no known lease end… unless the lease could have ended', () => {
    const history = [
      open('a', 1_000, [0, 1]),
      granted('a', 'L', 1, [2, 3]),
      granted('b', 'L', 2, [10, 11]),
    ];
    expect(verdict(history)).toBe('violation');
    // The grant answered at 951 came after ttl × (1 − 0.05) = 950 from the open's call.
    const late = [
      open('a', 1_000, [0, 1]),
      granted('a', 'L', 1, [2, 3]),
      granted('b', 'L', 2, [940, 951]),
    ];
    expect(verdict(late)).toBe('ok');
    const early = [
      open('a', 1_000, [0, 1]),
      granted('a', 'L', 1, [2, 3]),
      granted('b', 'L', 2, [940, 949]),
    ];
    expect(verdict(early)).toBe('violation');
    expect(verdict(early, { clockDriftMax: 0.1 })).toBe('ok');
  });

  it('counts the bound from the last acknowledged refresh call, not an unanswered one', () => {
    const base = [open('a', 100, [0, 1]), granted('a', 'L', 1, [2, 3])];
    expect(verdict([...base, keepAlive('a', [50, 51]), granted('b', 'L', 2, [120, 130])])).toBe(
      'violation',
    );
    expect(verdict([...base, keepAlive('a', [50, null]), granted('b', 'L', 2, [120, 130])])).toBe(
      'ok',
    );
  });

  it('places the expiry before an op only if every op after it can still be answered later', () => {
    // b's grant needs a's lease gone (time ≥ 95); c's refusal-free grant answered at 90
    // must then come after b's, but its token is lower, so it cannot.
    const history = [
      open('a', 100, [0, 1]),
      granted('a', 'L', 1, [2, 3]),
      granted('b', 'L', 3, [50, 200]),
      released('b', 'L', 3, [50, 200]),
      granted('c', 'L', 2, [60, 90]),
    ];
    expect(verdict(history)).toBe('violation');
  });

  it('fails a token that does not go up, and an ok release of a lock not held', () => {
    expect(
      verdict([
        granted('a', 'L', 5, [0, 1]),
        released('a', 'L', 5, [2, 3]),
        granted('b', 'L', 5, [4, 5]),
      ]),
    ).toBe('violation');
    expect(
      verdict([
        granted('a', 'L', 5, [0, 1]),
        released('a', 'L', 5, [2, 3]),
        granted('b', 'L', 4, [4, 5]),
      ]),
    ).toBe('violation');
    expect(verdict([released('a', 'L', 5, [0, 1])])).toBe('violation');
    expect(verdict([granted('a', 'L', 5, [0, 1]), released('a', 'L', 4, [2, 3])])).toBe(
      'violation',
    );
  });

  it('lets shared holders share and keeps exclusive ones apart', () => {
    const shared = [granted('a', 'L', 1, [0, 1], 'shared'), granted('b', 'L', 2, [2, 3], 'shared')];
    expect(verdict([open('a', 1_000, [0, 0]), ...shared])).toBe('ok');
    const mixed = [
      granted('a', 'L', 1, [0, 1], 'shared'),
      granted('b', 'L', 2, [2, 3], 'exclusive'),
    ];
    expect(verdict([open('a', 1_000, [0, 0]), ...mixed])).toBe('violation');
  });

  it('never guesses an unknown outcome: an unanswered acquire may have happened, or not', () => {
    expect(verdict([acquireUnknown('a', 'L', 0), granted('b', 'L', 2, [5, 6])])).toBe('ok');
    // Only a's unanswered acquire can explain b being told the lock was busy.
    expect(verdict([acquireUnknown('a', 'L', 0), refused('b', 'L', 'busy', [5, 6])])).toBe('ok');
    expect(verdict([refused('b', 'L', 'busy', [5, 6])])).toBe('violation');
  });

  it('accepts a session found gone only once its lease could have ended', () => {
    const history = [open('a', 100, [0, 1]), granted('a', 'L', 1, [2, 3])];
    expect(verdict([...history, refused('a', 'L', 'sessionGone', [10, 20])])).toBe('violation');
    expect(verdict([...history, refused('a', 'L', 'sessionGone', [10, 96])])).toBe('ok');
  });

  it('reads a close refused because the session was unknown as the session having ended', () => {
    const closeRefused = (session: string, [from, to]: [number, number]): LinOp => ({
      id: nextId++,
      type: 'closeSession',
      client: session,
      session,
      failCode: 'sessionGone',
      invokeMs: from,
      completeMs: to,
      outcome: 'fail',
    });
    const history = [open('a', 100, [0, 1]), granted('a', 'L', 1, [2, 3])];
    // Not an early expiry: an earlier attempt of this close may have closed it.
    expect(verdict([...history, closeRefused('a', [10, 20])])).toBe('ok');
    // Ended by then: granted nothing after, though an acquire of it never answered.
    const after = [open('b', 100, [200, 201]), granted('b', 'L', 5, [202, 203])];
    expect(verdict([...history, closeRefused('a', [10, 96]), ...after])).toBe('ok');
    const lateGrant = granted('a', 'L', 7, [300, 301]);
    expect(verdict([...history, closeRefused('a', [10, 96]), lateGrant])).toBe('violation');
    const unknown = acquireUnknown('a', 'L', 5);
    const busy = refused('b', 'L', 'busy', [210, 220]);
    // Only the unanswered acquire of the ended session could explain b's refusal: it cannot.
    expect(verdict([open('b', 100, [200, 201]), unknown, closeRefused('a', [10, 96]), busy])).toBe(
      'violation',
    );
  });

  it('validates a token only while its grant is held', () => {
    const validate = (token: number, valid: boolean, [from, to]: [number, number]): LinOp => ({
      id: nextId++,
      type: 'validateFence',
      client: 'r',
      session: 'r',
      lock: 'L',
      token,
      valid,
      invokeMs: from,
      completeMs: to,
      outcome: 'ok',
    });
    const held = [open('a', 100, [0, 1]), granted('a', 'L', 7, [2, 3])];
    expect(verdict([...held, validate(7, true, [4, 5])])).toBe('ok');
    expect(verdict([...held, validate(6, true, [4, 5])])).toBe('violation');
    expect(verdict([...held, released('a', 'L', 7, [4, 5]), validate(7, true, [6, 7])])).toBe(
      'violation',
    );
    // Told invalid while a's lease cannot have ended; then once it could have.
    expect(verdict([...held, validate(7, false, [4, 5])])).toBe('violation');
    expect(verdict([...held, validate(7, false, [4, 96])])).toBe('ok');
    expect(verdict([...held, validate(7, false, [4, 96]), validate(7, true, [97, 98])])).toBe(
      'violation',
    );
  });

  it('counts an ok acquire as a refresh only when told to', () => {
    const history = [
      open('a', 100, [0, 1]),
      granted('a', 'L', 1, [50, 51]),
      granted('b', 'L', 2, [110, 120]),
    ];
    expect(verdict(history)).toBe('ok');
    expect(verdict(history, { acquireRefreshesLease: true })).toBe('violation');
  });

  it('reports unknown, never ok, when the budget runs out', () => {
    const history = [
      open('a', 1_000, [0, 1]),
      granted('a', 'L', 1, [2, 3]),
      granted('b', 'L', 2, [10, 11]),
    ];
    const result = checkLockHistory([granted('x', 'M', 1, [0, 100]), ...history], {
      statesPerLockMax: 1,
    });
    expect(result.verdict).toBe('unknown');
    expect(
      checkLockHistory([granted('x', 'M', 1, [0, 100]), granted('y', 'M', 2, [0, 100])], {
        statesPerLockMax: 1,
      }).verdict,
    ).toBe('unknown');
  });

  it('explains a violation with a small set of ops and the longest linearizable prefix', () => {
    const history = [
      open('a', 1_000, [0, 1]),
      granted('a', 'L', 1, [2, 3]),
      granted('c', 'M', 2, [2, 3]),
      released('c', 'M', 2, [4, 5]),
      granted('b', 'L', 3, [10, 11]),
      released('a', 'L', 1, [20, 21]),
    ];
    const result = checkLockHistory(history);
    expect(result.verdict).toBe('violation');
    const report = result.locks.find((r) => r.lock === 'L');
    expect(report?.verdict).toBe('violation');
    // a's grant and release, and b's grant; c used the other lock.
    const ids = (ops: readonly { id: number }[] | undefined) => ops?.map((op) => op.id).sort();
    expect(ids(report?.minimal)).toEqual(ids([history[1], history[4], history[5]] as LinOp[]));
    expect(ids(report?.longestPrefix)).toEqual(ids([history[1]] as LinOp[]));
    expect(ids(report?.nextCandidates)).toEqual(ids([history[4]] as LinOp[]));
    expect(explainCheck(result)).toContain('none of these fits next');
    expect(result.locks.find((r) => r.lock === 'M')?.verdict).toBe('ok');
    const text = explainCheck(result);
    expect(text).toContain('lock L: violation');
    expect(text).toContain('acquire L exclusive ok token=3');
  });
});

// --- generated histories ---------------------------------------------------------------

const commandArb: fc.Arbitrary<Command> = fc.record({
  kind: fc.constantFrom<CommandKind>(
    'open',
    'validate',
    'keepAlive',
    'keepAlive',
    'keepAlive',
    'acquire',
    'acquire',
    'acquire',
    'release',
    'release',
    'close',
    'idle',
  ),
  session: fc.nat(5),
  lock: fc.nat(1),
  shared: fc.boolean(),
  stepMs: fc.integer({ min: 0, max: 12 }),
  widenBeforeMs: fc.integer({ min: 0, max: 10 }),
  widenAfterMs: fc.integer({ min: 0, max: 10 }),
  unknown: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
  tokenGap: fc.nat(3),
});

function shapeArb(commandsMax: number): fc.Arbitrary<RunShape> {
  return fc.record({
    ttlMs: fc.array(fc.constantFrom(20, 40, 80, 200), { minLength: 2, maxLength: 4 }),
    commands: fc.array(commandArb, { maxLength: commandsMax, size: 'max' }),
  });
}

const PROPERTY_RUNS = Number(process.env.LIN_PROPERTY_RUNS ?? 400);

describe('linearizability checker: generated histories', () => {
  it('passes correct runs widened into concurrent histories, some answers lost', () => {
    fc.assert(
      fc.property(shapeArb(60), (shape) => {
        const run = generateRun(shape);
        const result = checkLockHistory(run.ops);
        if (result.verdict !== 'ok') throw new Error(explainCheck(result));
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  // [mutation, runs]: a lease mutation needs a hold that ended by expiry and a later
  // conflicting grant, which only some runs have, so it gets more runs.
  const mutations = {
    'a token not above an earlier grant': [mutateTokenNotAbove, PROPERTY_RUNS],
    'an ok release by a session that never held the lock': [mutateReleaseNotHeld, PROPERTY_RUNS],
    'two exclusive grants with no expiry window': [mutateOverlappingExclusive, PROPERTY_RUNS],
    "a grant while the holder's lease cannot have run out": [
      mutateLeaseStillLive,
      3 * PROPERTY_RUNS,
    ],
  } as const;
  for (const [name, [mutate, runs]] of Object.entries(mutations)) {
    it(`fails ${name}`, () => {
      let mutated = 0;
      fc.assert(
        fc.property(shapeArb(60), fc.nat(1_000), (shape, pick) => {
          const history = mutate(generateRun(shape), pick);
          if (history === null) return;
          mutated++;
          expect(checkLockHistory(history).verdict).toBe('violation');
        }),
        { numRuns: runs },
      );
      console.log(`mutation "${name}": ${mutated} of ${runs} runs mutated, all caught`);
      // The property must have bitten often enough to mean something.
      expect(mutated).toBeGreaterThan(PROPERTY_RUNS / 10);
    });
  }
});

// --- agreement with brute force --------------------------------------------------------

const spanArb = fc.record({
  from: fc.integer({ min: 0, max: 60 }),
  length: fc.integer({ min: 0, max: 40 }),
});

const smallOpArb: fc.Arbitrary<Omit<LinOp, 'id'>> = fc
  .record({
    type: fc.constantFrom(
      'openSession',
      'keepAlive',
      'closeSession',
      'acquire',
      'acquire',
      'acquire',
      'release',
      'release',
      'validateFence',
    ),
    session: fc.constantFrom('a', 'b', 'c'),
    lock: fc.constantFrom('L', 'M'),
    mode: fc.constantFrom<LockMode>('exclusive', 'exclusive', 'shared'),
    span: spanArb,
    outcome: fc.constantFrom('ok', 'ok', 'ok', 'fail', 'info'),
    token: fc.integer({ min: 1, max: 5 }),
    failCode: fc.constantFrom('busy', 'sessionGone', 'grantEnded', 'other'),
    ttlMs: fc.constantFrom(10, 30, 60),
  })
  .map((r) => {
    const common = {
      client: r.session,
      session: r.session,
      invokeMs: r.span.from,
      completeMs: r.outcome === 'info' ? null : r.span.from + r.span.length,
      outcome: r.outcome as 'ok' | 'fail' | 'info',
    };
    switch (r.type) {
      case 'openSession':
        return { ...common, type: 'openSession', ttlMs: r.ttlMs } as Omit<LinOp, 'id'>;
      case 'keepAlive':
        return { ...common, type: r.type } as Omit<LinOp, 'id'>;
      case 'closeSession':
        return {
          ...common,
          type: r.type,
          ...(r.outcome === 'fail' && (r.failCode === 'sessionGone' || r.failCode === 'other')
            ? { failCode: r.failCode }
            : {}),
        } as Omit<LinOp, 'id'>;
      case 'acquire':
        return {
          ...common,
          type: 'acquire',
          lock: r.lock,
          mode: r.mode,
          ...(r.outcome === 'ok' ? { token: r.token } : {}),
          ...(r.outcome === 'fail' ? { failCode: r.failCode } : {}),
        } as Omit<LinOp, 'id'>;
      case 'validateFence':
        return {
          ...common,
          type: 'validateFence',
          lock: r.lock,
          token: r.token,
          ...(r.outcome === 'ok' ? { valid: r.mode === 'shared' } : {}),
        } as Omit<LinOp, 'id'>;
      default:
        return { ...common, type: 'release', lock: r.lock, token: r.token } as Omit<LinOp, 'id'>;
    }
  });

const smallHistoryArb = fc
  .array(smallOpArb, { minLength: 1, maxLength: 7 })
  .map((ops) => ops.map((op, id) => ({ ...op, id }) as LinOp));

describe('linearizability checker: agreement with brute force', () => {
  it('agrees with trying every order on thousands of small histories', () => {
    const tally = { ok: 0, violation: 0 };
    fc.assert(
      fc.property(smallHistoryArb, (history) => {
        const expected = bruteForceLinearizable(history, 0.05) ? 'ok' : 'violation';
        expect(checkLockHistory(history, { minimise: false }).verdict).toBe(expected);
        tally[expected]++;
      }),
      { numRuns: 5_000 },
    );
    console.log(
      `brute-force agreement: 5000 histories (${tally.ok} ok, ${tally.violation} violations)`,
    );
    // Both answers must be common, or agreement would say little.
    expect(Math.min(tally.ok, tally.violation)).toBeGreaterThan(500);
  });

  it('agrees on small correct runs and their mutations too', () => {
    let cases = 0;
    fc.assert(
      fc.property(shapeArb(6), fc.nat(1_000), (shape, pick) => {
        const run = generateRun(shape);
        for (const history of [
          run.ops,
          mutateReleaseNotHeld(run, pick),
          mutateLeaseStillLive(run, pick),
        ]) {
          if (history === null || history.filter((op) => op.type !== 'openSession').length > 8)
            continue;
          cases++;
          const expected = bruteForceLinearizable(history, 0.05) ? 'ok' : 'violation';
          expect(checkLockHistory(history, { minimise: false }).verdict).toBe(expected);
        }
      }),
      { numRuns: 1_000 },
    );
    console.log(`brute-force agreement on generated runs and mutations: ${cases} histories`);
    expect(cases).toBeGreaterThan(1_000);
  });
});
