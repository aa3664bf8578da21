import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Op } from '../../src/tools/jepsen/history.ts';
import { checkLinearizable } from '../../src/tools/jepsen/linearizable.ts';

/**
 * The linearizability checker as the run uses it: on the run's own history (session
 * calls included), with its budget. Hand-made histories, ids in the order given.
 */
type Spec = Omit<Op, 'id' | 'lock' | 'completeMs'> & { lock?: string; completeMs?: number | null };

function history(...specs: Spec[]): Op[] {
  return specs.map((spec, id) => ({
    lock: '',
    completeMs: spec.outcome === 'info' ? null : spec.invokeMs + 5,
    ...spec,
    id,
  }));
}

const TTL_MS = 3_000;
const open = (session: string, atMs: number): Spec => ({
  client: `c-${session}`,
  session,
  kind: 'open-session',
  invokeMs: atMs,
  outcome: 'ok',
  ttlMs: TTL_MS,
});
const keepAlive = (session: string, atMs: number, outcome: Op['outcome'] = 'ok'): Spec => ({
  client: `c-${session}`,
  session,
  kind: 'keep-alive',
  invokeMs: atMs,
  outcome,
});
const close = (session: string, atMs: number): Spec => ({
  client: `c-${session}`,
  session,
  kind: 'close-session',
  invokeMs: atMs,
  outcome: 'ok',
});
const acquire = (
  session: string,
  lock: string,
  atMs: number,
  token: string | null,
  outcome: Op['outcome'] = 'ok',
): Spec => ({
  client: `c-${session}`,
  session,
  kind: 'acquire',
  lock,
  invokeMs: atMs,
  outcome,
  ...(token === null ? {} : { token }),
});
const release = (
  session: string,
  lock: string,
  atMs: number,
  token: string,
  outcome: Op['outcome'] = 'ok',
): Spec => ({
  client: `c-${session}`,
  session,
  kind: 'release',
  lock,
  invokeMs: atMs,
  outcome,
  token,
});

/** s1 holds L from 10 to 100 and keeps its lease alive; s2 takes L at 50 or at 200. */
function handOver(secondGrantMs: number, releaseOutcome: Op['outcome'] = 'ok'): Op[] {
  return history(
    open('s1', 0),
    open('s2', 1),
    acquire('s1', 'L', 10, '5'),
    keepAlive('s1', 40),
    release('s1', 'L', 100, '5', releaseOutcome),
    acquire('s2', 'L', secondGrantMs, '9'),
    release('s2', 'L', secondGrantMs + 20, '9'),
    close('s1', 300),
    close('s2', 310),
  );
}

