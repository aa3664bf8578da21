import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DlmClientError } from '../../src/client/index.ts';
import { errorText, grantEnded } from '../../src/tools/jepsen/history.ts';
import {
  checkLockHistory,
  explainCheck,
  fromJepsenLite,
  type JepsenLiteOp,
  type LinOp,
} from '../../src/tools/jepsen/index.ts';
import { bruteForceLinearizable } from './linearizability-brute.ts';
import {
  type Command,
  type CommandKind,
  endGrantsBeforeAnswer,
  generateRun,
} from './linearizability-gen.ts';

/**
 * An acquire answered grantEnded (FAILED_PRECONDITION): its request was granted, and the
 * grant had ended by the answer (lock/state-machine.ts withdraw(): a grant whose answer
 * could not be delivered is given back, and the retry is told so). Within the op's
 * interval its session held the lock for a while, refusing others; outside it, not.
 */

let nextId = 0;
type Span = [number, number];

function open(session: string): LinOp {
  const span = { invokeMs: 0, completeMs: 1 };
  return {
    id: nextId++,
    type: 'openSession',
    client: session,
    session,
    ttlMs: 10_000,
    ...span,
    outcome: 'ok',
  };
}

function acquire(session: string, outcome: 'ok' | 'fail', extra: object, [from, to]: Span): LinOp {
  return {
    id: nextId++,
    type: 'acquire',
    client: session,
    session,
    lock: 'L',
    mode: 'exclusive',
    invokeMs: from,
    completeMs: to,
    outcome,
    ...extra,
  } as LinOp;
}

const toldGrantEnded = (session: string, span: Span) =>
  acquire(session, 'fail', { failCode: 'grantEnded' }, span);
const refusedBusy = (session: string, span: Span) =>
  acquire(session, 'fail', { failCode: 'busy' }, span);
const granted = (session: string, token: number, span: Span) =>
  acquire(session, 'ok', { token }, span);

function released(session: string, token: number, [from, to]: Span): LinOp {
  return {
    id: nextId++,
    type: 'release',
    client: session,
    session,
    lock: 'L',
    token,
    invokeMs: from,
    completeMs: to,
    outcome: 'ok',
  };
}

/** Every session's lease lasts ≥ 9.5 s: nothing in these histories can expire. */
const sessions = () => [open('a'), open('b'), open('c')];

function verdict(history: LinOp[]): string {
  const result = checkLockHistory(history);
  const brute = bruteForceLinearizable(history, 0.05) ? 'ok' : 'violation';
  expect(result.verdict, explainCheck(result)).toBe(brute);
  return result.verdict;
}

describe('linearizability checker: an acquire answered grantEnded', () => {
  it("explains others' busy refusals within its interval (the seed-779330080 shape)", () => {
    // a's first attempt was granted, its answer lost, the grant withdrawn; b and c were
    // refused as busy by that grant meanwhile; a's retry was told grantEnded at 300.
    const refusals = [
      refusedBusy('b', [20, 30]),
      refusedBusy('c', [40, 50]),
      refusedBusy('b', [60, 70]),
    ];
    expect(verdict([...sessions(), toldGrantEnded('a', [10, 300]), ...refusals])).toBe('ok');
    // Read as "not granted" (how it was read before), nothing explains the refusals.
    const notGranted = acquire('a', 'fail', { failCode: 'other' }, [10, 300]);
    expect(verdict([...sessions(), notGranted, ...refusals])).toBe('violation');
    // And nobody else may hold the lock after its end: a grant to b at 310 is fine.
    const after = [granted('b', 7, [310, 320]), released('b', 7, [330, 340])];
    expect(verdict([...sessions(), toldGrantEnded('a', [10, 300]), ...refusals, ...after])).toBe(
      'ok',
    );
  });

  it('explains no busy refusal outside its interval', () => {
    const ended = toldGrantEnded('a', [10, 300]);
    expect(verdict([...sessions(), ended, refusedBusy('b', [310, 320])])).toBe('violation');
    expect(verdict([...sessions(), refusedBusy('b', [0, 5]), ended])).toBe('violation');
    // Touching its interval is concurrent with it.
    expect(verdict([...sessions(), ended, refusedBusy('b', [300, 320])])).toBe('ok');
  });

  it('holds one interval: never while another holds the lock', () => {
    // c is refused before b's grant and after b's release: only a's hold can explain
    // both, and it would have to span b's whole grant.
    const ended = toldGrantEnded('a', [10, 300]);
    const before = refusedBusy('c', [20, 30]);
    const bHeld = [granted('b', 5, [40, 50]), released('b', 5, [60, 70])];
    const after = refusedBusy('c', [80, 90]);
    expect(verdict([...sessions(), ended, before, ...bHeld, after])).toBe('violation');
    expect(verdict([...sessions(), ended, before, ...bHeld])).toBe('ok');
    expect(verdict([...sessions(), ended, ...bHeld, after])).toBe('ok');
    expect(verdict([...sessions(), ended, before, after])).toBe('ok');
  });

  it('was granted: a holder that can neither release nor expire before its answer is a violation', () => {
    const bHolds = granted('b', 5, [0, 5]);
    expect(verdict([...sessions(), bHolds, toldGrantEnded('a', [10, 300])])).toBe('violation');
    const bReleases = released('b', 5, [100, 110]);
    expect(verdict([...sessions(), bHolds, toldGrantEnded('a', [10, 300]), bReleases])).toBe('ok');
    // Its session was alive when it was granted: a close answered before it began is not.
    const close: LinOp = {
      id: nextId++,
      type: 'closeSession',
      client: 'a',
      session: 'a',
      invokeMs: 2,
      completeMs: 3,
      outcome: 'ok',
    };
    expect(verdict([...sessions(), close, toldGrantEnded('a', [10, 300])])).toBe('violation');
  });

  it('is read from the error the Jepsen run records', () => {
    // What connection.ts makes of the server's answer, and what run.ts records for it.
    const error = new DlmClientError(
      'Lock.Acquire at 127.0.0.1:1: FAILED_PRECONDITION: the grant of L made for request r1 (token 12) has ended: it was released, revoked or reached its max hold',
      grpc.status.FAILED_PRECONDITION,
      'grantEnded',
      null,
      null,
    );
    expect(error.decisive).toBe(true);
    expect(grantEnded(error)).toBe(true);
    expect(
      grantEnded(
        new DlmClientError('x', grpc.status.FAILED_PRECONDITION, 'staleToken', null, null),
      ),
    ).toBe(false);
    const lite = (
      id: number,
      client: string,
      outcome: 'fail' | 'ok',
      e: string,
      [from, to]: Span,
    ): JepsenLiteOp => ({
      id,
      client,
      session: client,
      kind: 'acquire',
      lock: 'L',
      invokeMs: from,
      completeMs: to,
      outcome,
      error: e,
    });
    const history = [
      lite(0, 'a', 'fail', errorText(error), [10, 300]),
      lite(1, 'b', 'fail', 'LockNotAcquiredError: L was not acquired: held by a#0', [20, 30]),
    ];
    const converted = fromJepsenLite(history, { closeAfterLastOp: false });
    expect(converted[0]).toMatchObject({
      outcome: 'fail',
      failCode: 'grantEnded',
      completeMs: 300,
    });
    expect(checkLockHistory(converted).verdict).toBe('ok');
    // Told "not acquired" instead (the bug fixed in 865128a), b's refusal is unexplained.
    const lie = {
      ...history[0],
      error: 'LockNotAcquiredError: L was not acquired: held by nobody',
    };
    const caught = fromJepsenLite([lie as JepsenLiteOp, history[1] as JepsenLiteOp], {
      closeAfterLastOp: false,
    });
    expect(checkLockHistory(caught).verdict).toBe('violation');
  });
});

