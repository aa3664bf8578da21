import type { ConfigChange, Raft } from '../raft/index.ts';
import type { NodeId } from '../util/ids.ts';
import { DlmError, unavailable } from './errors.ts';
import {
  type AddressBook,
  configReflects,
  describeChange,
  type MemberAddress,
  membershipRefusal,
  TRANSIENT_REFUSALS,
} from './membership.ts';
import type { Clock, NodeStatus } from './node.ts';
import type { Scheduler } from './scheduler.ts';

/** Bounds one membership call (AddMember waits for the new member to catch up). */
export interface MembershipCallOptions {
  readonly timeoutMs?: number;
}

export const DEFAULT_MEMBERSHIP_TIMEOUT_MS = 30_000;

/**
 * Refusals of an AddMember step that another call for the same node can cause by taking
 * that step first. (Removing a non-member stays an error: nothing tells a node removed
 * by a racing call from one that never was a member.)
 */
const RACED_REFUSALS: ReadonlySet<string> = new Set(['alreadyMember', 'notALearner']);

/** What membership changes need of their node. */
export interface MemberChangeHost {
  readonly id: NodeId;
  readonly raft: Raft;
  readonly addresses: AddressBook;
  readonly clock: Clock;
  readonly scheduler: Scheduler;
  readonly tickIntervalMs: number;
  /** Throws UNAVAILABLE once the node is stopping. */
  checkRunning(): void;
  /** Runs the Ready loop soon: a change was proposed. */
  kick(): void;
  status(): NodeStatus;
  memberIds(): NodeId[];
  /** Throws FAILED_PRECONDITION for a node whose binary falls short of the behaviour in force. */
  refuseBehindBehaviour(id: NodeId): void;
  /** The most caught-up other voter, or null when there is none. */
  bestTransferTarget(): NodeId | null;
}

/**
 * The operator's membership calls, on the leader: AddMember, RemoveMember and
 * TransferLeadership. Each change goes through the log one at a time and is awaited
 * until it applied on this node, polling every tick up to the call's deadline.
 */
export class MemberChanges {
  constructor(private readonly host: MemberChangeHost) {}

  /**
   * Adds a member, on the leader: records its addresses and tells every member, adds it
   * as a learner, waits until it holds everything committed when it joined, then
   * promotes it to voter. Each change goes through the log and is awaited until it
   * applied here. Calling it again for a node that stayed a learner (it timed out
   * catching up) resumes with the catch-up. Resolves with this node's view afterwards.
   *
   * Idempotent for one id and address: a call for a voter already at that peer address
   * succeeds, and so does a call that races another one adding the same node (each step
   * the other one took first counts as done), so a retried or doubled call never reports
   * a failure for a node that was added.
   */
  async add(member: MemberAddress, options: MembershipCallOptions = {}): Promise<NodeStatus> {
    const deadlineMs = this.deadline(options);
    this.requireLeader(`adding ${member.id}`);
    const { id } = member;
    if (this.host.raft.config.voters.includes(id)) {
      const known = this.host.addresses.all().get(id)?.peerAddress ?? '';
      if (known === member.peerAddress) return this.host.status();
      throw new DlmError(
        'FAILED_PRECONDITION',
        `${id} is already a voter, reached at ${known || 'an unknown address'}, not ${member.peerAddress}; remove it first to move it`,
      );
    }
    this.host.refuseBehindBehaviour(id);
    this.host.addresses.learn(member, true);
    // Also when the address was known: the link was closed if the node was removed before.
    this.host.addresses.connect(id);
    this.host.addresses.announce([...this.host.memberIds(), id]);
    if (!this.host.raft.config.learners.includes(id)) {
      await this.changeConfig({ type: 'addLearner', nodeId: id }, deadlineMs);
    }
    // Caught up: the learner holds every entry committed when it was added (its own
    // addition included). The core checks the lag again when promoting.
    const target = this.host.raft.log.commitIndex;
    const caughtUp = await this.until(() => {
      this.requireLeader(`promoting ${id}`);
      return (this.host.raft.progressOf(id)?.matchIndex ?? 0) >= target;
    }, deadlineMs);
    if (!caughtUp) {
      this.host.refuseBehindBehaviour(id);
      const matchIndex = this.host.raft.progressOf(id)?.matchIndex ?? 0;
      throw new DlmError(
        'DEADLINE_EXCEEDED',
        `${id} was added as a learner but did not catch up in time (it holds the log up to index ${matchIndex}, it needs ${target}); it stays a learner: check that it runs and that ${member.peerAddress} reaches it, then add it again to promote it`,
      );
    }
    await this.changeConfig({ type: 'promoteLearner', nodeId: id }, deadlineMs);
    return this.host.status();
  }

