import { describe, expect, it } from 'vitest';
import { checkAll } from './checker.ts';
import { describeOp, type Op } from './history.ts';
import { faultWindows, runJepsen } from './run.ts';

/**
 * One short Jepsen-style run against real processes (kill -9 + restart, SIGSTOP/SIGCONT):
 * no checker may find a violation, and the run must not be vacuous.
 */
describe('jepsen: exclusive locks with fencing under kill -9 and SIGSTOP', () => {
  it('finds no violation in a 12 s run with seed 20261126', { timeout: 90_000 }, async () => {
    const result = await runJepsen({ seconds: 12, seed: 20261126, clients: 4, locks: 2 });
    const grants = result.ops.filter((op) => op.kind === 'acquire' && op.outcome === 'ok');
    const windows = faultWindows(result.nemesisEvents, result.endMs);
    const duringFault = grants.filter((op) =>
      windows.some((w) => (op.completeMs as number) >= w.from && (op.completeMs as number) < w.to),
    );
    const writes = result.ops.filter((op) => op.kind === 'write' && op.outcome === 'ok');
    const lostSessions = new Set(
      result.ops.filter((op) => op.lostAtMs !== undefined).map((op) => op.session),
    );
    console.log(
      `jepsen: ${result.ops.length} ops, ${grants.length} grants (${duringFault.length} during a fault), ${writes.length} writes, ${result.nemesisEvents.length} nemesis events, ${result.indeterminate} indeterminate overlaps, ${lostSessions.size} sessions lost`,
    );

    const report = result.violations.map((v) =>
      [`[${v.check}] ${v.message}`, ...v.ops.map((id) => result.ops[id])]
        .map((line) => (typeof line === 'string' ? line : line && describeOp(line)))
        .join('\n'),
    );
    expect(report).toEqual([]);
    expect(grants.length).toBeGreaterThan(30);
    expect(writes.length).toBeGreaterThan(30);
    expect(result.nemesisEvents.length).toBeGreaterThanOrEqual(3);
    expect(duringFault.length).toBeGreaterThanOrEqual(1);

    // Teeth on this real history: break it by hand and the checkers must notice.
    const [a, b] = consecutiveGrants(result.ops);
    const corrupt = result.ops
      .filter((op) => !(op.kind === 'release' && op.client === a.client && op.token === a.token))
      .map((op) => {
        const copy: Op = { ...op };
        if (op.id === a.id) delete copy.lostAtMs; // a now holds to the end of the run,
        if (op.id === b.id) copy.token = String(BigInt(a.token as string) - 1n); // b got an older token.
        return copy;
      });
    const caught = checkAll(corrupt, result.endMs).violations;
    expect(caught.some((v) => v.check === 'mutual-exclusion' && v.ops.includes(b.id))).toBe(true);
    expect(caught.some((v) => v.check === 'fencing' && v.ops.includes(b.id))).toBe(true);
  });
});

/** Two acknowledged grants of one lock to different clients, the second invoked after the first completed. */
function consecutiveGrants(ops: readonly Op[]): [Op, Op] {
  const grants = ops.filter((op) => op.kind === 'acquire' && op.outcome === 'ok');
  for (const b of grants) {
    const a = grants.find(
      (g) => g.lock === b.lock && g.client !== b.client && (g.completeMs as number) < b.invokeMs,
    );
    if (a !== undefined) return [a, b];
  }
  throw new Error('no two consecutive grants of one lock by different clients');
}
