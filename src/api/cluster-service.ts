import type * as grpc from '@grpc/grpc-js';
import type { RaftConfig } from '../config/types.ts';
import { OPTIONAL_LOCK_RULES, rulesAtBehaviour } from '../lock/optional-rules.ts';
import type { MembershipCallOptions, NodeStatus } from '../node/node.ts';
import type { TraceContext } from '../node/trace.ts';
import type { NodeId } from '../util/ids.ts';
import { requireAdmin } from './auth/guard.ts';
import { type ApiContext, type ApiNode, header, type MembershipMethod, unary } from './context.ts';
import { monotonicTimeLeftMs } from './deadline.ts';
import { ApiError, rejectionError } from './errors.ts';
import {
  type AddMemberResponse,
  type ClusterServiceHandlers,
  type RemoveMemberResponse,
  type RevokeLockResponse,
  type SetLockRulesResponse,
  type StatusResponse,
  type TransferLeadershipResponse,
  toUint64,
  type WireMember,
} from './proto.ts';
import { lockRulesDigest, wireLockRules, wireRuleName } from './rules.ts';
import {
  parseAddMember,
  parseRemoveMember,
  parseRevokeLock,
  parseSetLockRules,
  parseStatus,
  parseTransferLeadership,
} from './validate.ts';

/** Where a member is reached; the shape of a config's `nodes` entries, so they pass straight in. */
export interface MemberAddresses {
  readonly id: string;
  readonly peerAddress: string;
  readonly clientAddress: string;
}

/**
 * dlm.v1.Cluster. Status reads only this node's own view, never the log, so it answers
 * on every node even when there is no leader (leader_id is then empty): it is what an
 * operator runs when the cluster is unwell. AddMember, RemoveMember and
 * TransferLeadership run on the leader (DlmNode does the work); elsewhere they answer
 * UNAVAILABLE with the leader hint. SetLockRules and RevokeLock are writes like any lock
 * command: any node takes them; SetLockRules is checked against `raft`, this node's Raft timing (null: not checked).
 */
export function clusterService(
  context: ApiContext,
  addresses: readonly MemberAddresses[],
  raft: RaftConfig | null = null,
): ClusterServiceHandlers {
  return {
    // Not bounded by the calls in flight, like Health.Check: it reads only local state,
    // and an operator needs it most when the node is saturated.
    Status: unary(context, 'Status', async (raw) => status(context, addresses, raw), {
      ungated: true,
    }),
    AddMember: unary(context, 'AddMember', async (raw, call, scope): Promise<AddMemberResponse> => {
      const member = parseAddMember(raw);
      requireAdmin(context.auth, scope.caller, 'add a member');
      const view = await membership(context.node, 'addMember')(member, callOptions(call));
      context.logger('info', 'member added', { ...member });
      return {
        header: header(context.node, view.appliedIndex),
        members: members(context, addresses, view),
      };
    }),
    RemoveMember: unary(
      context,
      'RemoveMember',
      async (raw, call, scope): Promise<RemoveMemberResponse> => {
        const id = parseRemoveMember(raw);
        requireAdmin(context.auth, scope.caller, 'remove a member');
        const view = await membership(context.node, 'removeMember')(id, callOptions(call));
        context.logger('info', 'member removed', { id });
        return {
          header: header(context.node, view.appliedIndex),
          members: members(context, addresses, view),
        };
      },
    ),
    TransferLeadership: unary(
      context,
      'TransferLeadership',
      async (raw, call, scope): Promise<TransferLeadershipResponse> => {
        const target = parseTransferLeadership(raw);
        requireAdmin(context.auth, scope.caller, 'transfer leadership');
        const leader = await membership(context.node, 'transferLeadership')(
          target,
          callOptions(call),
        );
        context.logger('info', 'leadership transferred', { from: context.node.id, to: leader });
        return {
          header: header(context.node, context.node.status().appliedIndex),
          leader_id: leader,
        };
      },
    ),
    SetLockRules: unary(context, 'SetLockRules', async (raw, _call, scope) => {
      requireAdmin(context.auth, scope.caller, 'set the lock rules');
      return setLockRules(context, raw, raft, scope.trace);
    }),
    RevokeLock: unary(context, 'RevokeLock', async (raw, _call, scope) => {
      requireAdmin(context.auth, scope.caller, 'revoke a lock');
      return revokeLock(context, raw, scope.trace);
    }),
  };
}

