import type { NodeId } from '../util/ids.ts';
import { type ApiContext, header, unary } from './context.ts';
import {
  type ClusterServiceHandlers,
  type StatusResponse,
  toUint64,
  type WireMember,
} from './proto.ts';
import { parseStatus } from './validate.ts';

/** Where a member is reached; the shape of a config's `nodes` entries, so they pass straight in. */
export interface MemberAddresses {
  readonly id: string;
  readonly peerAddress: string;
  readonly clientAddress: string;
}

/**
 * dlm.v1.Cluster. Status reads only this node's own view, never the log, so it answers
 * on every node even when there is no leader (leader_id is then empty): it is what an
 * operator runs when the cluster is unwell.
 */
export function clusterService(
  context: ApiContext,
  addresses: readonly MemberAddresses[],
): ClusterServiceHandlers {
  return {
    Status: unary(context, 'Status', async (raw) => status(context, addresses, raw)),
  };
}

function status(
  context: ApiContext,
  addresses: readonly MemberAddresses[],
  raw: unknown,
): StatusResponse {
  parseStatus(raw);
  const view = context.node.status();
  const member = (id: NodeId, learner: boolean): WireMember => {
    const known = addresses.find((each) => each.id === id);
    return {
      id,
      peer_address: known?.peerAddress ?? '',
      client_address: known?.clientAddress ?? '',
      learner,
    };
  };
  return {
    header: header(context.node, view.appliedIndex),
    node_id: context.node.id,
    leader_id: view.leaderId ?? '',
    term: toUint64(view.term),
    commit_index: toUint64(view.commitIndex),
    applied_index: toUint64(view.appliedIndex),
    members: [
      ...view.voters.map((id) => member(id, false)),
      ...view.learners.map((id) => member(id, true)),
    ],
  };
}
