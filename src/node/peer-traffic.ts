import type { NodeId } from '../util/ids.ts';
import type { PeerMessage } from './peer-message.ts';
import type { Transport } from './transport.ts';

/**
 * Counts peer messages per sender as they arrive from the transport, and per recipient
 * as the node hands them over, so an operator (or a fault-injection test proving that a
 * partition really cuts a link) can see which links carry traffic. A message counts on
 * arrival, before the node checks it: what matters here is that it got through.
 *
 * A transport decorator rather than a hook in the node: it sees every message whatever
 * the node then does with it, and the node needs no change.
 */
export class PeerTraffic implements Transport {
  readonly received = new Map<string, number>();
  readonly sent = new Map<string, number>();

  constructor(private readonly inner: Transport) {}

  get id(): NodeId {
    return this.inner.id;
  }

  send(message: PeerMessage): void {
    bump(this.sent, peerName(recipientOf(message)));
    this.inner.send(message);
  }

  onMessage(handler: (message: PeerMessage) => void): void {
    this.inner.onMessage((message) => {
      bump(this.received, peerName(senderOf(message)));
      handler(message);
    });
  }

  addPeer(id: NodeId, address: string): void {
    this.inner.addPeer?.(id, address);
  }

  removePeer(id: NodeId): void {
    this.inner.removePeer?.(id);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * Peers name the label values; a peer can put anything in `from`, so the counts keep at
 * most this many names, OTHER_PEER included, which takes everything past the others.
 */
export const PEER_NAMES_MAX = 64;
export const OTHER_PEER = '(other)';
/** Label values are short; a longer name is a malformed message, not a node id. */
const PEER_NAME_CHARS_MAX = 64;

function bump(counts: Map<string, number>, name: string): void {
  const key = counts.has(name) || counts.size < PEER_NAMES_MAX - 1 ? name : OTHER_PEER;
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

function peerName(value: unknown): string {
  return typeof value === 'string' && value !== '' && value.length <= PEER_NAME_CHARS_MAX
    ? value
    : OTHER_PEER;
}

/** Messages arrive unchecked (the node checks them next), so every field may be missing. */
function senderOf(message: PeerMessage): unknown {
  // Anything that decodes can arrive here, null and numbers included.
  if (typeof message !== 'object' || message === null) return undefined;
  const body = message as { kind?: unknown; from?: unknown; message?: { from?: unknown } };
  return body.kind === 'raft' ? body.message?.from : body.from;
}

function recipientOf(message: PeerMessage): unknown {
  return message.kind === 'raft' ? message.message.to : message.to;
}
