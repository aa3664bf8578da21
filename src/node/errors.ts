import type { NodeId } from '../util/ids.ts';

/**
 * Operating errors of the node runtime, each with a stable code that the API maps to
 * one gRPC status. Deterministic outcomes (a lock is held, a token is stale) are not
 * errors: they are results of the state machine.
 */
export type DlmErrorCode =
  | 'UNAVAILABLE'
  | 'RESOURCE_EXHAUSTED'
  | 'DEADLINE_EXCEEDED'
  /** A membership change the cluster's current state refuses (already a member, too few voters...). */
  | 'FAILED_PRECONDITION'
  /** A stream could not go on without a gap: the caller re-reads state and starts again. */
  | 'ABORTED'
  | 'INTERNAL';

export class DlmError extends Error {
  override readonly name = 'DlmError';

  constructor(
    readonly code: DlmErrorCode,
    message: string,
    /** Where the client should retry, when this node knows the leader. */
    readonly leaderHint: NodeId | null = null,
  ) {
    super(message);
  }
}

export function unavailable(message: string, leaderHint: NodeId | null = null): DlmError {
  return new DlmError('UNAVAILABLE', message, leaderHint);
}
