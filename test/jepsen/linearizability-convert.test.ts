import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  checkLockHistory,
  explainCheck,
  fromJepsenLite,
  type JepsenLiteOp,
  type LinOp,
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
    // Two exclusive grants 100 ms apart with no release: fine while nothing says the
    // first session's lease was alive, a violation once its open is recorded.
    const lite: JepsenLiteOp[] = [
      {
        id: 0,
        client: 'c0',
        session: 's0',
        kind: 'acquire',
        lock: 'L',
        invokeMs: 10,
        completeMs: 20,
        outcome: 'ok',
        token: '5',
      },
      {
        id: 1,
        client: 'c1',
        session: 's1',
        kind: 'acquire',
        lock: 'L',
        invokeMs: 120,
        completeMs: 130,
        outcome: 'ok',
        token: '9',
      },
    ];
    const open: LinOp = {
      id: 2,
      type: 'openSession',
      client: 'c0',
      session: 's0',
      ttlMs: 3_000,
      invokeMs: 0,
      completeMs: 5,
      outcome: 'ok',
    };
    expect(checkLockHistory(fromJepsenLite(lite)).verdict).toBe('ok');
    // The close the converter adds after s0's last op could free it: still fine.
    expect(checkLockHistory(fromJepsenLite(lite, { sessionOps: [open] })).verdict).toBe('ok');
    const recorded = fromJepsenLite(lite, { sessionOps: [open], closeAfterLastOp: false });
    expect(checkLockHistory(recorded).verdict).toBe('violation');
    // An unanswered acquire keeps no completion time and no token.
    const unknown = fromJepsenLite([
      { ...(lite[0] as JepsenLiteOp), outcome: 'info', completeMs: null },
    ]);
    expect(unknown[0]).toMatchObject({ type: 'acquire', outcome: 'info', completeMs: null });
  });
});