// --- generated histories ---------------------------------------------------------------

const commandArb: fc.Arbitrary<Command> = fc.record({
  kind: fc.constantFrom<CommandKind>(
    'open',
    'validate',
    'keepAlive',
    'acquire',
    'acquire',
    'acquire',
    'release',
    'release',
    'release',
    'close',
    'idle',
  ),
  session: fc.nat(2),
  lock: fc.nat(1),
  shared: fc.boolean(),
  stepMs: fc.integer({ min: 0, max: 12 }),
  widenBeforeMs: fc.integer({ min: 0, max: 10 }),
  widenAfterMs: fc.integer({ min: 0, max: 10 }),
  unknown: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
  tokenGap: fc.nat(3),
});

function shapeArb(commandsMax: number) {
  return fc.record({
    ttlMs: fc.array(fc.constantFrom(20, 40, 80, 200), { minLength: 2, maxLength: 4 }),
    commands: fc.array(commandArb, { maxLength: commandsMax, size: 'max' }),
  });
}

const PROPERTY_RUNS = Number(process.env.LIN_PROPERTY_RUNS ?? 400);

describe('linearizability checker: generated histories with grantEnded answers', () => {
  it('passes correct runs in which some released grants were told grantEnded instead', () => {
    let rewritten = 0;
    fc.assert(
      fc.property(shapeArb(60), fc.nat(1), (shape, pick) => {
        const history = endGrantsBeforeAnswer(generateRun(shape), pick);
        if (history === null) return;
        rewritten++;
        const result = checkLockHistory(history);
        if (result.verdict !== 'ok') throw new Error(explainCheck(result));
      }),
      { numRuns: PROPERTY_RUNS },
    );
    console.log(`grantEnded rewrites: ${rewritten} of ${PROPERTY_RUNS} runs rewritten, all ok`);
    expect(rewritten).toBeGreaterThan(PROPERTY_RUNS / 4);
  });

  it('agrees with brute force on small ones, and on them with a refusal added', () => {
    const tally = { ok: 0, violation: 0 };
    fc.assert(
      fc.property(shapeArb(8), fc.nat(1), fc.nat(100), (shape, pick, atMs) => {
        const history = endGrantsBeforeAnswer(generateRun(shape), pick);
        if (history === null) return;
        // A busy refusal of a fresh session somewhere: explained only by a hold then.
        const ended = history.find((op) => op.type === 'acquire' && op.failCode === 'grantEnded');
        const lock = ended?.type === 'acquire' ? ended.lock : 'L0';
        const refusal: LinOp = {
          id: history.length + 1_000,
          type: 'acquire',
          client: 'z',
          session: 'z',
          lock,
          mode: 'exclusive',
          failCode: 'busy',
          invokeMs: atMs,
          completeMs: atMs + 2,
          outcome: 'fail',
        };
        for (const candidate of [history, [...history, refusal]]) {
          if (candidate.filter((op) => op.type !== 'openSession').length > 8) continue;
          const expected = bruteForceLinearizable(candidate, 0.05) ? 'ok' : 'violation';
          expect(checkLockHistory(candidate, { minimise: false }).verdict).toBe(expected);
          tally[expected]++;
        }
      }),
      { numRuns: 8_000 },
    );
    console.log(`grantEnded brute-force agreement: ${tally.ok} ok, ${tally.violation} violations`);
    expect(Math.min(tally.ok, tally.violation)).toBeGreaterThan(200);
  });
});
