/**
 * Review support (rvliv): a liveness bug in the Raft core, and the pre-5774711
 * liveness rule (quiet instant only), to run the simulator under either rule.
 */
import { type Message, Raft, type RaftConfig } from '../../src/raft/index.ts';
import { type SimBugs, Simulator } from '../../src/tools/simulate/simulator.ts';
import { logIndex } from '../../src/util/ids.ts';

/**
 * A follower learns the commit index only from appends that carry entries: the commit
 * index of a heartbeat or of an empty append (a commit notice) is ignored. The entry a
 * leader commits last is applied by the followers only once a later entry reaches them;
 * in a quiet cluster, never.
 */
export class LearnsCommitOnlyFromEntries extends Raft {
  override step(message: Message): void {
    if (
      message.type === 'Heartbeat' ||
      (message.type === 'AppendEntries' && message.entries.length === 0)
    ) {
      const leaderCommit = logIndex(Math.min(message.leaderCommit, this.log.commitIndex));
      super.step({ ...message, leaderCommit } as Message);
      return;
    }
    super.step(message);
  }
}

export const LEARNS_COMMIT_ONLY_FROM_ENTRIES: SimBugs = {
  createRaft: (config: RaftConfig) => new LearnsCommitOnlyFromEntries(config),
};

type Rule = (this: unknown) => boolean;
// biome-ignore lint/suspicious/noExplicitAny: reaching a private method on purpose
const proto = Simulator.prototype as any;
export const NEW_RULE: Rule = proto.livenessReached;

/** The rule before 5774711, verbatim but for `this` being untyped. */
export const OLD_RULE: Rule = function (this: any): boolean {
  const leader = this.currentLeader();
  const raft = leader?.raft;
  if (raft == null || this.pendingCommands.size > 0 || this.lockWorkload.pendingCount() > 0)
    return false;
  const sessions = leader?.replica?.locks.sessionIds() ?? [];
  if (this.lockWorkload.abandonedSessions(sessions).length > 0) return false;
  if (raft.log.term(raft.log.commitIndex) !== raft.term) return false;
  for (const id of [...raft.config.voters, ...raft.config.learners]) {
    const member = this.nodes.get(id);
    if (member === undefined || member.decommissioned) continue;
    if (member.raft === null || member.raft.log.appliedIndex !== raft.log.commitIndex) return false;
  }
  return true;
};

export function withRule<T>(rule: Rule, run: () => T): T {
  const saved = proto.livenessReached;
  proto.livenessReached = rule;
  try {
    return run();
  } finally {
    proto.livenessReached = saved;
  }
}

/**
 * The 5774711 rule as its comment describes it: the two rounds must be consecutive
 * checks, and the count starts again when a check misses the target.
 */
export const CONSECUTIVE_RULE: Rule = function (this: any): boolean {
  const leader = this.currentLeader();
  const raft = leader?.raft;
  if (raft == null || this.pendingCommands.size > 0 || this.lockWorkload.pendingCount() > 0)
    return false;
  const sessions = leader?.replica?.locks.sessionIds() ?? [];
  if (this.lockWorkload.abandonedSessions(sessions).length > 0) return false;
  const commitIndex = raft.log.commitIndex;
  if (raft.log.term(commitIndex) !== raft.term) return false;
  const members = [...raft.config.voters, ...raft.config.learners].filter(
    (id: string) => this.nodes.get(id)?.decommissioned === false,
  );
  const applied = members.map((id: string) => this.nodes.get(id)?.raft?.log.appliedIndex ?? -1);
  if (applied.every((index: number) => index === commitIndex)) return true;
  const target = this.catchUpTarget ?? commitIndex;
  this.catchUpTarget = commitIndex;
  if (
    applied.some((index: number) => index < target) ||
    members.some((id: string) => raft.progressOf(id)?.state === 'snapshot')
  ) {
    this.catchUpRounds = 0;
    return false;
  }
  this.catchUpRounds++;
  const busyFromMs = this.livenessDeadlineMs - (this.options.livenessWindowMs * 2) / 3;
  return this.catchUpRounds >= 2 && this.now >= busyFromMs;
};
