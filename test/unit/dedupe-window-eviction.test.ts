/**
 * The dedupe window evicts its oldest result first, whatever was deleted, replaced,
 * re-added or cleared before (remembered.ts keeps one iterator across evictions rather
 * than asking a new one each time). Checked against a list kept in the order the window
 * promises: a new key at the end, a replaced one in its place, the first out once the
 * window is over its size. A window that evicts any other key breaks "a retry is never
 * applied twice" for the key it kept too long, and makes replicas differ if their
 * windows ever disagreed.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BEHAVIOUR_BASE } from '../../src/lock/behaviour.ts';
import { DEFAULT_LOCK_LIMITS } from '../../src/lock/limits.ts';
import { RememberedResults } from '../../src/lock/remembered.ts';
import type { LockResult } from '../../src/lock/types.ts';
import { logIndex } from '../../src/util/ids.ts';

type Step =
  | { readonly op: 'remember'; readonly key: number }
  | { readonly op: 'replace'; readonly key: number }
  | { readonly op: 'delete'; readonly key: number }
  | { readonly op: 'clear' };

const released = (key: number): LockResult => ({ type: 'Released', lock: `lock-${key}` });

function windowOf(windowMax: number): RememberedResults {
  let index = 0;
  const rules = { ...DEFAULT_LOCK_LIMITS, dedupeWindowMax: windowMax };
  return new RememberedResults({
    locks: new Map(),
    index: () => logIndex(++index),
    behaviour: () => BEHAVIOUR_BASE,
    rules: () => rules,
    attemptProposal: () => null,
    acquiredResult: () => released(-1),
    acquiredAll: () => released(-1),
    queuedAll: () => released(-1),
  });
}

/** What the window promises, kept the plain way: a list, oldest first. */
function modelAfter(steps: readonly Step[], windowMax: number): string[] {
  let keys: string[] = [];
  for (const step of steps) {
    if (step.op === 'clear') keys = [];
    else if (step.op === 'delete') keys = keys.filter((key) => key !== `k${step.key}`);
    else if (step.op === 'remember' && !keys.includes(`k${step.key}`)) {
      keys.push(`k${step.key}`);
      while (keys.length > windowMax) keys.shift();
    }
  }
  return keys;
}

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.nat(40).map((key) => ({ op: 'remember', key }) as const) },
  { weight: 2, arbitrary: fc.nat(40).map((key) => ({ op: 'replace', key }) as const) },
  { weight: 2, arbitrary: fc.nat(40).map((key) => ({ op: 'delete', key }) as const) },
  { weight: 1, arbitrary: fc.constant({ op: 'clear' } as const) },
);

describe('the dedupe window', () => {
  it('evicts its oldest result first after any mix of deletes, replacements, re-adds and clears', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.array(step, { maxLength: 300 }),
        (max, steps) => {
          const window = windowOf(max);
          for (const each of steps) {
            const key = each.op === 'clear' ? '' : `k${each.key}`;
            if (each.op === 'clear') window.clear();
            else if (each.op === 'delete') window.delete(key);
            else if (each.op === 'replace') {
              const found = window.get(key);
              if (found !== undefined) window.set(key, found);
            } else if (window.get(key) === undefined) window.remember(key, released(each.key));
          }
          expect([...window.entries()].map(([key]) => key)).toEqual(modelAfter(steps, max));
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('keeps evicting the oldest across many of V8 table rehashes', () => {
    // 3,000 past a window of 1,000, with every third key deleted early: the table is
    // rehashed many times under the kept iterator.
    const window = windowOf(1_000);
    const model: string[] = [];
    for (let n = 0; n < 4_000; n++) {
      window.remember(`k${n}`, released(n));
      model.push(`k${n}`);
      if (model.length > 1_000) model.shift();
      if (n % 3 === 0 && n >= 10) {
        window.delete(`k${n - 10}`);
        const at = model.indexOf(`k${n - 10}`);
        if (at >= 0) model.splice(at, 1);
      }
    }
    expect([...window.entries()].map(([key]) => key)).toEqual(model);
  });
});
