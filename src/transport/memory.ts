import type { PeerMessage } from '../node/peer-message.ts';
import { peerRecipient } from '../node/peer-message.ts';
import type { Transport } from '../node/transport.ts';
import type { NodeId } from '../util/ids.ts';

/**
 * An in-process network for tests of the node runtime: every message is delivered on a
 * later turn of the event loop, in order per link, unless a link is cut.
 */
export class MemoryNetwork {
  private readonly handlers = new Map<NodeId, (message: PeerMessage) => void>();
  private readonly cutLinks = new Set<string>();
  delivered = 0;
  dropped = 0;

  connect(id: NodeId): Transport {
    const network = this;
    return {
      id,
      send(message: PeerMessage): void {
        network.route(id, message);
      },
      onMessage(handler: (message: PeerMessage) => void): void {
        network.handlers.set(id, handler);
      },
      // Every node is reachable by id here: addresses mean nothing.
      addPeer(): void {},
      removePeer(): void {},
      async close(): Promise<void> {
        network.handlers.delete(id);
      },
    };
  }

  /** Cuts every link to and from `id`. */
  isolate(id: NodeId, others: readonly NodeId[]): void {
    for (const other of others) {
      this.cutLinks.add(`${id}>${other}`);
      this.cutLinks.add(`${other}>${id}`);
    }
  }

  heal(): void {
    this.cutLinks.clear();
  }

  private route(from: NodeId, message: PeerMessage): void {
    const to = peerRecipient(message);
    setImmediate(() => {
      const handler = this.handlers.get(to);
      if (handler === undefined || this.cutLinks.has(`${from}>${to}`)) {
        this.dropped++;
        return;
      }
      this.delivered++;
      handler(message);
    });
  }
}
