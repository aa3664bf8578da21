import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  checkLockHistory,
  explainCheck,
  fromJepsenLite,
  type JepsenLiteOp,
} from '../../src/tools/jepsen/index.ts';

/**
 * The converter from test/jepsen/history.ts, on a history a real run wrote
 * (`npm run jepsen -- --seconds 20 --seed 11`: 3 real `dlm serve` processes, kill -9 and
 * SIGSTOP of nodes, 4 clients, 2 locks; 551 ops).
 */
function readFixture(name: string): JepsenLiteOp[] {
  const text = readFileSync(join(import.meta.dirname, 'fixtures', name), 'utf8');
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as JepsenLiteOp);
}

const realRun = readFixture('jepsen-lite-seed11.jsonl');

describe('fromJepsenLite', () => {
  it('keeps acquires and releases, drops register writes, closes each session after its last op', () => {
    const converted = fromJepsenLite(realRun);
    const lockOps = realRun.filter((op) => op.kind === 'acquire' || op.kind === 'release');
    const sessions = new Set(lockOps.map((op) => op.session));
    expect(converted.filter((op) => op.type === 'acquire' || op.type === 'release')).toHaveLength(
      lockOps.length,
    );
    const closes = converted.filter((op) => op.type === 'closeSession');
    expect(closes).toHaveLength(sessions.size);
    expect(closes.every((op) => op.outcome === 'info')).toBe(true);
    const busy = converted.filter((op) => op.type === 'acquire' && op.failCode === 'busy');
    const refusedWaits = realRun.filter((op) => op.error?.startsWith('LockNotAcquiredError'));
    expect(busy).toHaveLength(refusedWaits.length);
  });

  it('finds the real run linearizable, and a copy with one token lowered not', () => {
    const result = checkLockHistory(fromJepsenLite(realRun));
    console.log(
      `real run (seed 11): ${explainCheck(result)}; ${result.stats.ops} ops after conversion`,
    );
    expect(result.verdict).toBe('ok');

    // The last grant of a lock takes the token of the one before it.
    const grants = realRun.filter((op) => op.kind === 'acquire' && op.outcome === 'ok');
    const last = grants.at(-1) as JepsenLiteOp;
    const before = grants.filter((op) => op.lock === last.lock).at(-2) as JepsenLiteOp;
    const mutated = realRun.map((op) =>
      op.id === last.id ||
      (op.kind === 'release' && op.session === last.session && op.token === last.token)
        ? { ...op, token: before.token as string }
        : op,
    );
    const caught = checkLockHistory(fromJepsenLite(mutated));
    expect(caught.verdict).toBe('violation');
    expect(explainCheck(caught)).toContain(`token=${before.token}`);
  });

  it('finds a longer real run with unanswered acquires and releases linearizable', () => {
    // `--seconds 60 --seed 12 --clients 8 --locks 4`, register writes left out: 7 acquires
    // and 7 releases unanswered, 20 nemesis events.
    const longer = readFixture('jepsen-lite-seed12-60s.jsonl');
    const result = checkLockHistory(fromJepsenLite(longer));
    console.log(`real run (seed 12, 60 s): ${explainCheck(result)}`);
    expect(longer.filter((op) => op.outcome === 'info').length).toBe(14);
    expect(result.verdict).toBe('ok');
  });

  it('uses recorded session ops for the lease bound', () => {
    // Two exclusive grants with no release between them: lawful only once the first
    // session's lease may have ended, 3 s × (1 − 0.05) after its last acknowledged
    // refresh began. Without a recorded open nothing bounds that lease.
    const grant = (id: number, session: string, atMs: number, token: string): JepsenLiteOp => ({
      id,
      client: `c${session}`,
      session,
      kind: 'acquire',
      lock: 'L',
      invokeMs: atMs,
      completeMs: atMs + 10,
      outcome: 'ok',
      token,
    });
    const lite = [grant(0, 's0', 10, '5'), grant(1, 's1', 2_000, '9')];
    const open: JepsenLiteOp = {
      id: 2,
      client: 'cs0',
      session: 's0',
      kind: 'open-session',
      lock: '',
      invokeMs: 0,
      completeMs: 5,
      outcome: 'ok',
      ttlMs: 3_000,
    };
    const strict = { closeAfterLastOp: false };
    expect(checkLockHistory(fromJepsenLite(lite, strict)).verdict).toBe('ok');
    // The close the converter adds after s0's last op could free it: still fine.
    expect(checkLockHistory(fromJepsenLite([...lite, open])).verdict).toBe('ok');
    // Recorded, with no close made up: s0's lease cannot have ended by 2 010 ms.
    expect(checkLockHistory(fromJepsenLite([...lite, open], strict)).verdict).toBe('violation');
    // Its lease may end 2 850 ms after the open's call: a grant at 2.9 s is lawful...
    const later = [grant(0, 's0', 10, '5'), grant(1, 's1', 2_900, '9'), open];
    expect(checkLockHistory(fromJepsenLite(later, strict)).verdict).toBe('ok');
    // ...unless a keepalive acknowledged meanwhile refreshed it.
    const keepAlive: JepsenLiteOp = {
      ...open,
      id: 3,
      kind: 'keep-alive',
      invokeMs: 1_000,
      completeMs: 1_020,
    };
    delete (keepAlive as { ttlMs?: number }).ttlMs;
    expect(checkLockHistory(fromJepsenLite([...later, keepAlive], strict)).verdict).toBe(
      'violation',
    );
    // An unanswered keepalive may not have refreshed it: never guessed to have.
    const unanswered = { ...keepAlive, outcome: 'info' as const, completeMs: null };
    expect(checkLockHistory(fromJepsenLite([...later, unanswered], strict)).verdict).toBe('ok');
    // An unanswered acquire keeps no completion time and no token.
    const unknown = fromJepsenLite([
      { ...(lite[0] as JepsenLiteOp), outcome: 'info', completeMs: null },
    ]);
    expect(unknown[0]).toMatchObject({ type: 'acquire', outcome: 'info', completeMs: null });
  });

  it('converts the session calls the run records, and leaves out opens nobody learned of', () => {
    const common = { client: 'c0', lock: '', invokeMs: 1, completeMs: 2 };
    const converted = fromJepsenLite(
      [
        { ...common, id: 0, kind: 'open-session', session: 's0', outcome: 'ok', ttlMs: 3_000 },
        { ...common, id: 1, kind: 'open-session', outcome: 'info', completeMs: null },
        { ...common, id: 2, kind: 'keep-alive', session: 's0', outcome: 'fail' },
        { ...common, id: 3, kind: 'close-session', session: 's0', outcome: 'ok' },
      ],
      { closeAfterLastOp: false },
    );
    expect(converted.map((op) => [op.id, op.type, op.session, op.outcome])).toEqual([
      [0, 'openSession', 's0', 'ok'],
      [2, 'keepAlive', 's0', 'fail'],
      [3, 'closeSession', 's0', 'ok'],
    ]);
    expect(converted[0]).toMatchObject({ ttlMs: 3_000 });
  });

  it('reads a close refused with sessionNotFound as the session having ended, other refusals not', () => {
    const common = { client: 'c0', lock: '', invokeMs: 1, completeMs: 2, outcome: 'fail' as const };
    const converted = fromJepsenLite(
      [
        {
          ...common,
          id: 0,
          kind: 'close-session',
          session: 's0',
          // What errorText makes of the client library's error for NOT_FOUND.
          error:
            'sessionNotFound: Lock.CloseSession at 10.0.0.1:7100: NOT_FOUND: session 8 is unknown',
        },
        { ...common, id: 1, kind: 'close-session', session: 's1', error: 'UNAVAILABLE: no leader' },
      ],
      { closeAfterLastOp: false },
    );
    expect(converted.map((op) => (op.type === 'closeSession' ? op.failCode : null))).toEqual([
      'sessionGone',
      'other',
    ]);
  });
});
