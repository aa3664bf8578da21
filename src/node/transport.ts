import type { NodeId } from '../util/ids.ts';
import type { PeerMessage } from './peer-message.ts';

/**
 * How a node reaches its peers. Sending never blocks and may lose messages (Raft
 * tolerates loss); an implementation keeps its queues bounded and drops what does not
 * fit. Messages to one peer arrive in the order sent, or not at all.
 */
export interface Transport {
  readonly id: NodeId;
  send(message: PeerMessage): void;
  /** The one handler for everything that arrives. */
  onMessage(handler: (message: PeerMessage) => void): void;
  /**
   * Learns (or changes) where a peer is reached, for members added at run time. Optional:
   * a transport that needs no addresses (the in-process network) may omit it.
   */
  addPeer?(id: NodeId, address: string): void;
  /** Forgets a peer that left the cluster; messages to it are dropped from then on. */
  removePeer?(id: NodeId): void;
  close(): Promise<void>;
}
