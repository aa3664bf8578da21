/**
 * RefusalBudget (issue 15): per identity, writes in flight plus writes refused when
 * applied in the last window are bounded, so no tenant can fill the log with entries
 * that do nothing; another identity is not held to it.
 */
import { describe, expect, it } from 'vitest';
import { type Admission, RefusalBudget } from '../../src/api/auth/refusal-budget.ts';

class Clock {
  ms = 1_000;
  readonly now = (): number => this.ms;
}

const NEVER_EXEMPT = () => false;

function admitted(admission: Admission): (refused: boolean) => void {
  if (!admission.admitted) throw new Error(`turned away: ${admission.error.message}`);
  return admission.settle;
}

describe('RefusalBudget', () => {
  it('turns an identity away after max refusals in the window, naming the limit, until they age out', () => {
    const clock = new Clock();
    const budget = new RefusalBudget(3, 1_000, clock.now);
    for (let k = 0; k < 3; k++) admitted(budget.admit('bob', NEVER_EXEMPT))(true);
    const refused = budget.admit('bob', NEVER_EXEMPT);
    expect(refused).toMatchObject({ admitted: false, firstTurnedAway: true });
    if (refused.admitted) return;
    expect(refused.error.code).toBe('RESOURCE_EXHAUSTED');
    expect(refused.error.message).toContain('auth.refusedWritesPerIdentityMax (3)');
    expect(refused.error.message).toContain('"bob"');
    // The hint: when the oldest refusals leave the window (at most a tenth of it late).
    expect(refused.error.retryAfterMs).toBeGreaterThanOrEqual(1_000);
    expect(refused.error.retryAfterMs).toBeLessThanOrEqual(1_100);
    // Reported once per spell, not per call.
    expect(budget.admit('bob', NEVER_EXEMPT)).toMatchObject({ firstTurnedAway: false });
    // Another identity is not held to bob's refusals.
    admitted(budget.admit('alice', NEVER_EXEMPT))(false);
    clock.ms += 999;
    expect(budget.admit('bob', NEVER_EXEMPT).admitted).toBe(false);
    clock.ms += 101;
    admitted(budget.admit('bob', NEVER_EXEMPT))(false);
  });

  it('counts writes in flight, so a burst cannot overshoot; an accepted write gives its unit back', () => {
    const budget = new RefusalBudget(2, 1_000, new Clock().now);
    const first = admitted(budget.admit('bob', NEVER_EXEMPT));
    const second = admitted(budget.admit('bob', NEVER_EXEMPT));
    const third = budget.admit('bob', NEVER_EXEMPT);
    expect(third.admitted).toBe(false);
    // In flight only: plain backpressure (the usual hint), not worth a warning.
    expect(third).toMatchObject({ firstTurnedAway: false, error: { retryAfterMs: null } });
    first(false);
    first(true); // settling twice changes nothing
    expect(budget.spent('bob')).toBe(1);
    second(false);
    expect(budget.spent('bob')).toBe(0);
    expect(budget.size).toBe(0);
  });

  it('lets a write that keeps or gives back the identity’s own use a second share, no more', () => {
    const budget = new RefusalBudget(2, 1_000, new Clock().now);
    for (let k = 0; k < 2; k++) admitted(budget.admit('bob', NEVER_EXEMPT))(true);
    expect(budget.admit('bob', NEVER_EXEMPT).admitted).toBe(false);
    const exempt = () => true;
    admitted(budget.admit('bob', exempt))(false);
    expect(budget.spent('bob')).toBe(2);
    // Refused after all (its session ended before it applied): charged like any other.
    admitted(budget.admit('bob', exempt))(true);
    const inFlight = admitted(budget.admit('bob', exempt));
    // Twice max is the bound, whatever the caller judged.
    expect(budget.admit('bob', exempt).admitted).toBe(false);
    inFlight(false);
    expect(budget.spent('bob')).toBe(3);
  });

  it('charges a write that failed in doubt and was refused later', () => {
    const clock = new Clock();
    const budget = new RefusalBudget(1, 1_000, clock.now);
    admitted(budget.admit('bob', NEVER_EXEMPT))(false);
    budget.charge('bob');
    expect(budget.admit('bob', NEVER_EXEMPT).admitted).toBe(false);
  });

  it('forgets identities whose refusals left the window as others call', () => {
    const clock = new Clock();
    const budget = new RefusalBudget(5, 1_000, clock.now);
    for (const identity of ['a', 'b', 'c']) admitted(budget.admit(identity, NEVER_EXEMPT))(true);
    expect(budget.size).toBe(3);
    clock.ms += 2_000;
    for (let k = 0; k < 3; k++) admitted(budget.admit('d', NEVER_EXEMPT))(false);
    expect(budget.size).toBe(0);
  });
});
