/**
 * The replicated behaviour version: which release's rules the lock state machine applies
 * entries by. A release that changes how an entry applies adds a version here and gates
 * its change on it, so that every replica applies every entry by the same rules, and a
 * log replays as it first ran: entries before the raise by the old rules, entries after
 * it by the new ones.
 *
 * The version is state, changed only by a SetBehaviour entry, which the leader proposes
 * once every member runs a binary that supports the new version (src/node/behaviour.ts).
 * It never goes down. A binary that meets a version above the highest it knows (in an
 * entry or a snapshot) cannot apply what follows faithfully: it throws
 * BehaviourUnsupportedError and its node stops, rather than go on by older rules.
 */

/**
 * The rules of the last release before versions existed; a log starts here. That release
 * already counted a retried Acquire told of a grant from memory again among the requests
 * told of it (0dbc683, shipped ungated), so version 1 does too: gating it had an upgraded
 * node at version 1 apply the rule from before 0dbc683 beside old nodes that did not
 * (review test review-behaviour-base-rule).
 */
export const BEHAVIOUR_BASE = 1;

/**
 * The first raise. It changes no rule: it marks that every member runs a binary that
 * knows versions, and from it snapshots carry the version (format 4, which a binary
 * from before versions refuses rather than misread).
 */
export const BEHAVIOUR_VERSIONED = 2;

/**
 * Each Acquire attempt the dedupe window keeps open also records the proposal that
 * carried it (its entry's proposal id). A node that catches up by a snapshot never
 * applies the entries it covers, so it cannot tell from them whether a write its caller
 * gave up on applied; it asks the state machine by proposal id, and answers or gives
 * back what the attempt got (runtime seed 12158). Recording is gated: binaries before it keep
 * no such record, and two replicas at one index must hold the same state.
 */
export const BEHAVIOUR_ATTEMPT_PROPOSALS = 3;

/**
 * Atomic multi-lock and deadlock detection (issue 17). From it: the AcquireAll command
 * applies (below it, it is refused as the release before knew it: an unknown command
 * type); an Acquire whose wait would close a wait-for cycle is refused (`deadlock`);
 * Release, Revoke, max-hold, withdrawals and wait ends act on a lock set as a whole;
 * the rules may carry locksPerAcquireMax and deadlockCheckStepsMax; snapshots are
 * format 5. Every gate reads this constant.
 */
export const BEHAVIOUR_MULTI_LOCK = 4;

/**
 * Semaphores with fenced permits and leader election (issue 17). From it: the
 * AcquirePermits, Campaign and Proclaim commands apply (below it they are unknown command
 * types, as to the release before); a name's record has a kind (lock, semaphore,
 * election) and a request of another kind is refused (kindMismatch); the rules may
 * carry semaphoreLimitMax, candidatesPerElectionMax and electionValueBytesMax; snapshots
 * are format 6 (a record's kind and limit, grants' and places' permits and value); a
 * single-lock request for a lock its session holds within a set is refused
 * (alreadyHolding) rather than told of the set's grant. Below it nothing about plain
 * locks changes. Every gate reads this constant.
 */
export const BEHAVIOUR_SEMAPHORES_ELECTIONS = 5;

/** The highest version this binary applies; a new cluster starts at it. */
export const BEHAVIOUR_LATEST = BEHAVIOUR_SEMAPHORES_ELECTIONS;

/** A version this binary does not know was met: its node must stop, not diverge. */
export class BehaviourUnsupportedError extends Error {
  override readonly name = 'BehaviourUnsupportedError';

  constructor(
    readonly version: number,
    readonly supportedMax: number,
    where: string,
  ) {
    super(
      `${where} raises the lock behaviour version to ${version}, but this binary applies versions up to ${supportedMax}: it cannot apply the log as the cluster does, so it stops; run a release that supports behaviour version ${version}`,
    );
  }
}

/** Whether `version` is a version at all (any binary's): an integer from the base up. */
export function isBehaviourVersion(version: unknown): version is number {
  return typeof version === 'number' && Number.isSafeInteger(version) && version >= BEHAVIOUR_BASE;
}