/** An operator's revoke: one Revoke entry, so every replica ends the same grants. */
async function revokeLock(
  context: ApiContext,
  raw: unknown,
  trace: TraceContext,
): Promise<RevokeLockResponse> {
  const command = parseRevokeLock(raw);
  const { index, result } = await context.node.write(command, { trace });
  if (result.type === 'Rejected') throw rejectionError(result, 'RevokeLockRequest');
  if (result.type !== 'Revoked') throw new Error(`Revoke was answered with ${result.type}`);
  context.logger('info', 'lock revoked', {
    lock: command.lock,
    reason: command.reason,
    freed: result.freed,
    index,
  });
  return { header: header(context.node, index), freed: result.freed };
}

async function setLockRules(
  context: ApiContext,
  raw: unknown,
  raft: RaftConfig | null,
  trace: TraceContext,
): Promise<SetLockRulesResponse> {
  const rules = parseSetLockRules(raw, raft);
  // Told here, in the operator's terms: the state machine would refuse the field as
  // unknown, which reads like a typo rather than a cluster not yet upgraded.
  const { left } = rulesAtBehaviour(rules, context.node.locks.behaviour);
  const [first] = left;
  if (first !== undefined) {
    throw new ApiError(
      'FAILED_PRECONDITION',
      `SetLockRulesRequest.rules.${wireRuleName(first)}: a rule from lock behaviour version ${OPTIONAL_LOCK_RULES[first].since}, and the cluster applies version ${context.node.locks.behaviour}: leave it 0 (its default) until every member runs a release that supports it`,
    );
  }
  const { index, result } = await context.node.write(
    { type: 'SetRules', rules, onlyIfUnset: false },
    { trace },
  );
  if (result.type === 'Rejected') throw rejectionError(result, 'SetLockRulesRequest');
  if (result.type !== 'RulesSet') throw new Error(`SetRules was answered with ${result.type}`);
  context.logger('info', 'lock rules set', { index, digest: lockRulesDigest(result.rules) });
  return {
    header: header(context.node, index),
    rules: wireLockRules(result.rules),
    rules_index: toUint64(index),
  };
}

function status(
  context: ApiContext,
  addresses: readonly MemberAddresses[],
  raw: unknown,
): StatusResponse {
  parseStatus(raw);
  const view = context.node.status();
  return {
    header: header(context.node, view.appliedIndex),
    node_id: context.node.id,
    leader_id: view.leaderId ?? '',
    term: toUint64(view.term),
    commit_index: toUint64(view.commitIndex),
    applied_index: toUint64(view.appliedIndex),
    members: members(context, addresses, view),
    lock_rules: wireLockRules(context.node.locks.rules),
    lock_rules_index: toUint64(context.node.locks.rulesSetIndex ?? 0),
    lock_rules_digest: lockRulesDigest(context.node.locks.rules),
    policy_digest: context.auth?.policy?.digest ?? '',
    behaviour_version: context.node.locks.behaviour,
    behaviour_max: context.node.locks.behaviourMax,
  };
}

/** Voters then learners, with the addresses the node learned, else the configured ones. */
function members(
  context: ApiContext,
  addresses: readonly MemberAddresses[],
  view: NodeStatus,
): WireMember[] {
  const learned = context.node.memberAddresses?.();
  const member = (id: NodeId, learner: boolean): WireMember => {
    const configured = addresses.find((each) => each.id === id);
    const known = learned?.get(id);
    return {
      id,
      peer_address: known?.peerAddress || configured?.peerAddress || '',
      client_address: known?.clientAddress || configured?.clientAddress || '',
      learner,
    };
  };
  return [
    ...view.voters.map((id) => member(id, false)),
    ...view.learners.map((id) => member(id, true)),
  ];
}

/** A membership method of the node, bound; a stand-in node without it is refused. */
function membership<M extends MembershipMethod>(node: ApiNode, method: M): NonNullable<ApiNode[M]> {
  const bound = node[method]?.bind(node);
  if (bound === undefined) throw new ApiError('INTERNAL', `${node.id} cannot change membership`);
  return bound as NonNullable<ApiNode[M]>;
}

/**
 * Bounds the node's work by the call's deadline, less a margin so that the node's own
 * error (which says how far it got) reaches the client before gRPC's. Without a
 * deadline the node's default applies. The time left is read on the monotonic clock
 * (see deadline.ts): a step of the wall clock cannot make it 0 ms or hours.
 */
function callOptions(call: grpc.ServerUnaryCall<unknown, unknown>): MembershipCallOptions {
  const leftMs = monotonicTimeLeftMs(call.metadata);
  if (leftMs === undefined) return {};
  return { timeoutMs: Math.max(0, leftMs - Math.min(200, leftMs / 10)) };
}
