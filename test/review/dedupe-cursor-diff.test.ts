/**
 * Review of b994481 (the dedupe window's eviction through one kept iterator): the
 * machine at b994481 against its parent's (eviction by window.keys().next()), on seeded
 * random logs with small windows (so nearly every remembered write evicts), SetRules
 * that raise and lower dedupeWindowMax (within what is remembered), Withdraws of real
 * attempts (which delete or rewrite remembered keys), retries of earlier acquires
 * (re-adding keys once evicted or deleted), and the b994481 machine replaced now and then
 * by one restored from its own snapshot (clear + load). Results, snapshots and their
 * bytes, requestStatus/attemptsOf of every acquire and fences compared after every entry.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LOCK_LIMITS, LOCK_LIMIT_NAMES, LockStateMachine } from '../../src/lock/index.ts';
import { decodeLockSnapshot, encodeLockSnapshot } from '../../src/node/entry-codec.ts';
import {
  extractLockSources,
  importLockStateMachine,
  LockMachineDiff,
  type Machine,
  type MachineClass,
} from '../support/lock-machine-diff.ts';

const PARENT = 'b994481^';
const RUNS = Number(process.env.DLM_DCD_RUNS ?? 30);
const STEPS = Number(process.env.DLM_DCD_STEPS ?? 300);
const dir = extractLockSources(PARENT, 'dlm-dcd-parent-');
const NAMES = ['a', 'b', 'c', 'd'];

function rulesWith(windowMax: number): Record<string, number> {
  const rules: Record<string, number> = {};
  for (const name of LOCK_LIMIT_NAMES) rules[name] = (DEFAULT_LOCK_LIMITS as never)[name];
  return { ...rules, waitersPerLockMax: 4, dedupeWindowMax: windowMax };
}

export class CursorDiff extends LockMachineDiff {
  restores = 0;
  rulesSet = 0;
  evictions = 0;
  private lastCount = 0;

  constructor(
    Old: MachineClass,
    seed: number,
    version: number,
    private readonly restoreOdds: number,
  ) {
    super(Old, seed, { names: NAMES, version: () => version, logTail: 80, showVersion: true });
  }

  override next(): Machine {
    const draw = this.int(20);
    // Withdraw a real attempt (deletes the key, or rewrites it in place).
    if (draw < 3 && this.acquires.length > 0) {
      const k = this.int(this.acquires.length);
      const c = this.acquires[k];
      const lock = c.type === 'AcquireAll' ? this.pick(c.locks as { lock: string }[]).lock : c.lock;
      return {
        type: 'Withdraw',
        lock,
        sessionId: c.sessionId,
        requestId: c.requestId,
        attemptIndex: this.attempts[k],
      };
    }
    // Retry an earlier acquire (re-adds a key once it left the window).
    if (draw < 6 && this.acquires.length > 0) return this.pick(this.acquires);
    // Change the window's size, up or down (down to what is remembered, or refused).
    if (draw === 6) {
      const size = this.old.rememberedCount as number;
      const max = this.pick([size, size, size + 1, size + 2, 1 + this.int(10), 40]);
      return { type: 'SetRules', rules: rulesWith(Math.max(1, max)), onlyIfUnset: false };
    }
    return super.next();
  }

  protected override drawRequestId(): string {
    return `r${this.int(30)}`;
  }

  protected override compareApplied(ours: unknown, theirs: unknown): string | null {
    try {
      (this.main as Machine).checkInvariants();
    } catch (error) {
      return this.same('invariants', 'hold', String(error));
    }
    const count = this.old.rememberedCount as number;
    if ((ours as Machine)?.result?.type === 'RulesSet') this.rulesSet += 1;
    if (count <= this.lastCount) this.evictions += 1;
    this.lastCount = count;
    return (
      this.same('apply', ours, theirs) ??
      this.sameSnapshots() ??
      this.same('rememberedCount', this.old.rememberedCount, this.main.rememberedCount)
    );
  }

  protected override afterEntry(): void {
    if (this.int(this.restoreOdds) !== 0) return;
    const main = this.main as Machine;
    const snapshot = main.snapshot();
    const restored = this.int(2) === 0 ? main : new LockStateMachine(this.limits);
    // In place (clear + load on the same machine, same window), fresh, or via the codec.
    restored.restore(
      this.int(2) === 0 ? snapshot : decodeLockSnapshot(encodeLockSnapshot(snapshot)),
    );
    (this as { main: Machine }).main = restored;
    this.restores += 1;
  }
}

describe.skipIf(dir === null)(
  'b994481 review: the kept eviction iterator against keys().next()',
  () => {
    let Old: MachineClass;
    beforeAll(async () => {
      Old = await importLockStateMachine(dir as string);
    });

    for (const version of [1, 3, 5]) {
      for (const restoreOdds of [4, 40, 1_000_000]) {
        it(`agrees on ${RUNS} logs at version ${version}, restore odds 1/${restoreOdds}`, () => {
          let restores = 0;
          let rulesSet = 0;
          let evictions = 0;
          for (let seed = 1; seed <= RUNS; seed++) {
            const diff = new CursorDiff(Old, 77_000 + seed * 13 + version, version, restoreOdds);
            const problem = diff.run(STEPS);
            expect(problem, `seed ${seed} at version ${version}`).toBeNull();
            restores += diff.restores;
            rulesSet += diff.rulesSet;
            evictions += diff.evictions;
          }
          console.log(
            `version ${version} odds ${restoreOdds}: restores ${restores}, RulesSet ${rulesSet}, steps without growth ${evictions}`,
          );
        });
      }
    }
  },
);
