import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Op } from '../../src/tools/jepsen/history.ts';
import type { RegisterDecision } from '../../src/tools/jepsen/register.ts';
import { runJepsen } from '../../src/tools/jepsen/run.ts';

/**
 * Teeth for the sets workload on a real cluster: a broken client library that tells its
 * caller a set was granted without asking the cluster (fakeSetGrantChance, a test-only
 * seam of the run), and releases it without asking either. The checkers must catch
 * every such grant, and nothing the honest calls did.
 */
describe('jepsen: a client told of sets the cluster never granted', () => {
  it('is caught by the log replay, and every violation names a pretended grant', {
    timeout: 90_000,
  }, async () => {
    const result = await runJepsen({
      seconds: 6,
      seed: 1717,
      clients: 1,
      locks: 1,
      workloads: ['sets'],
      nemeses: [],
      fakeSetGrantChance: 0.25,
    });
    // The run keeps its cluster's directory for a reader when it finds violations, as
    // this one must: the test has read what it needs from the result.
    rmSync(result.clusterDir, { recursive: true, force: true });
    // A pretended grant made no call: it carries no request id.
    const fakes = result.ops.filter(
      (op) => op.kind === 'acquire-all' && op.outcome === 'ok' && op.requestId === undefined,
    );
    const real = result.ops.filter(
      (op) => op.kind === 'acquire-all' && op.outcome === 'ok' && op.requestId !== undefined,
    );
    const tainted = taintedBy(fakes, result.ops);
    const violations = result.violations;
    console.log(
      `jepsen fake sets: ${fakes.length} pretended, ${real.length} real set grants; ${violations.length} violations (${[...new Set(violations.map((v) => v.check))].join(', ')})`,
    );
    expect(fakes.length).toBeGreaterThanOrEqual(3);
    expect(real.length).toBeGreaterThanOrEqual(3);
    // Every pretended grant is caught: the log carried no request of it.
    for (const fake of fakes) {
      expect(
        violations.some((v) => v.check === 'acknowledged-grant' && v.ops.includes(fake.id)),
        `#${fake.id}`,
      ).toBe(true);
    }
    // And nothing else is: every violation names an op the broken client made up, or is
    // an honest write the fenced register refused because it had accepted a made-up
    // token above it on that lock (that acceptance is a register-token violation).
    const refusedBecauseOfFake = refusalsAfterTaintedWrites(result.fenced.decisions, tainted);
    const untainted = violations.filter(
      (v) =>
        !v.ops.some((id) => tainted.has(id)) &&
        !(v.check === 'register-refusal' && v.ops.every((id) => refusedBecauseOfFake.has(id))),
    );
    expect(refusedBecauseOfFake.size).toBeLessThan(tainted.size);
    expect(untainted.map((v) => `[${v.check}] ${v.message}`)).toEqual([]);
  });
});

/**
 * The ops a pretended grant stands behind: the grant, its (pretended) release, and the
 * writes its client made under its token while it believed it held the set.
 */
function taintedBy(fakes: readonly Op[], ops: readonly Op[]): Set<number> {
  const tainted = new Set<number>();
  for (const fake of fakes) {
    tainted.add(fake.id);
    const release = ops.find(
      (op) =>
        op.kind === 'release' &&
        op.client === fake.client &&
        op.token === fake.token &&
        op.requestId === undefined &&
        op.invokeMs >= fake.invokeMs,
    );
    const untilMs = release?.invokeMs ?? Number.POSITIVE_INFINITY;
    if (release !== undefined) tainted.add(release.id);
    for (const op of ops) {
      if (
        op.kind === 'write' &&
        op.client === fake.client &&
        op.token === fake.token &&
        op.invokeMs >= fake.invokeMs &&
        op.invokeMs <= untilMs
      )
        tainted.add(op.id);
    }
  }
  return tainted;
}

/**
 * The writes (op ids) the register refused after it had accepted, on the same lock, a
 * tainted write with a higher token: refused because of the made-up grant.
 */
function refusalsAfterTaintedWrites(
  decisions: readonly RegisterDecision[],
  tainted: ReadonlySet<number>,
): Set<number> {
  const refused = new Set<number>();
  const highestTainted = new Map<string, bigint>();
  for (const decision of [...decisions].sort((a, b) => a.seq - b.seq)) {
    const token = BigInt(decision.token);
    const highest = highestTainted.get(decision.lock);
    if (!decision.accepted && highest !== undefined && highest > token)
      refused.add(Number(decision.writeId));
    if (decision.accepted && tainted.has(Number(decision.writeId)) && (highest ?? -1n) < token)
      highestTainted.set(decision.lock, token);
  }
  return refused;
}
