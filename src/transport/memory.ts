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
  /**
   * With `linkedOnly`, a node reaches only the peers it linked with addPeer (and has not
   * unlinked with removePeer), as over gRPC; otherwise every node reaches every node.
   */
  private readonly links = new Map<NodeId, Set<NodeId>>();

  constructor(private readonly linkedOnly = false) {}
  private readonly cutLinks = new Set<string>();
  /** Messages that tests hold back to deliver later, out of their usual turn. */
  private readonly held: { to: NodeId; message: PeerMessage }[] = [];
  private holdWhen: ((message: PeerMessage) => boolean) | null = null;
  delivered = 0;
  dropped = 0;

  /** `peers` are linked from the start, like the peers a gRPC transport is built with. */
  connect(id: NodeId, peers: readonly NodeId[] = []): Transport {
    const network = this;
    const links = new Set(peers);
    this.links.set(id, links);
    return {
      id,
      send(message: PeerMessage): void {
        if (network.linkedOnly && !links.has(peerRecipient(message))) {
          network.dropped++;
          return;
        }
        network.route(id, message);
      },
      onMessage(handler: (message: PeerMessage) => void): void {
        network.handlers.set(id, handler);
      },
      // Addresses mean nothing here; only whether a link is open.
      addPeer(peer: NodeId): void {
        links.add(peer);
      },
      removePeer(peer: NodeId): void {
        links.delete(peer);
      },
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

  /** Cuts the one link from `from` to `to`: messages the other way still pass. */
  cut(from: NodeId, to: NodeId): void {
    this.cutLinks.add(`${from}>${to}`);
  }

  heal(): void {
    this.cutLinks.clear();
  }

  /**
   * Holds back every message for which `predicate` holds, until `releaseHeld`, so a test
   * can deliver an answer late: to a node that has restarted since it asked, say.
   */
  hold(predicate: (message: PeerMessage) => boolean): void {
    this.holdWhen = predicate;
  }

  get heldCount(): number {
    return this.held.length;
  }

  /** Stops holding and delivers what was held, in the order it was sent. */
  releaseHeld(): void {
    this.holdWhen = null;
    for (const { to, message } of this.held.splice(0)) {
      setImmediate(() => this.handlers.get(to)?.(message));
    }
  }

  private route(from: NodeId, message: PeerMessage): void {
    const to = peerRecipient(message);
    if (this.holdWhen?.(message) === true) {
      this.held.push({ to, message });
      return;
    }
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
