import {
  type ApplyOutput,
  type LockCommand,
  type LockLimits,
  type LockSnapshot,
  LockStateMachine,
  LockTimers,
} from '../../lock/index.ts';
import type { ClusterConfig, ConfigChange, Entry, Snapshot } from '../../raft/index.ts';
import type { NodeId } from '../../util/ids.ts';
import { chainHash, entryKey, SafetyViolation } from './checker.ts';

/**
 * One simulated node's state machine: the real lock state machine and its runtime
 * timer helper, plus a digest chained over every applied entry (so that replicas can
 * be compared at each index even for entries the lock machine ignores).
 */
export interface AppliedLockCommand {
  readonly command: LockCommand;
  readonly output: ApplyOutput;
}

export const LOCK_PREFIX = 'lock:';
/** Entries that write the simulated register, which linearizable reads return. */
export const REGISTER_PREFIX = 'reg:';

/** Builds a replica's lock state machine; a bug injection passes a subclass. */
export type LockMachineFactory = (limits: Partial<LockLimits>) => LockStateMachine;

export const realLockMachine: LockMachineFactory = (limits) => new LockStateMachine(limits);

export function encodeLockCommand(command: LockCommand): string {
  return `${LOCK_PREFIX}${JSON.stringify(command)}`;
}

interface SnapshotHeader {
  readonly appliedIndex: number;
  readonly digest: number;
  readonly locks: LockSnapshot;
  readonly register: string | null;
}

export class Replica {
  appliedIndex: number;
  digest: number;
  readonly locks: LockStateMachine;
  readonly timers: LockTimers;
  /** The value of the last register write applied, or null before the first. */
  register: string | null = null;
  /** Membership as the applied log describes it, kept independently of the core's. */
  config: ClusterConfig;

  private constructor(
    appliedIndex: number,
    digest: number,
    createLocks: LockMachineFactory,
    limits: Partial<LockLimits>,
    config: ClusterConfig,
  ) {
    this.appliedIndex = appliedIndex;
    this.digest = digest;
    this.config = sortedConfig(config.voters, config.learners);
    this.locks = createLocks(limits);
    this.timers = new LockTimers({ reproposeIntervalMs: 200, dueBatchMax: 64 });
  }

  /** Rebuilds a replica from a Raft snapshot, timing every pending deadline from `localNowMs`. */
  static fromSnapshot(
    snapshot: Snapshot,
    createLocks: LockMachineFactory,
    limits: Partial<LockLimits>,
    localNowMs: number,
  ): Replica {
    const index = snapshot.metadata.index;
    if (snapshot.data.byteLength === 0) {
      const replica = new Replica(index, 0, createLocks, limits, snapshot.metadata.config);
      replica.locks.skipTo(index);
      return replica;
    }
    const text = new TextDecoder().decode(snapshot.data);
    const header = JSON.parse(text.slice(0, text.indexOf('\n'))) as SnapshotHeader;
    if (header.appliedIndex !== index) {
      throw new SafetyViolation(`Snapshot: data at ${header.appliedIndex} labelled ${index}`);
    }
    const replica = new Replica(
      index,
      header.digest,
      createLocks,
      limits,
      snapshot.metadata.config,
    );
    replica.register = header.register;
    replica.locks.restore(header.locks);
    replica.locks.skipTo(index);
    replica.timers.restore(replica.locks, localNowMs);
    return replica;
  }

  /** Applies one committed entry; returns the lock command and its output, if it carried one. */
  apply(entry: Entry, localNowMs: number): AppliedLockCommand | null {
    if (entry.index !== this.appliedIndex + 1) {
      throw new SafetyViolation(`Apply order: applied ${entry.index} after ${this.appliedIndex}`);
    }
    this.appliedIndex = entry.index;
    this.digest = chainHash(this.digest, `${entry.index}:${entry.term}:${entryKey(entry)}`);
    if (entry.kind === 'config') this.applyConfigChange(entry.change);
    const register = entry.kind === 'normal' ? decodeRegisterWrite(entry.data) : null;
    if (register !== null) this.register = register;
    const command = entry.kind === 'normal' ? decodeLockCommand(entry.data) : null;
    if (command === null) {
      this.locks.skipTo(entry.index);
      return null;
    }
    const output = this.locks.apply(entry.index, command);
    this.locks.checkInvariants();
    this.digest = chainHash(this.digest, JSON.stringify(output));
    this.timers.applied(entry.index, output.events, localNowMs);
    return { command, output };
  }

  private applyConfigChange(change: ConfigChange): void {
    const id = change.nodeId;
    let voters = this.config.voters.filter((voter) => voter !== id);
    let learners = this.config.learners.filter((learner) => learner !== id);
    const wasVoter = voters.length < this.config.voters.length;
    const wasLearner = learners.length < this.config.learners.length;
    if (change.type === 'addLearner') {
      if (wasVoter) voters = [...this.config.voters];
      else learners = [...learners, id];
    } else if (change.type === 'promoteLearner') {
      if (wasLearner) voters = [...voters, id];
      else {
        voters = [...this.config.voters];
        learners = [...this.config.learners];
      }
    }
    this.config = sortedConfig(voters, learners);
  }

  /** A digest of the whole lock state, equal on replicas that applied the same log. */
  lockStateHash(): number {
    return chainHash(this.digest, JSON.stringify(this.locks.snapshot()));
  }

  encodeSnapshot(paddingBytes: number): Uint8Array {
    const header: SnapshotHeader = {
      appliedIndex: this.appliedIndex,
      digest: this.digest,
      locks: this.locks.snapshot(),
      register: this.register,
    };
    return new TextEncoder().encode(`${JSON.stringify(header)}\n${'.'.repeat(paddingBytes)}`);
  }
}

function decodeRegisterWrite(data: Uint8Array): string | null {
  const text = new TextDecoder().decode(data);
  return text.startsWith(REGISTER_PREFIX) ? text.slice(REGISTER_PREFIX.length) : null;
}

function decodeLockCommand(data: Uint8Array): LockCommand | null {
  const text = new TextDecoder().decode(data);
  if (!text.startsWith(LOCK_PREFIX)) return null;
  return JSON.parse(text.slice(LOCK_PREFIX.length)) as LockCommand;
}

function sortedConfig(voters: readonly NodeId[], learners: readonly NodeId[]): ClusterConfig {
  return { voters: [...voters].sort(), learners: [...learners].sort() };
}
