import {
  DEFAULT_LOCK_LIMITS,
  type LockCommand,
  type LockLimits,
  type LockResult,
  LockStateMachine,
  type RememberedResult,
} from '../../../lock/index.ts';
import { DlmNode } from '../../../node/node.ts';
import { ProposalRegistry } from '../../../node/proposals.ts';
import type { LogIndex } from '../../../util/ids.ts';
import { CountsOwnCopyBeforePersisting } from '../bugs.ts';
import { buildNode, type RuntimeBugs } from './runner.ts';

/**
 * Runtime bugs injected only from tests, through RuntimeBugs.createNode: the runtime
 * simulation must catch each. Production code has no bug flags.
 */

/** Serves "linearizable" reads from local state, skipping ReadIndex. */
class ServesReadsLocally extends DlmNode {
  override async read<T>(query: (locks: LockStateMachine) => T): Promise<T> {
    return query(this.locks);
  }
}

/** Answers a retry with its first result, verbatim, even when that is no longer true. */
class AnswersRetriesVerbatim extends LockStateMachine {
  protected override answerRetry(
    _command: LockCommand,
    _key: string,
    remembered: RememberedResult,
  ): LockResult {
    return remembered.result;
  }
}

/** Gives a grant back only when the withdrawn attempt's entry made or queued it. */
class WithdrawsByIndex extends LockStateMachine {
  protected override withdrawFinds(
    grant: { readonly requestIndex: number },
    command: Extract<LockCommand, { type: 'Withdraw' }>,
  ): boolean {
    return grant.requestIndex === command.attemptIndex;
  }
}

/**
 * Applies and validates with its own config's lock rules instead of the log's, as every
 * node did before the rules were replicated. Set per node by `followsItsFile`.
 */
class FollowsItsFile extends LockStateMachine {
  declare fileRules: LockLimits;

  override get rules(): LockLimits {
    return this.fileRules;
  }
}

/** Takes client writes and proposes timers before the log set the lock rules. */
class WritesBeforeRules extends DlmNode {
  protected override lockRulesUnset(): boolean {
    return false;
  }
}

/** Raises the lock behaviour version to its own binary's, whatever its members run. */
class RaisesIgnoringStamps extends DlmNode {
  protected override agreedBehaviour(): number | null {
    return this.locks.behaviourMax;
  }
}

/** Completes a write with any entry that carries its id, as before placements counted. */
class MatchesIdAlone extends ProposalRegistry {
  protected override answeredBy(): boolean {
    return true;
  }
}

/**
 * Fails the writes a restored snapshot covers without asking it whether they applied, as
 * before runtime seed 12158: a grant its caller gave up on stays with a live session.
 */
class IgnoresRestoredAttempts extends ProposalRegistry {
  override restored(index: LogIndex): void {
    super.restored(index, () => null);
  }
}

function subclass(Node: typeof DlmNode): RuntimeBugs {
  return { createNode: (parts) => buildNode(Node, parts) };
}

/**
 * Swaps the node's state machine for a subclass that breaks one rule. The node builds
 * its own; its methods live on the prototype, so the swap changes only behaviour.
 */
function stateMachine(Machine: typeof LockStateMachine): RuntimeBugs {
  return {
    createNode: (parts) => {
      const node = buildNode(DlmNode, parts);
      Object.setPrototypeOf(node.locks, Machine.prototype);
      return node;
    },
  };
}

export const INJECTED_RUNTIME_BUGS = {
  servesReadsLocally: subclass(ServesReadsLocally),
  /**
   * Proposal and read ids count from 1 again in every process, and a write completes
   * with any entry carrying its id: the two defences the restart bug got past.
   */
  idsRestartWithProcess: {
    createNode: (parts) => {
      const node = buildNode(DlmNode, parts, 'boot');
      Object.setPrototypeOf(Reflect.get(node, 'proposals'), MatchesIdAlone.prototype);
      return node;
    },
  },
  staleRememberedGrant: stateMachine(AnswersRetriesVerbatim),
  /** The leader counts its own copy of a client's entry before its write is durable. */
  countsOwnCopyBeforePersisting: {
    createNode: (parts) => {
      const node = buildNode(DlmNode, parts);
      Object.setPrototypeOf(Reflect.get(node, 'raft'), CountsOwnCopyBeforePersisting.prototype);
      return node;
    },
  },
  followsItsFile: {
    createNode: (parts) => {
      const node = buildNode(DlmNode, parts);
      Object.setPrototypeOf(node.locks, FollowsItsFile.prototype);
      (node.locks as FollowsItsFile).fileRules = { ...DEFAULT_LOCK_LIMITS, ...parts.options.lock };
      return node;
    },
  },
  giveBackByEntryIndex: stateMachine(WithdrawsByIndex),
  ignoresRestoredAttempts: {
    createNode: (parts) => {
      const node = buildNode(DlmNode, parts);
      Object.setPrototypeOf(Reflect.get(node, 'proposals'), IgnoresRestoredAttempts.prototype);
      return node;
    },
  },
  writesBeforeRules: subclass(WritesBeforeRules),
  raisesIgnoringStamps: subclass(RaisesIgnoringStamps),
} as const satisfies Record<string, RuntimeBugs>;
