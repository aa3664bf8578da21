/**
 * Review of 36dfc7c (withFields = Object.assign instead of `{ ...x, key }` in the lock
 * machine: acquire's kind, the grant's requestIndex, kinds.ts' semaphore/election kind
 * and mode). The machine at 36dfc7c^ against 36dfc7c's, on seeded random logs at
 * behaviour versions 1, 3, 5 (1: no sets/semaphores; 5: everything). Each command is
 * applied as replicas see it (encodeEntry -> decodeEntry, msgpackr), and in the
 * "extra keys" runs an Acquire/AcquirePermits/Campaign also carries keys a forwarded
 * entry could (shape.ts allows extra keys): kind, mode, requestIndex, limit, permits,
 * lockSet, value, constructor, toString, valueOf, hasOwnProperty, __proto__ (msgpackr
 * renames it __proto_), quota. Results, events, snapshots and their msgpack bytes,
 * requestStatus/attemptsOf and validateFence compared after every entry.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeEntry, encodeEntry } from '../../src/node/entry-codec.ts';
import {
  extractLockSources,
  importLockStateMachine,
  LockMachineDiff,
  type Machine,
  type MachineClass,
} from '../support/lock-machine-diff.ts';

const PARENT = '36dfc7c^';
const RUNS = Number(process.env.DLM_WF_RUNS ?? 20);
const STEPS = Number(process.env.DLM_WF_STEPS ?? 300);
const dir = extractLockSources(PARENT, 'dlm-wf-parent-');

const EXTRA_KEYS: readonly (readonly [string, () => unknown])[] = [
  ['kind', () => 'semaphore'],
  ['kind', () => 'election'],
  ['kind', () => 'lock'],
  ['mode', () => 'shared'],
  ['mode', () => 'exclusive'],
  ['requestIndex', () => 1],
  ['limit', () => 3],
  ['permits', () => 2],
  ['lockSet', () => ['a', 'b']],
  ['value', () => 'zz'],
  ['constructor', () => 'c'],
  ['toString', () => 't'],
  ['valueOf', () => 7],
  ['hasOwnProperty', () => 'h'],
  ['__proto__', () => ({ kind: 'semaphore', requestIndex: 99 })],
  ['quota', () => ({ locksHeldMax: 1, waitersMax: 1 })],
];

class WithFieldsDiff extends LockMachineDiff {
  constructor(
    Old: MachineClass,
    seed: number,
    version: number,
    private readonly extras: boolean,
  ) {
    super(Old, seed, {
      names: ['a', 'b', 'c'],
      version: () => version,
      logTail: 40,
      showVersion: true,
    });
  }

  protected override drawPermits(): number {
    return 1 + this.int(2);
  }

  override next(): Machine {
    const command = super.next();
    if (!this.extras) return command;
    const t = command.type;
    if (t !== 'Acquire' && t !== 'AcquirePermits' && t !== 'Campaign' && t !== 'AcquireAll')
      return command;
    if (this.int(2) === 0) return command;
    const out: Record<string, unknown> = { ...command };
    for (let i = 0; i < 1 + this.int(3); i++) {
      const [key, value] = this.pick(EXTRA_KEYS);
      // defineProperty: an own `__proto__` key, as a decoder that kept it would give.
      Object.defineProperty(out, key, {
        value: value(),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }

  protected override applyBoth(command: Machine, proposalId: string) {
    // As every replica sees it: through the entry codec.
    const wire = decodeEntry(encodeEntry({ proposalId, command })).command;
    const wire2 = decodeEntry(encodeEntry({ proposalId, command })).command;
    return {
      ours: this.outcome(this.old, wire, proposalId),
      theirs: this.outcome(this.main, wire2, proposalId),
    };
  }
}

describe.skipIf(dir === null)('36dfc7c review: lock machine, withFields vs spread', () => {
  let Old: MachineClass;
  beforeAll(async () => {
    Old = await importLockStateMachine(dir as string);
  });

  for (const version of [1, 3, 5]) {
    for (const extras of [false, true]) {
      it(`agrees on ${RUNS} logs at version ${version}${extras ? ', extra keys' : ''}`, () => {
        let grants = 0;
        for (let seed = 1; seed <= RUNS; seed++) {
          const diff = new WithFieldsDiff(Old, 36_000 + seed * 7 + version, version, extras);
          const problem = diff.run(STEPS);
          expect(problem, `seed ${seed} at version ${version}`).toBeNull();
          grants += diff.log.filter((l) => l.includes('"Acquired"')).length;
        }
        console.log(`version ${version} extras ${extras}: Acquired results ${grants}`);
        expect(grants).toBeGreaterThan(0);
      });
    }
  }
});
