import type { LockStateMachine } from '../../../src/lock/index.ts';
import { DlmNode } from '../../../src/node/node.ts';
import type { NodeParts, RuntimeBugs } from './runner.ts';

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

function subclass(Node: typeof DlmNode): RuntimeBugs {
  return {
    createNode: (parts: NodeParts) =>
      new Node(
        parts.id,
        parts.storage,
        parts.transport,
        parts.options,
        parts.clock,
        parts.seed,
        parts.scheduler,
      ),
  };
}

export const INJECTED_RUNTIME_BUGS = {
  servesReadsLocally: subclass(ServesReadsLocally),
} as const satisfies Record<string, RuntimeBugs>;
