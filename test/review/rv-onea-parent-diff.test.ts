/**
 * Adversarial review of 6de4f7f (OneAttempt, literal restored grants and Acquireds),
 * differential against its parent 5c8f426 (so any difference is this commit's).
 * Wider than rev-mem-sm-diff / smd-restore-continue-diff where OneAttempt is concerned:
 *  - every acquire kind (Acquire, AcquireAll, AcquirePermits, Campaign) is retried, and
 *    any attempt (a retry's included) is withdrawn, so records go 1 -> n -> 1 attempts
 *    in every order;
 *  - proposal ids include null (no proposal), '' and a shared 'p1';
 *  - after an entry, either machine may be replaced by one restored from the OTHER's
 *    snapshot bytes (rolling upgrade and downgrade), or main by one restored in memory,
 *    through JSON (the simulator), through plainLockSnapshot, or through the codec;
 *  - every snapshot main took is encoded again at the end of the run, in slices of 1..3
 *    (encodeLockSnapshotInParts, as the snapshotter does while entries apply), and must
 *    equal the parent's bytes at the time it was taken.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { LockStateMachine, plainLockSnapshot } from '../../src/lock/index.ts';
import {
  decodeLockSnapshot,
  encodeLockSnapshot,
  encodeLockSnapshotInSlices,
} from '../../src/node/entry-codec.ts';
import {
  extractLockSources,
  importLockStateMachine,
  LockMachineDiff,
  type Machine,
  type MachineClass,
} from '../support/lock-machine-diff.ts';

const PARENT = '5c8f426';
const RUNS = Number(process.env.RV_ONEA_RUNS ?? 30);
const STEPS = Number(process.env.RV_ONEA_STEPS ?? 200);
const dir = extractLockSources(PARENT, 'rv-onea-parent-');
const NAMES = ['a', 'b', 'c', 'lock-with-a-long-name-0123456789'];

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

interface Attempt {
  readonly command: Machine;
  readonly index: number;
}

class ParentDiff extends LockMachineDiff {
  private readonly Old: MachineClass;
  readonly attemptsMade: Attempt[] = [];
  readonly kinds: Machine[] = [];
  readonly proposalIds = new Set<string>();
  /** Every snapshot main took, with the parent's bytes at that moment. */
  readonly taken: { snapshot: unknown; hex: string; at: number }[] = [];
  private readonly raiseAt: number;
  private readonly raiseTo: number;

  constructor(Old: MachineClass, seed: number, version: number, steps: number) {
    super(Old, seed, { names: NAMES, version: () => version, logTail: 40, showVersion: true });
    this.Old = Old;
    this.raiseAt = this.int(steps);
    this.raiseTo = this.version + this.int(6 - this.version);
  }

  protected override drawRequestId(): string {
    return this.pick(['r0', 'r1', 'r2', `r${this.int(6)}`, 'request-id-long-enough-0']);
  }

  protected override drawPermits(): number {
    return 1 + this.int(2);
  }

  protected override drawCampaignValue(): string {
    return this.pick(['v', 'a-longer-campaign-value']);
  }

  protected override drawProposalId(): string {
    return this.pick([`p${this.idx}`, `proposal-id-long-${this.idx}`, 'p1', '', null]) as string;
  }

  override next(): Machine {
    const draw = this.int(12);
    if (this.attemptsMade.length > 0 && draw < 3) {
      const { command, index } = this.pick(this.attemptsMade);
      const lock =
        command.type === 'AcquireAll'
          ? this.pick(command.locks as { lock: string }[]).lock
          : command.lock;
      const { sessionId, requestId } = command;
      return { type: 'Withdraw', lock, sessionId, requestId, attemptIndex: index };
    }
    if (this.kinds.length > 0 && draw < 6) return this.pick(this.kinds);
    return super.next();
  }

  override apply(command: Machine): string | null {
    const problem = super.apply(command);
    if (problem !== null) return problem;
    const kinds = ['Acquire', 'AcquireAll', 'AcquirePermits', 'Campaign'];
    if (kinds.includes(command.type)) {
      this.attemptsMade.push({ command, index: this.idx });
      if (!this.kinds.includes(command)) this.kinds.push(command);
    }
    return null;
  }

  protected override compareApplied(ours: unknown, theirs: unknown): string | null {
    const main = this.main as Machine;
    try {
      main.checkInvariants();
    } catch (error) {
      return this.same('invariants', 'hold', String(error));
    }
    const found = super.compareApplied(ours, theirs);
    if (found !== null) return found;
    this.taken.push({
      snapshot: main.snapshot(),
      hex: hex(encodeLockSnapshot(this.old.snapshot())),
      at: this.idx,
    });
    for (const c of this.kinds) {
      const status = this.same('requestStatus', this.old.requestStatus(c), main.requestStatus(c));
      if (status !== null) return status;
      for (const p of [...this.proposalIds, '', 'p1']) {
        const of = this.same(`attemptsOf ${p}`, this.old.attemptsOf(c, p), main.attemptsOf(c, p));
        if (of !== null) return of;
      }
    }
    return null;
  }

  protected override applyBoth(command: Machine, proposalId: string) {
    if (typeof proposalId === 'string') this.proposalIds.add(proposalId);
    return super.applyBoth(command, proposalId);
  }

  protected override afterEntry(): void {
    const draw = this.int(14);
    if (draw > 5) return;
    const main = this.main as Machine;
    if (draw === 5) {
      // The parent binary installs the branch's snapshot (a downgrade, or an old follower).
      const old: Machine = new this.Old(this.limits);
      old.restore(decodeLockSnapshot(encodeLockSnapshot(main.snapshot())));
      (this as { old: Machine }).old = old;
      return;
    }
    const restored = new LockStateMachine(this.limits);
    const from =
      draw === 0
        ? main.snapshot()
        : draw === 1
          ? JSON.parse(JSON.stringify(main.snapshot()))
          : draw === 2
            ? plainLockSnapshot(main.snapshot())
            : draw === 3
              ? decodeLockSnapshot(encodeLockSnapshot(main.snapshot()))
              : decodeLockSnapshot(encodeLockSnapshot(this.old.snapshot()));
    restored.restore(from);
    (this as { main: Machine }).main = restored;
  }

  protected override beforeStep(k: number): string | null {
    if (k !== this.raiseAt || this.raiseTo <= this.version) return null;
    this.version = this.raiseTo;
    return this.apply({ type: 'SetBehaviour', version: this.version });
  }
}

describe.skipIf(dir === null)('rv-onea: 6de4f7f against its parent', () => {
  let Old: MachineClass;
  beforeAll(async () => {
    Old = await importLockStateMachine(dir as string);
  });

  for (const version of [1, 2, 3, 4, 5]) {
    it(`agrees on ${RUNS} logs from version ${version}; snapshots re-encoded in slices later`, async () => {
      for (let seed = 1; seed <= RUNS; seed++) {
        const run = new ParentDiff(Old, 77_000 + seed * 7 + version, version, STEPS);
        const problem = run.run(STEPS);
        expect(problem, `seed ${seed} version ${version}`).toBeNull();
        for (const { snapshot, hex: then, at } of run.taken) {
          const slice = 1 + (at % 3);
          const now = hex(
            await encodeLockSnapshotInSlices(snapshot as never, async () => {}, slice),
          );
          expect(now, `seed ${seed} v${version}: snapshot at ${at}, slices of ${slice}`).toBe(then);
        }
      }
    });
  }
});
