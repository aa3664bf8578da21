/**
 * Review of issue 17's semaphores and elections (merge db5278c, e9bd982), the gate: "below
 * behaviour version 5 nothing may differ from the release before". A differential run
 * of main's state machine against 74f1785's (the commit before the change, extracted
 * with git archive) on random logs of plain-lock commands at versions 1 to 4: Acquire,
 * AcquireAll, Release, CancelWait, Withdraw, WaitExpired, LockDelayEnded, MaxHoldReached,
 * Promote, Revoke, session ends, exact retries, and the new command types (which must be
 * unknown alike). After every entry: the results and events, the snapshot (object and
 * msgpack bytes), requestStatus and attemptsOf of every acquire, and ValidateFence must
 * agree. HELD (passes on main). Skipped where 74f1785 is not in the repository.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  extractLockSources,
  importLockStateMachine,
  LockMachineDiff,
  type MachineClass,
} from '../support/lock-machine-diff.ts';

const BEFORE = '74f1785';
const RUNS = Number(process.env.DLM_GATE_DIFF_RUNS ?? 300);

const dir = extractLockSources(BEFORE, 'dlm-before-kinds-');

const NAMES = ['a', 'b', 'c'];

/** A log of plain-lock commands (and the new kinds, plainly drawn) at versions 1 to 4. */
function run(Old: MachineClass, seed: number, steps: number): string | null {
  return new LockMachineDiff(Old, seed, { names: NAMES, version: (int) => 1 + int(4) }).run(steps);
}

describe.skipIf(dir === null)('rev-kinds gate: below version 5 main applies as 74f1785 did', () => {
  let Old: MachineClass;
  beforeAll(async () => {
    Old = await importLockStateMachine(dir as string);
  });

  it(`agrees on ${RUNS} random logs at versions 1 to 4`, () => {
    for (let seed = 1; seed <= RUNS; seed++) {
      const problem = run(Old, seed, 120);
      expect(problem, `seed ${seed}`).toBeNull();
    }
  });
});
