import { fileURLToPath } from 'node:url';
import { Prng } from '../../util/prng.ts';
import { cutKey } from './grudge.ts';
import type { NetnsNetwork } from './netns.ts';
import type { LinkFaults, LinkStats } from './proxy.ts';
import { HOST_MAIN, ProxyHostClient } from './proxy-host.ts';

/**
 * One proxy per directed peer link (n1→n2 apart from n2→n1), on top of a NetnsNetwork.
 *
 * A node advertises one peer address, and every node must agree on it: the address
 * book spreads it, and a member's own entry overrides what others were configured with
 * (src/node/membership.ts). So per-node config files listing different addresses for
 * one peer would not hold: they would converge on the peer's own, unproxied, address.
 * Namespaces solve it instead. Every node advertises a "virtual" peer address
 * (10.251.0.<k>:port for the k-th node) that exists in no namespace of its own; inside
 * each *other* node's namespace that address is put on loopback, and the proxy for
 * that directed link listens there and forwards to the real listen address
 * (peerListenAddress, the node's bridge address). The same advertised address thus
 * leads, from n1's namespace, through proxy n1→n2, and from n3's, through n3→n2.
 *
 *   ns n1: node n1 ── dials 10.251.0.2:P ── proxy n1→n2 (on n1's lo) ── 10.A.B.2:P ──► n2
 *
 * The proxies send from the node's own bridge address, so the partitions of
 * NetnsNetwork still cut them: the two compose (a slow link that is also cut).
 * Proxies run in one host process per namespace, which the harness drives over pipes.
 */
export interface ProxyMeshOptions {
  readonly network: NetnsNetwork;
  /** The port every node's peer server listens on (each on its own address). */
  readonly peerPort: number;
  /** Seeds every link's PRNG (each link draws from its own fork). */
  readonly seed: number;
}

/** Advertised peer addresses live here; the run's bridge subnet is 10.100-199.x, never this. */
export const VIRTUAL_SUBNET = '10.251.0';
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export class ProxyMesh {
  private constructor(
    private readonly network: NetnsNetwork,
    private readonly peerPort: number,
    private readonly hosts: ReadonlyMap<string, ProxyHostClient>,
  ) {}

  static async start(options: ProxyMeshOptions): Promise<ProxyMesh> {
    const { network, peerPort } = options;
    const prng = new Prng(options.seed);
    const hosts = new Map<string, ProxyHostClient>();
    const mesh = new ProxyMesh(network, peerPort, hosts);
    try {
      // Every host first (each takes a moment to load), then their links, in parallel.
      for (const from of network.nodeIds) {
        const child = network.spawn(from, process.execPath, ['--import', 'tsx', HOST_MAIN], {
          cwd: REPO_ROOT,
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        hosts.set(from, new ProxyHostClient(child, `proxies in ${from}'s namespace`));
      }
      const links = network.nodeIds.flatMap((from) =>
        network.nodeIds
          .filter((to) => to !== from)
          .map((to) => ({ from, to, seed: prng.nextUint32() })),
      );
      await Promise.all(
        links.map(async ({ from, to, seed }) => {
          await network.addLocalAddress(from, mesh.virtualHost(to));
          await mesh.host(from).request({
            op: 'start',
            name: cutKey(from, to),
            listen: mesh.advertisedPeerAddress(to),
            target: mesh.peerListenAddress(to),
            seed,
          });
        }),
      );
    } catch (error) {
      await mesh.close();
      throw error;
    }
    return mesh;
  }

  /** What every node's config gives as this node's peerAddress. */
  advertisedPeerAddress(id: string): string {
    return `${this.virtualHost(id)}:${this.peerPort}`;
  }

  /** Where the node's peer server binds (its peerListenAddress): its own bridge address. */
  peerListenAddress(id: string): string {
    return `${this.network.address(id)}:${this.peerPort}`;
  }

  /** Changes the faults of the link `from`→`to` (what `from` sends and what it hears back on it). */
  async set(from: string, to: string, faults: LinkFaults): Promise<void> {
    await this.host(from).request({ op: 'set', name: cutKey(from, to), faults });
  }

  /** The same faults on every directed link. */
  async setAll(faults: LinkFaults): Promise<void> {
    for (const from of this.network.nodeIds) {
      for (const to of this.network.nodeIds) if (to !== from) await this.set(from, to, faults);
    }
  }

  /** Resets every open connection of one link. */
  async reset(from: string, to: string): Promise<void> {
    await this.host(from).request({ op: 'reset', name: cutKey(from, to) });
  }

  /** Counters of every link, by "from>to". */
  async stats(): Promise<Map<string, LinkStats>> {
    const all = new Map<string, LinkStats>();
    for (const host of this.hosts.values()) {
      const reply = await host.request({ op: 'stats' });
      for (const [name, stats] of Object.entries(reply.stats ?? {})) all.set(name, stats);
    }
    return all;
  }

  async close(): Promise<void> {
    await Promise.all([...this.hosts.values()].map((host) => host.close()));
  }

  private virtualHost(id: string): string {
    return `${VIRTUAL_SUBNET}.${this.network.nodeIds.indexOf(id) + 1}`;
  }

  private host(id: string): ProxyHostClient {
    const host = this.hosts.get(id);
    if (host === undefined) throw new Error(`no proxy host for ${JSON.stringify(id)}`);
    return host;
  }
}
