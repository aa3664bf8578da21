import { LockStateMachine } from '../../src/lock/index.ts';
import {
  decodeEntry,
  decodeLockSnapshot,
  encodeEntry,
  encodeLockSnapshot,
} from '../../src/node/entry-codec.ts';
import {
  hexSnapshot,
  LockMachineDiff,
  type Machine,
  type MachineClass,
} from './lock-machine-diff.ts';

const NAMES = ['a', 'b', 'lock-with-a-long-name-0123456789'];

/**
 * A log at versions 1 to 5, raised once in the middle, with long strings drawn among the
 * short ones. The new machine is fed through the entry codec, and a twin of it, now and
 * then restored from its snapshot, must agree with it. Shared by the differential
 * reviews of the state machine's memory changes (test/review/rev-mem-sm-diff and
 * rev-sm-diet-diff).
 */
export class CodecTwinDiff extends LockMachineDiff {
  private twin: Machine | null = null;
  private readonly raiseAt: number;
  private readonly raiseTo: number;
  /** The twin's outcome of the entry being compared (null while there is no twin). */
  private twins: unknown = null;

  constructor(
    Old: MachineClass,
    seed: number,
    steps: number,
    version: (int: (n: number) => number) => number,
  ) {
    super(Old, seed, {
      names: NAMES,
      version,
      logTail: 40,
      showVersion: true,
    });
    this.raiseAt = this.int(steps);
    this.raiseTo = this.version + this.int(6 - this.version);
  }

  protected override drawRequestId(): string {
    return this.pick([`r${this.int(12)}`, `request-id-long-enough-${this.int(6)}`]);
  }

  protected override drawOwner(): string {
    return this.pick(['o', 'owner-metadata-long-string']);
  }

  protected override drawClientName(): string {
    return this.pick(['c', 'client-name-long-string']);
  }

  protected override drawPermits(): number {
    return 1 + this.int(2);
  }

  protected override drawCampaignValue(): string {
    return this.pick(['v', 'a-campaign-value-long-enough']);
  }

  protected override drawProposalId(): string {
    return this.pick([`p${this.idx}`, `proposal-id-long-${this.idx}`]);
  }

  // The new machine gets what the entry codec hands back.
  protected override applyBoth(
    command: Machine,
    proposalId: string,
  ): { ours: Machine; theirs: unknown } | string {
    const decoded = decodeEntry(encodeEntry({ proposalId, command }));
    const again = decodeEntry(encodeEntry({ proposalId, command }));
    const codec = this.same('decoded command', { proposalId, command }, decoded);
    if (codec !== null) return codec;
    const ours = this.outcome(this.old, command, proposalId) as Machine;
    const theirs = this.outcome(this.main, decoded.command, proposalId);
    this.twins = this.twin === null ? null : this.outcome(this.twin, again.command, proposalId);
    return { ours, theirs };
  }

  protected override compareApplied(ours: unknown, theirs: unknown): string | null {
    const twin = this.twin;
    return (
      this.same('apply', ours, theirs) ??
      (this.twins === null ? null : this.same('restored twin apply', theirs, this.twins)) ??
      this.sameSnapshots() ??
      (twin === null
        ? null
        : this.same('restored twin snapshot bytes', hexSnapshot(this.main), hexSnapshot(twin)))
    );
  }

  protected override compareAcquire(c: Machine, proposalId: string): string | null {
    return (
      this.sameRequestStatus(c) ??
      (this.twin === null
        ? null
        : this.same(
            'twin requestStatus',
            this.main.requestStatus(c),
            this.twin.requestStatus(c),
          )) ??
      this.sameAttemptsOf(c, proposalId)
    );
  }

  // Now and then a node restores from the new machine's snapshot (as a follower installing it).
  protected override afterEntry(): void {
    if (this.int(10) === 0) {
      this.twin = new LockStateMachine(this.limits);
      this.twin.restore(decodeLockSnapshot(encodeLockSnapshot(this.main.snapshot())));
    }
  }

  protected override beforeStep(k: number): string | null {
    if (k !== this.raiseAt || this.raiseTo <= this.version) return null;
    this.version = this.raiseTo;
    return this.apply({ type: 'SetBehaviour', version: this.version });
  }
}
