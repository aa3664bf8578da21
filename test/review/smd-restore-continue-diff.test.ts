/**
 * Review of sm-diet (adversarial): where rev-sm-diet-diff is weak. Its twin is a second
 * machine beside the one compared; here the machine compared IS replaced, now and then,
 * by one restored from its own snapshot (in memory, as src/tools/simulate/replica.ts hands a
 * snapshot object over, or through the entry codec, as a follower installs one), and
 * goes on against 0a70385's machine, which never restored. So a restored record's shared
 * empty queue or delays, its copied waiters, the decoded attempt-proposal arrays kept as
 * they are and the shared words are all mutated by later entries. Wider than the diff:
 * five names, and after every entry the read views the runtime and API use (describe,
 * delaysOf, promotionPending, holdersOf, maxHoldOf, waiterCount, lockCount, listLocks)
 * besides results, events, snapshots and retries; invariants checked on every entry.
 * The snapshot captured before an entry must encode to the same bytes after it (the
 * snapshotter encodes in slices while entries apply). Skipped where 0a70385 is absent.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { LockStateMachine } from '../../src/lock/index.ts';
import { decodeLockSnapshot, encodeLockSnapshot } from '../../src/node/entry-codec.ts';
import {
  extractLockSources,
  importLockStateMachine,
  LockMachineDiff,
  type Machine,
  type MachineClass,
} from '../support/lock-machine-diff.ts';

const BEFORE = '0a70385';
const RUNS = Number(process.env.DLM_SMD_RUNS ?? 40);
const dir = extractLockSources(BEFORE, 'dlm-smd-before-');
const NAMES = ['a', 'b', 'c', 'd', 'lock-with-a-long-name-0123456789'];

class RestoreContinueDiff extends LockMachineDiff {
  private readonly raiseAt: number;
  private readonly raiseTo: number;
  /** A snapshot captured before the entry, and its bytes then. */
  private captured: { snapshot: unknown; hex: string } | null = null;

  constructor(Old: MachineClass, seed: number, steps: number, version: number) {
    super(Old, seed, { names: NAMES, version: () => version, logTail: 60, showVersion: true });
    this.raiseAt = this.int(steps);
    this.raiseTo = this.version + this.int(6 - this.version);
  }

  override next(): Machine {
    // One in six: withdraw an attempt that applied; one in ten: expire a session that
    // holds (a lock-delay on a lock that may be restored next).
    if (this.acquires.length > 0 && this.int(6) === 0) {
      const k = this.int(this.acquires.length);
      const c = this.acquires[k];
      const lock = c.type === 'AcquireAll' ? this.pick(c.locks as { lock: string }[]).lock : c.lock;
      const { sessionId, requestId } = c;
      return { type: 'Withdraw', lock, sessionId, requestId, attemptIndex: this.attempts[k] };
    }
    if (this.sessions.length > 0 && this.int(10) === 0) {
      const sid = this.pick(this.sessions);
      const lastRefreshIndex = this.old.session(sid)?.lastRefreshIndex ?? 0;
      return { type: 'ExpireSession', sessionId: sid, lastRefreshIndex };
    }
    return super.next();
  }

  protected override drawRequestId(): string {
    return this.pick([`r${this.int(8)}`, `request-id-long-enough-${this.int(4)}`]);
  }

  protected override drawPermits(): number {
    return 1 + this.int(2);
  }

  protected override drawProposalId(): string {
    return this.pick([`p${this.idx}`, `proposal-id-long-${this.idx}`, 'p1']);
  }

  protected override compareApplied(ours: unknown, theirs: unknown): string | null {
    const main = this.main as Machine;
    try {
      main.checkInvariants();
    } catch (error) {
      return this.same('invariants', 'hold', String(error));
    }
    const captured = this.captured;
    const stale =
      captured === null
        ? null
        : this.same(
            'snapshot captured before the entry, encoded after it',
            captured.hex,
            Buffer.from(encodeLockSnapshot(captured.snapshot as never)).toString('hex'),
          );
    return this.same('apply', ours, theirs) ?? stale ?? this.sameSnapshots() ?? this.sameViews();
  }

  private sameViews(): string | null {
    const [o, n] = [this.old, this.main];
    for (const name of [...NAMES, 'never-used']) {
      const found =
        this.same(`describe ${name}`, o.describe(name), n.describe(name)) ??
        this.same(`delaysOf ${name}`, o.delaysOf(name), n.delaysOf(name)) ??
        this.same(`promotionPending ${name}`, o.promotionPending(name), n.promotionPending(name)) ??
        this.same(`holdersOf ${name}`, o.holdersOf(name), n.holdersOf(name));
      if (found !== null) return found;
      for (const sid of this.sessions) {
        const hold = this.same(`maxHoldOf ${name}`, o.maxHoldOf(name, sid), n.maxHoldOf(name, sid));
        if (hold !== null) return hold;
        const waits = this.same(
          `isWaiting ${name}`,
          o.isWaiting(name, sid),
          n.isWaiting(name, sid),
        );
        if (waits !== null) return waits;
      }
    }
    return (
      this.same('waiterCount', o.waiterCount, n.waiterCount) ??
      this.same('lockCount', o.lockCount, n.lockCount) ??
      this.same('listLocks', o.listLocks('', 100), n.listLocks('', 100)) ??
      this.same('rememberedCount', o.rememberedCount, n.rememberedCount)
    );
  }

  // Now and then the branch's machine is replaced by one restored from its snapshot.
  protected override afterEntry(): void {
    const main = this.main as Machine;
    const snapshot = main.snapshot();
    this.captured = { snapshot, hex: Buffer.from(encodeLockSnapshot(snapshot)).toString('hex') };
    const draw = this.int(8);
    if (draw > 1) return;
    const restored = new LockStateMachine(this.limits);
    // In memory (the simulator's replicas) or through the codec (a follower).
    restored.restore(
      draw === 0 ? main.snapshot() : decodeLockSnapshot(encodeLockSnapshot(snapshot)),
    );
    (this as { main: Machine }).main = restored;
  }

  protected override beforeStep(k: number): string | null {
    if (k !== this.raiseAt || this.raiseTo <= this.version) return null;
    this.version = this.raiseTo;
    return this.apply({ type: 'SetBehaviour', version: this.version });
  }
}

describe.skipIf(dir === null)(
  'sm-diet review: a restored machine goes on as one that never restored',
  () => {
    let Old: MachineClass;
    beforeAll(async () => {
      Old = await importLockStateMachine(dir as string);
    });

    for (const version of [1, 3, 4, 5]) {
      it(`agrees on ${RUNS} logs from version ${version}, restored now and then, views included`, () => {
        for (let seed = 1; seed <= RUNS; seed++) {
          const problem = new RestoreContinueDiff(Old, 9000 + seed, 220, version).run(220);
          expect(problem, `seed ${9000 + seed} at version ${version}`).toBeNull();
        }
      });
    }
  },
);
