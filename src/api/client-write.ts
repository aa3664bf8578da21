import {
  isOwnQuotaRefusal,
  type LockCommand,
  type LockResult,
  type LockStateMachine,
} from '../lock/index.ts';
import type { AppliedProposal, LateApplyListener } from '../node/proposals.ts';
import type { SessionId } from '../util/ids.ts';
import type { RefusalBudget } from './auth/refusal-budget.ts';
import type { ApiContext, CallScope } from './context.ts';
import { rejectionError } from './errors.ts';

/**
 * Proposes a client's write on its sessions (OpenSession, KeepAlive, CloseSession,
 * Acquire, Release) and waits for it to apply. Two refusals come first, so that a tenant
 * cannot make the cluster write entries that only get refused (issue 15):
 *
 * - another identity's session, when this node's applied state already shows it
 *   (LockStateMachine.ownerRefusal): answered as the state machine would answer it,
 *   same code and message, with no entry written;
 * - under an `auth` section, an identity past its budget of writes refused when applied
 *   (RefusalBudget), with RESOURCE_EXHAUSTED and a retry hint.
 *
 * The state machine's checks stay the authority on what applies. The API's own cleanup
 * writes (Withdraw) and admin writes do not come here.
 */
export async function clientWrite(
  context: ApiContext,
  scope: CallScope,
  command: LockCommand,
  lateApply?: LateApplyListener,
): Promise<AppliedProposal> {
  const refusal = context.node.locks.ownerRefusal(command);
  // Named as the state machine's refusal would be: each RPC proposes the command of its name.
  if (refusal !== null) throw rejectionError(refusal, `${command.type}Request`);
  const budget = context.auth?.refusals ?? null;
  if (budget === null) {
    return context.node.write(command, {
      trace: scope.trace,
      ...(lateApply === undefined ? {} : { lateApply }),
    });
  }
  return budgetedWrite(context, scope, command, budget, lateApply);
}

async function budgetedWrite(
  context: ApiContext,
  scope: CallScope,
  command: LockCommand,
  budget: RefusalBudget,
  lateApply: LateApplyListener | undefined,
): Promise<AppliedProposal> {
  const identity = scope.caller.identity;
  const admission = budget.admit(identity, () =>
    keepsOrGivesBack(context.node.locks, command, identity),
  );
  if (!admission.admitted) {
    if (admission.firstTurnedAway) {
      context.logger('warn', 'an identity is refused writes: too many of its writes were refused', {
        identity,
        refusedWritesPerIdentityMax: budget.max,
        refusedWritesWindowMs: budget.windowMs,
      });
    }
    throw admission.error;
  }
  let applied: AppliedProposal;
  try {
    // A write whose outcome was unknown gave its unit back. An Acquire's is charged if it
    // turns out to have been refused, riding on the listener that withdraws it. Other
    // writes register none: the node watches at most pendingProposalsMax writes that may
    // still apply, evicting the oldest, and timed-out KeepAlives pushed out the Acquires
    // whose grants must be given back (review test sec-budget-orphan-eviction). Each held
    // its unit while in flight, so those uncharged are still bounded by the timeout.
    applied = await context.node.write(command, {
      trace: scope.trace,
      ...(lateApply === undefined
        ? {}
        : {
            lateApply: (late: AppliedProposal) => {
              if (refusedWhenApplied(late.result)) budget.charge(identity);
              lateApply(late);
            },
          }),
    });
  } catch (error) {
    admission.settle(false);
    throw error;
  }
  admission.settle(refusedWhenApplied(applied.result));
  return applied;
}

/**
 * An entry that did nothing because of what its asker sent: refused, or a KeepAlive that
 * found none of its sessions (which the API answers sessionNotFound when it named one).
 * Not a cluster-wide limit reached (sessionsMax, locksMax, waitersPerLockMax): other
 * tenants' state causes those, and charging them let one tenant that keeps a shared
 * lock's queue full lock another out of its own prefix (review test
 * sec-budget-cross-tenant). Its own per-identity quotas are charged.
 */
function refusedWhenApplied(result: LockResult): boolean {
  if (result.type === 'KeptAlive') return result.refreshed.length === 0;
  if (result.type !== 'Rejected') return false;
  return result.code !== 'limitReached' || isOwnQuotaRefusal(result.detail);
}

/**
 * Whether this node's state shows `command` keeping alive, releasing or closing what its
 * identity has. Such a write may use the budget's second share: a tenant held back for
 * its refused writes must not lose its sessions, nor be kept from giving its locks back.
 */
function keepsOrGivesBack(
  locks: LockStateMachine,
  command: LockCommand,
  identity: string,
): boolean {
  const own = (id: SessionId): boolean => locks.ownerOf(id) === identity;
  switch (command.type) {
    case 'KeepAlive':
      // A batch may name sessions that ended (an id at or below the applied index that
      // no session has): the others are still kept alive. Not one this node has yet to
      // apply: it may be another identity's, refused when applied.
      return (
        command.sessionIds.some(own) &&
        command.sessionIds.every(
          (id) => own(id) || (locks.ownerOf(id) === null && id <= locks.lastAppliedIndex),
        )
      );
    case 'CloseSession':
      return own(command.sessionId);
    case 'Release':
      return (
        own(command.sessionId) &&
        locks
          .holdersOf(command.lock)
          .some(
            (holder) => holder.sessionId === command.sessionId && holder.token === command.token,
          )
      );
    default:
      return false;
  }
}
