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

/** The rules every log was written under before versions existed; a log starts here. */
export const BEHAVIOUR_BASE = 1;

/**
 * A retried Acquire told of a grant from memory counts again among the requests told of
 * it (0dbc683). Before, a Withdraw of that request's earlier attempt let it go, and the
 * Withdraw of another request of the session could then free the grant under the caller
 * that was just told it holds it.
 */
export const BEHAVIOUR_RETOLD_GRANT_COUNTS = 2;

/** The highest version this binary applies; a new cluster starts at it. */
export const BEHAVIOUR_LATEST = BEHAVIOUR_RETOLD_GRANT_COUNTS;

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
