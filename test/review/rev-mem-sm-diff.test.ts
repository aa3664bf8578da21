/**
 * Review of mem12 (merge 294c14c), the lock state machine side: remembered results now
 * built by `rememberedOf` (one hidden class) and decoded commands given their own strings
 * (entry-codec's withOwnStrings). A differential run of main's state machine against
 * 4e75144's (the commit before the merge, extracted with git archive) on random logs
 * at every behaviour version (1 to 5, and raises in the middle of a log). Main's machine
 * is fed the commands through main's entry codec (encodeEntry -> decodeEntry, so the
 * string copying is on the path), the old one the command objects. After every entry:
 * results, snapshot object and msgpack bytes, requestStatus and attemptsOf must agree.
 * And at random points a twin of main's machine restored from main's snapshot (through
 * the snapshot codec) must go on giving the same answers and snapshots as the machine
 * that applied the whole log (restore changed in the merge: BEHAVIOUR_BASE instead of the
 * version in force). Skipped where 4e75144 is not in the repository.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { LockStateMachine } from '../../src/lock/index.ts';
import {
  decodeLockSnapshot,
  encodeLockSnapshot,
  encodeLockSnapshotInSlices,
} from '../../src/node/entry-codec.ts';
import { CodecTwinDiff } from '../support/codec-twin-diff.ts';
import {
  extractLockSources,
  importLockStateMachine,
  type Machine,
  type MachineClass,
} from '../support/lock-machine-diff.ts';

const BEFORE = '4e75144';
const RUNS = Number(process.env.DLM_MEM_DIFF_RUNS ?? 300);

const dir = extractLockSources(BEFORE, 'dlm-before-mem-');

function run(Old: MachineClass, seed: number, steps: number): string | null {
  return new CodecTwinDiff(Old, seed, steps, (int) => 1 + int(5)).run(steps);
}

describe.skipIf(dir === null)(
  'rev-mem: main applies, snapshots and restores as 4e75144 did',
  () => {
    let Old: MachineClass;
    beforeAll(async () => {
      Old = await importLockStateMachine(dir as string);
    });

    it(`agrees on ${RUNS} random logs at versions 1 to 5 (with raises), through the entry codec and restores`, () => {
      for (let seed = 1; seed <= RUNS; seed++) {
        const problem = run(Old, seed, 150);
        expect(problem, `seed ${seed}`).toBeNull();
      }
    });

    it('past OPEN_ATTEMPTS_MAX retries (attemptsDropped) main remembers, snapshots and restores as before', () => {
      for (const version of [1, 2, 3, 4, 5]) {
        const o: Machine = new Old({ dedupeWindowMax: 8 });
        const n: Machine = new LockStateMachine({ dedupeWindowMax: 8 });
        let i = 0;
        const both = (command: Machine) => {
          i++;
          const [x, y] = [
            o.apply(i, command, `proposal-${i}-long-id`),
            n.apply(i, command, `proposal-${i}-long-id`),
          ];
          expect(JSON.stringify(y), `v${version} at ${i}`).toBe(JSON.stringify(x));
          expect(Buffer.from(encodeLockSnapshot(n.snapshot())).toString('hex')).toBe(
            Buffer.from(encodeLockSnapshot(o.snapshot())).toString('hex'),
          );
          const twin: Machine = new LockStateMachine({ dedupeWindowMax: 8 });
          twin.restore(decodeLockSnapshot(encodeLockSnapshot(n.snapshot())));
          expect(Buffer.from(encodeLockSnapshot(twin.snapshot())).toString('hex')).toBe(
            Buffer.from(encodeLockSnapshot(n.snapshot())).toString('hex'),
          );
        };
        if (version > 1) both({ type: 'SetBehaviour', version });
        both({ type: 'OpenSession', ttlMs: 10000, clientName: 'c', requestId: 'o1' });
        const s1 = i;
        both({ type: 'OpenSession', ttlMs: 10000, clientName: 'c', requestId: 'o2' });
        const s2 = i;
        const acquire = (sessionId: number, waitMs: number) => ({
          type: 'Acquire',
          lock: 'a',
          sessionId,
          mode: 'exclusive',
          waitMs,
          requestId: 'a-request-id-long-enough',
          owner: 'o',
          maxHoldMs: 0,
          lockDelayMs: 0,
        });
        both(acquire(s1, 0));
        for (let k = 0; k < 20; k++) both(acquire(s2, 1000));
        // The probe reaches what it is about: an attempt dropped past the limit.
        expect(JSON.stringify(n.snapshot().dedupe)).toContain('attemptsDropped');
        both({
          type: 'Release',
          lock: 'a',
          sessionId: s1,
          token: 3 + (version > 1 ? 1 : 0),
          requestId: 'rel',
        });
        for (let k = 0; k < 3; k++) both(acquire(s2, 1000));
      }
    });

    it('the sliced snapshot encoding of main equals the one-piece encoding', async () => {
      const n: Machine = new LockStateMachine({ dedupeWindowMax: 50 });
      for (let i = 1; i <= 40; i++) {
        n.apply(
          i,
          {
            type: 'OpenSession',
            ttlMs: 10000,
            clientName: `client-${i}-long-name`,
            requestId: `o${i}`,
          },
          `p${i}`,
        );
      }
      const whole = encodeLockSnapshot(n.snapshot());
      const sliced = await encodeLockSnapshotInSlices(n.snapshot(), async () => {}, 3);
      expect(Buffer.from(sliced).toString('hex')).toBe(Buffer.from(whole).toString('hex'));
    });
  },
);