  /**
   * Removes a member (voter or learner), on the leader, and waits until the change
   * applied here. To remove the leader itself, it first hands leadership to another
   * voter and answers UNAVAILABLE with the new leader as hint, so the retry removes it
   * from there: the cluster is without a leader for a transfer, not for an election
   * timeout. (Were the transfer to fail, the removal would still work: the removed
   * leader steps down once it applies, and the others elect a new one.)
   */
  async remove(id: NodeId, options: MembershipCallOptions = {}): Promise<NodeStatus> {
    const deadlineMs = this.deadline(options);
    this.requireLeader(`removing ${id}`);
    // With 2 voters the core refuses the removal anyway (one voter must not remain).
    if (id === this.host.id && this.host.raft.config.voters.length > 2) {
      const leader = await this.transferLeadership(null, options).catch(() => this.host.id);
      if (leader !== this.host.id) {
        throw unavailable(
          `${id} handed leadership to ${leader} before its removal; retry there`,
          leader,
        );
      }
    }
    await this.changeConfig({ type: 'removeNode', nodeId: id }, deadlineMs);
    return this.host.status();
  }

  /**
   * Hands leadership to `target`, or to the most caught-up voter when null, on the
   * leader. Resolves with the new leader once this node follows it.
   */
  async transferLeadership(
    target: NodeId | null,
    options: MembershipCallOptions = {},
  ): Promise<NodeId> {
    const deadlineMs = this.deadline(options);
    this.requireLeader('transferring leadership');
    const chosen = target ?? this.host.bestTransferTarget();
    if (chosen === null) {
      throw new DlmError(
        'FAILED_PRECONDITION',
        `${this.host.id} is the only voter: no one can take over`,
      );
    }
    const result = this.host.raft.transferLeadership(chosen);
    if (!result.ok) {
      if (result.reason === 'alreadyLeader') return this.host.id;
      if (result.reason === 'notAVoter') {
        throw new DlmError('FAILED_PRECONDITION', `${chosen} is not a voter, so it cannot lead`);
      }
      throw unavailable(`${this.host.id} is no longer the leader`, this.host.raft.leaderId);
    }
    this.host.kick();
    for (;;) {
      this.host.checkRunning();
      const leader = this.host.raft.leaderId;
      if (this.host.raft.role !== 'leader' && leader !== null) return leader;
      if (this.host.raft.role === 'leader' && this.host.raft.transferee === null) {
        throw new DlmError(
          'DEADLINE_EXCEEDED',
          `the transfer to ${chosen} was abandoned: it did not catch up and win an election within an election timeout`,
        );
      }
      if (this.host.clock.nowMs() >= deadlineMs) {
        throw new DlmError('DEADLINE_EXCEEDED', `leadership did not move to ${chosen} in time`);
      }
      await this.host.scheduler.sleep(this.host.tickIntervalMs);
    }
  }

  private deadline(options: MembershipCallOptions): number {
    this.host.checkRunning();
    return this.host.clock.nowMs() + (options.timeoutMs ?? DEFAULT_MEMBERSHIP_TIMEOUT_MS);
  }

  private requireLeader(what: string): void {
    this.host.checkRunning();
    if (this.host.raft.role !== 'leader') {
      throw unavailable(`${what}: ${this.host.id} is not the leader`, this.host.raft.leaderId);
    }
  }

  /**
   * Proposes one config change and waits until it applied on this node. Refusals that
   * pass (another change in flight, a learner still catching up) are retried until
   * the deadline.
   */
  async changeConfig(change: ConfigChange, deadlineMs: number): Promise<void> {
    for (;;) {
      this.host.checkRunning();
      const result = this.host.raft.proposeConfigChange(change);
      if (result.ok) {
        this.host.kick();
        const applied = await this.until(
          () => this.host.raft.log.appliedIndex >= result.index,
          deadlineMs,
        );
        if (!applied) {
          throw new DlmError(
            'DEADLINE_EXCEEDED',
            `${describeChange(change)} was proposed at index ${result.index} but did not apply in time`,
          );
        }
        if (!configReflects(this.host.raft.config, change)) {
          throw unavailable(
            `${describeChange(change)} was lost in a change of leader; retry`,
            this.host.raft.leaderId,
          );
        }
        return;
      }
      if (RACED_REFUSALS.has(result.reason) && (await this.doneByAnother(change, deadlineMs)))
        return;
      if (!TRANSIENT_REFUSALS.has(result.reason) || this.host.clock.nowMs() >= deadlineMs) {
        throw membershipRefusal(change, result.reason, result.leaderId);
      }
      await this.host.scheduler.sleep(this.host.tickIntervalMs);
    }
  }

  /**
   * A change refused because the config already shows it (another call made it): done
   * once what is in the log up to now has applied here, as our own would have been.
   */
  private async doneByAnother(change: ConfigChange, deadlineMs: number): Promise<boolean> {
    if (!configReflects(this.host.raft.config, change)) return false;
    const last = this.host.raft.log.lastIndex();
    const applied = await this.until(() => this.host.raft.log.appliedIndex >= last, deadlineMs);
    return applied && configReflects(this.host.raft.config, change);
  }

  /** Polls `check` every tick until it holds (true) or the deadline passes (false). */
  private async until(check: () => boolean, deadlineMs: number): Promise<boolean> {
    for (;;) {
      this.host.checkRunning();
      if (check()) return true;
      if (this.host.clock.nowMs() >= deadlineMs) return false;
      await this.host.scheduler.sleep(this.host.tickIntervalMs);
    }
  }
}
