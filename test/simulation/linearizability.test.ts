import { describe, expect, it } from 'vitest';
import {
  RegisterHistory,
  type RegisterOp,
  registerViolation,
} from '../../src/tools/simulate/linearizability.ts';
import { Prng } from '../../src/util/prng.ts';

/**
 * The zone check must agree with the definition. The definition, searched
 * exhaustively (Wing & Gong): some order of the operations respects real time (an
 * operation that responded before another was invoked comes first), makes every read
 * return the latest write before it, includes every completed operation, and may
 * include or leave out each pending write.
 */
function linearizableBySearch(ops: readonly RegisterOp[]): boolean {
  const respondedAt = (op: RegisterOp): number => op.respondedAt ?? Number.POSITIVE_INFINITY;
  const search = (remaining: readonly RegisterOp[], value: string | null): boolean => {
    if (remaining.every((op) => op.respondedAt === null)) return true;
    for (const op of remaining) {
      // Nothing still to place may have responded before this one was invoked.
      if (remaining.some((other) => other !== op && respondedAt(other) < op.invokedAt)) continue;
      if (op.kind === 'read' && op.value !== value) continue;
      const rest = remaining.filter((other) => other !== op);
      if (search(rest, op.kind === 'write' ? op.value : value)) return true;
    }
    return false;
  };
  return search(ops, null);
}

function randomHistory(prng: Prng): RegisterOp[] {
  const writeCount = prng.intBetween(1, 3);
  const readCount = prng.intBetween(1, 4);
  const total = writeCount + readCount;
  const stamps = Array.from({ length: 2 * total }, (_, i) => i + 1);
  for (let i = stamps.length - 1; i > 0; i--) {
    const j = prng.intBetween(0, i);
    [stamps[i], stamps[j]] = [stamps[j] as number, stamps[i] as number];
  }
  const interval = (k: number): [number, number] => {
    const a = stamps[2 * k] as number;
    const b = stamps[2 * k + 1] as number;
    return a < b ? [a, b] : [b, a];
  };
  const ops: RegisterOp[] = [];
  const values: (string | null)[] = [null];
  for (let k = 0; k < writeCount; k++) {
    const [invokedAt, respondedAt] = interval(k);
    const value = `w${k}`;
    values.push(value);
    const pending = prng.chance(0.2);
    ops.push({
      kind: 'write',
      value,
      invokedAt,
      respondedAt: pending ? null : respondedAt,
      label: value,
    });
  }
  for (let k = writeCount; k < total; k++) {
    const [invokedAt, respondedAt] = interval(k);
    ops.push({ kind: 'read', value: prng.pick(values), invokedAt, respondedAt, label: `r${k}` });
  }
  return ops;
}

describe('the register linearizability check', () => {
  it('agrees with an exhaustive search on 20,000 small random histories', () => {
    const prng = new Prng(11);
    let linearizable = 0;
    for (let run = 0; run < 20_000; run++) {
      const ops = randomHistory(prng);
      const expected = linearizableBySearch(ops);
      const found = registerViolation(ops);
      if ((found === null) !== expected) {
        expect.fail(`history ${JSON.stringify(ops)}: search says ${expected}, check says ${found}`);
      }
      if (expected) linearizable++;
    }
    // Both outcomes are common, so the comparison means something either way.
    expect(linearizable).toBeGreaterThan(2_000);
    expect(linearizable).toBeLessThan(18_000);
  });

  it('reports a stale read: a read after a completed write returns the older value', () => {
    const history = new RegisterHistory();
    history.writeInvoked('a', 'write a');
    history.writeApplied('a');
    history.writeInvoked('b', 'write b');
    history.writeApplied('b');
    history.readInvoked('r1', 'read on n1');
    history.readReturned('r1', 'a', 'at 4');
    expect(() => history.check()).toThrow(/Linearizable register/);
  });

  it('accepts a read concurrent with a write returning either value', () => {
    for (const value of ['a', 'b']) {
      const history = new RegisterHistory();
      history.writeInvoked('a', 'write a');
      history.writeApplied('a');
      history.writeInvoked('b', 'write b');
      history.readInvoked('r1', 'read on n1');
      history.writeApplied('b');
      history.readReturned('r1', value, 'at 4');
      expect(() => history.check()).not.toThrow();
    }
  });

  it('reports a read of a value never written, or before its write began', () => {
    expect(
      registerViolation([{ kind: 'read', value: 'x', invokedAt: 1, respondedAt: 2, label: 'r' }]),
    ).toMatch(/never written/);
    expect(
      registerViolation([
        { kind: 'read', value: 'x', invokedAt: 1, respondedAt: 2, label: 'r' },
        { kind: 'write', value: 'x', invokedAt: 3, respondedAt: 4, label: 'w' },
      ]),
    ).toMatch(/before w was invoked/);
  });
});
