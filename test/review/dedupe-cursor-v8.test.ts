/**
 * Review of b994481 at the window's level, where V8's table is rehashed and shrunk under
 * the kept iterator: RememberedResults at b994481 against its parent's (keys().next()),
 * driven alike through phases that grow the window past many rehashes with no eviction
 * (raised dedupeWindowMax), delete most keys (Map shrinks), delete the very key the
 * iterator would yield next, re-add deleted and evicted keys, replace in place, clear
 * mid-table then load, and windows of 1. Keys compared in order after every phase, and
 * the key order checked after every single step in the smaller runs.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { BEHAVIOUR_BASE } from '../../src/lock/behaviour.ts';
import { DEFAULT_LOCK_LIMITS } from '../../src/lock/limits.ts';
import { RememberedResults } from '../../src/lock/remembered.ts';
import type { LockResult } from '../../src/lock/types.ts';
import { logIndex } from '../../src/util/ids.ts';
import { extractLockSources, rng } from '../support/lock-machine-diff.ts';

const dir = extractLockSources('b994481^', 'dlm-dcv-parent-');
// biome-ignore lint/suspicious/noExplicitAny: the parent's build of the class
type Any = any;

const released = (key: string): LockResult => ({ type: 'Released', lock: key });

function host(rules: { max: number }) {
  let index = 0;
  return {
    locks: new Map(),
    index: () => logIndex(++index),
    behaviour: () => BEHAVIOUR_BASE,
    rules: () => ({ ...DEFAULT_LOCK_LIMITS, dedupeWindowMax: rules.max }),
    attemptProposal: () => null,
    acquiredResult: () => released('-'),
    acquiredAll: () => released('-'),
    queuedAll: () => released('-'),
  };
}

class Pair {
  readonly rules = { max: 1 };
  readonly ours: RememberedResults;
  readonly theirs: Any;
  readonly keys = new Set<string>();
  constructor(Old: Any, max: number) {
    this.rules.max = max;
    this.ours = new RememberedResults(host(this.rules));
    this.theirs = new Old(host(this.rules));
  }
  remember(key: string) {
    if (this.ours.get(key) !== undefined) return; // the machine answers a retry instead
    this.ours.remember(key, released(key));
    this.theirs.remember(key, released(key));
  }
  delete(key: string) {
    this.ours.delete(key);
    this.theirs.delete(key);
  }
  replace(key: string) {
    const found = this.ours.get(key);
    if (found === undefined) return;
    this.ours.set(key, found);
    this.theirs.set(key, this.theirs.get(key));
  }
  restore() {
    const saved = [...this.ours.entries()].map(([k, v]) => [k, JSON.parse(JSON.stringify(v))]);
    this.ours.clear();
    this.theirs.clear();
    this.ours.load(saved as never);
    this.theirs.load(saved);
  }
  /** SetRules: never below the size (the machine refuses that). */
  setMax(max: number) {
    this.rules.max = Math.max(max, this.ours.size, 1);
  }
  order(): [string[], string[]] {
    return [
      [...this.ours.entries()].map(([k]) => k),
      [...(this.theirs.entries() as Iterable<[string, unknown]>)].map(([k]) => k),
    ];
  }
}

describe.skipIf(dir === null)('b994481 review: kept iterator through V8 rehashes', () => {
  let Old: Any;
  beforeAll(async () => {
    Old = (await import(`${dir}/src/lock/remembered.ts`)).RememberedResults;
  });

  it('random phases over large windows agree with keys().next() eviction', () => {
    let checks = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const r = rng(seed * 7919);
      const int = (n: number) => Math.floor(r() * n);
      let fresh = 0;
      const live: string[] = [];
      const max0 = [1, 2, 7, 64, 1000, 5000][int(6)] as number;
      const p = new Pair(Old, max0);
      const newKey = () => `k${seed}-${fresh++}`;
      for (let phase = 0; phase < 40; phase++) {
        const size = p.ours.size;
        switch (int(10)) {
          case 0: // grow with no eviction past many rehashes
            p.setMax(size + 1 + int(3000));
            for (let n = int(3000); n > 0; n--) p.remember(newKey());
            break;
          case 1: {
            // delete most of it: the table shrinks under the iterator
            const keys = p.order()[0];
            for (const k of keys) if (r() < 0.9) p.delete(k);
            break;
          }
          case 2: {
            // delete the oldest few (the keys the iterator would yield next)
            const keys = p.order()[0];
            for (const k of keys.slice(0, 1 + int(5))) p.delete(k);
            break;
          }
          case 3: // clear mid-table, then load
            p.restore();
            break;
          case 4: // lower the window to its size, then churn: one eviction per write
            p.setMax(size);
            for (let n = int(4000); n > 0; n--) p.remember(newKey());
            break;
          case 5: {
            // re-add keys seen before (evicted or deleted ones go to the end)
            for (let n = int(500); n > 0; n--) p.remember(`k${seed}-${int(Math.max(1, fresh))}`);
            break;
          }
          case 6: {
            const keys = p.order()[0];
            for (let n = int(50); n > 0 && keys.length > 0; n--)
              p.replace(keys[int(keys.length)] as string);
            break;
          }
          case 7: // interleaved delete + remember at the front, window tiny
            p.setMax(1 + int(3));
            for (let n = int(300); n > 0; n--) {
              const keys = p.order()[0];
              if (keys.length > 0 && r() < 0.4) p.delete(keys[int(keys.length)] as string);
              else p.remember(r() < 0.3 ? `k${seed}-${int(Math.max(1, fresh))}` : newKey());
              const [a, b] = p.order();
              expect(a).toEqual(b);
              checks += 1;
            }
            break;
          case 8: {
            // empty it by deletes (not clear), then write again
            for (const k of p.order()[0]) p.delete(k);
            for (let n = int(20); n > 0; n--) p.remember(newKey());
            break;
          }
          default: {
            // mixed churn at the current size
            for (let n = int(2000); n > 0; n--) {
              const x = r();
              if (x < 0.6) p.remember(newKey());
              else if (x < 0.8) {
                const keys = live.length > 0 ? live : p.order()[0];
                if (keys.length > 0) p.delete(keys[int(keys.length)] as string);
              } else p.remember(`k${seed}-${int(Math.max(1, fresh))}`);
            }
          }
        }
        const [a, b] = p.order();
        expect(a, `seed ${seed} phase ${phase}`).toEqual(b);
        checks += 1;
      }
    }
    console.log(`order checks: ${checks}`);
  });
});
