import { Packr } from 'msgpackr';
import { type PeerMessage, peerRecipient } from '../../../node/peer-message.ts';
import type { Transport } from '../../../node/transport.ts';
import type { NodeId } from '../../../util/ids.ts';
import type { Prng } from '../../../util/prng.ts';
import type { ProcessClock, VirtualTime } from './scheduler.ts';

/**
 * The peer network of the runtime simulation. It keeps the Transport contract and
 * nothing more: sending never blocks; a message may be lost; messages on one link
 * arrive in the order sent (a link is one gRPC stream), while messages on different
 * links overtake each other freely. Faults: random loss, random delay, cut links
 * (partitions of any shape, one-way included), and a dead or paused receiver.
 *
 * Messages are encoded with msgpack as the gRPC transport does, so a node never shares
 * an object with another node, and what does not survive the wire shows up here.
 */
export interface NetworkOptions {
  readonly delayMsMin: number;
  readonly delayMsMax: number;
  readonly dropProbability: number;
}

interface Endpoint {
  readonly clock: ProcessClock;
  handler: ((message: PeerMessage) => void) | null;
}

// The gRPC transport's options: the encoding is part of the wire contract.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export class SimNetwork {
  private readonly endpoints = new Map<NodeId, Endpoint>();
  private readonly cutLinks = new Set<string>();
  private readonly lastArrivalMs = new Map<string, number>();
  dropProbability: number;
  sent = 0;
  dropped = 0;

  constructor(
    private readonly time: VirtualTime,
    private readonly options: NetworkOptions,
    private readonly prng: Prng,
  ) {
    this.dropProbability = options.dropProbability;
  }

  /** A transport for one process of `id`; it replaces the previous process's. */
  connect(id: NodeId, clock: ProcessClock): Transport {
    const endpoint: Endpoint = { clock, handler: null };
    this.endpoints.set(id, endpoint);
    return {
      id,
      send: (message) => {
        if (clock.running) this.route(id, message);
      },
      onMessage: (handler) => {
        endpoint.handler = handler;
      },
      addPeer: () => {},
      removePeer: () => {},
      close: async () => {
        endpoint.handler = null;
      },
    };
  }

  cut(from: NodeId, to: NodeId): void {
    this.cutLinks.add(linkKey(from, to));
  }

  /** Splits the nodes into groups that cannot reach each other. */
  partition(groups: readonly (readonly NodeId[])[]): void {
    this.cutLinks.clear();
    for (const group of groups) {
      for (const other of groups) {
        if (group === other) continue;
        for (const from of group) for (const to of other) this.cut(from, to);
      }
    }
  }

  heal(): void {
    this.cutLinks.clear();
  }

  get partitioned(): boolean {
    return this.cutLinks.size > 0;
  }

  private route(from: NodeId, message: PeerMessage): void {
    this.sent++;
    const to = peerRecipient(message);
    const link = linkKey(from, to);
    if (this.cutLinks.has(link) || this.prng.chance(this.dropProbability)) {
      this.dropped++;
      return;
    }
    const wire = packr.pack(message);
    const delayMs = this.prng.intBetween(this.options.delayMsMin, this.options.delayMsMax);
    // FIFO per link: never before the message sent ahead of it on the same link.
    const arrivalMs = Math.max(this.time.nowMs + delayMs, this.lastArrivalMs.get(link) ?? 0);
    this.lastArrivalMs.set(link, arrivalMs);
    this.time.at(arrivalMs, `deliver ${message.kind} ${from}>${to}`, () =>
      this.deliver(link, to, wire),
    );
  }

  private deliver(link: string, to: NodeId, wire: Uint8Array): void {
    const endpoint = this.endpoints.get(to);
    // A link cut while the message was on its way loses it, as a broken stream would.
    if (endpoint === undefined || !endpoint.clock.running || this.cutLinks.has(link)) {
      this.dropped++;
      return;
    }
    endpoint.clock.run(`receive ${to}`, () => {
      endpoint.handler?.(packr.unpack(wire) as PeerMessage);
    });
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`;
}
