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
  close(): Promise<void>;
}