describe('checkLinearizable (the run history, session calls included)', () => {
  it('passes hand-overs by release and reports each lock with its search time', () => {
    const ops = [
      ...handOver(200),
      ...history(open('s3', 400), acquire('s3', 'M', 410, '20'), release('s3', 'M', 420, '20')).map(
        (op) => ({ ...op, id: op.id + 100 }),
      ),
    ];
    const verdict = checkLinearizable(ops);
    expect(verdict.verdict).toBe('ok');
    expect(verdict.violations).toEqual([]);
    expect(verdict.locks.map((lock) => [lock.lock, lock.verdict])).toEqual([
      ['L', 'ok'],
      ['M', 'ok'],
    ]);
    for (const lock of verdict.locks) {
      expect(lock.searchMs).toBeGreaterThanOrEqual(0);
      expect(lock.statesExplored).toBeGreaterThan(0);
    }
    expect(verdict.checkMs).toBeGreaterThanOrEqual(0);
  });

  it('reports two overlapping exclusive holds as a violation naming both grants', () => {
    // s2 is granted L at 50, while s1 holds it (released at 100) on a lease refreshed
    // at 40: no expiry can come before 40 + 3 000 × 0.95.
    const ops = handOver(50);
    const verdict = checkLinearizable(ops);
    expect(verdict.verdict).toBe('violation');
    expect(verdict.violations).toHaveLength(1);
    const [violation] = verdict.violations;
    expect(violation?.check).toBe('linearizability');
    expect(violation?.message).toContain('no linearization of L');
    expect(violation?.ops).toEqual(expect.arrayContaining([2, 5]));
  });

  it('lets an unanswered release take effect, but not a refused one', () => {
    // Released at 100 or not, nobody knows: s2's grant at 200 is explained if it was.
    expect(checkLinearizable(handOver(200, 'info')).verdict).toBe('ok');
    // Certainly not released, and s1's lease is fresh: s2 cannot have been granted L.
    expect(checkLinearizable(handOver(200, 'fail')).verdict).toBe('violation');
  });

  it('lets a lease lapse only ttl × (1 − ε) after its last acknowledged keepalive began', () => {
    // s1 never releases; s2 is granted L 2 900 ms after s1's refresh at 40.
    const at = (grantMs: number, refresh: Op['outcome']): Op[] =>
      history(
        open('s1', 0),
        open('s2', 1),
        acquire('s1', 'L', 10, '5'),
        keepAlive('s1', 40, refresh),
        acquire('s2', 'L', grantMs, '9'),
      );
    expect(checkLinearizable(at(40 + 2_900, 'ok')).verdict).toBe('ok');
    // Answered at 2 865: lawful after the open's bound (2 850), not after the refresh's (2 890).
    expect(checkLinearizable(at(40 + 2_820, 'ok')).verdict).toBe('violation');
    // An unanswered keepalive is never counted as a refresh: the open at 0 bounds it.
    expect(checkLinearizable(at(40 + 2_820, 'info')).verdict).toBe('ok');
  });

  it('reports a lock whose search runs out of budget as unknown, naming it, never as valid', () => {
    // L needs a search; M is one grant. A budget of 4 model steps per lock fits M only.
    const ops = [
      ...handOver(200),
      ...history(open('s3', 400), acquire('s3', 'M', 410, '20')).map((op) => ({
        ...op,
        id: op.id + 100,
      })),
    ];
    const verdict = checkLinearizable(ops, {
      lockSearchMsMax: 60_000,
      statesPerLockMax: 4,
      clockDriftMax: 0.05,
    });
    expect(verdict.verdict).toBe('unknown');
    expect(verdict.unknownLocks).toEqual(['L']);
    expect(verdict.violations).toEqual([]);
    expect(verdict.locks.find((lock) => lock.lock === 'M')?.verdict).toBe('ok');
  });
});

/**
 * A real run's history with its session calls (`npm run jepsen -- --seconds 40 --nemesis
 * all`, seed 722157817: kills, pauses, client pauses, a partition, a clock fault; register
 * writes and nemesis events left out). Each release named below was acknowledged, and
 * its session never touched that lock again: told `fail` instead, the lock was never
 * given back, so the next grant needs the holder's lease to have ended first.
 */
describe('checkLinearizable on a real run with its session calls', () => {
  const ops = readFileSync(
    join(import.meta.dirname, 'fixtures', 'jepsen-lite-sessions-40s.jsonl'),
    'utf8',
  )
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Op);
  const refused = (id: number): Op[] =>
    ops.map((op) => (op.id === id ? { ...op, outcome: 'fail' as const } : op));
  const without = (history: Op[], kinds: readonly Op['kind'][]): Op[] =>
    history.filter((op) => !kinds.includes(op.kind));
  const SESSION_KINDS = ['open-session', 'keep-alive', 'close-session'] as const;

  it('finds it linearizable, with every lock decided', () => {
    const verdict = checkLinearizable(ops);
    expect(ops.filter((op) => op.kind === 'keep-alive' && op.outcome === 'ok').length).toBe(101);
    expect(verdict.verdict).toBe('ok');
    expect(verdict.locks.map((lock) => lock.lock)).toEqual(['jepsen/0', 'jepsen/1']);
  });

  it('catches a hold that ended too early only through the lease bound the session calls give', () => {
    for (const id of [86, 378, 611]) {
      const release = ops.find((op) => op.id === id);
      expect(release).toMatchObject({ kind: 'release', outcome: 'ok' });
      const verdict = checkLinearizable(refused(id));
      expect(verdict.verdict, `release #${id}`).toBe('violation');
      // The next grant's op and the holder's acquire are in the witness.
      expect(verdict.violations[0]?.ops.length).toBeGreaterThan(0);
      // Without the session calls, nothing bounds the holder's lease: an expiry explains it.
      expect(checkLinearizable(without(refused(id), SESSION_KINDS)).verdict).toBe('ok');
    }
  });

  it('needs the keepalives for some: the open alone bounds the lease too early', () => {
    expect(checkLinearizable(refused(591)).verdict).toBe('violation');
    expect(checkLinearizable(without(refused(591), ['keep-alive'])).verdict).toBe('ok');
  });
});
