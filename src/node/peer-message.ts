import type { Message, ProposeRejection } from '../raft/index.ts';
import type { LogIndex, NodeId, Term } from '../util/ids.ts';
import type { MemberAddress } from './membership.ts';

/**
 * Everything nodes send each other: Raft's own messages, plus the forwarding of client
 * writes from a follower to the leader. A forwarded write carries a proposal id chosen
 * by the follower; the follower completes its client's call when it applies the entry
 * with that id, so the leader keeps no callbacks for other nodes.
 */
export type PeerMessage = PeerMessageBody & {
  /**
   * The sender's cluster id ('' when it does not know it yet); absent from messages
   * the node has not sent yet, and from peers older than cluster ids. The node stamps
   * it on everything it sends and checks it first (see cluster-identity.ts).
   */
  readonly clusterId?: string;
  /**
   * The highest lock behaviour version the sender's binary applies; absent from peers
   * older than behaviour versions, which apply the base (see behaviour.ts).
   */
  readonly behaviour?: number;
};

/**
 * Why the leader did not append a forwarded write: the core's refusal, or
 * `lockRulesUnset`, a client write before the log set the lock rules (see DlmNode).
 */
export type ForwardRefusal = ProposeRejection | 'lockRulesUnset';

export type PeerMessageBody =
  | { readonly kind: 'raft'; readonly message: Message }
  | {
      readonly kind: 'forward';
      readonly from: NodeId;
      readonly to: NodeId;
      readonly proposalId: string;
      readonly data: Uint8Array;
      /** W3C traceparent of the client call that made the write, when there is one. */
      readonly traceparent?: string;
    }
  /** The leader appended the forwarded write at (index, term). */
  | {
      readonly kind: 'forwardAccepted';
      readonly from: NodeId;
      readonly to: NodeId;
      readonly proposalId: string;
      readonly index: LogIndex;
      readonly term: Term;
    }
  | {
      readonly kind: 'forwardRefused';
      readonly from: NodeId;
      readonly to: NodeId;
      readonly proposalId: string;
      readonly reason: ForwardRefusal;
      readonly leaderId: NodeId | null;
    }
  /**
   * The addresses the sender knows, so that every node can reach members added at run
   * time (see membership.ts). Sent when a node starts, when a member is added, and
   * every few seconds to every member.
   */
  | {
      readonly kind: 'peerAddresses';
      readonly from: NodeId;
      readonly to: NodeId;
      readonly addresses: readonly MemberAddress[];
    };

export function peerRecipient(message: PeerMessage): NodeId {
  return message.kind === 'raft' ? message.message.to : message.to;
}
