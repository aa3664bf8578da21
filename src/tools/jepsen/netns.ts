import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { available, run, runSyncQuietly } from './command.ts';
import {
  between,
  bridge,
  type Cut,
  endpointsOf,
  type Grudge,
  isolate,
  majoritiesRing,
  oneWay,
  parseCut,
  partition,
} from './grudge.ts';

/**
 * Real network partitions for real `dlm serve` processes: every node runs in its own
 * network namespace, wired by a veth pair to one bridge that lives in a namespace of
 * its own (the hub). The root namespace, where the test client runs, has one more veth
 * into the same bridge, so the client reaches every node directly.
 *
 *   root ns: client  10.A.B.254 ──veth──┐
 *   ns n1:   node n1 10.A.B.1   ──veth──┤ bridge br0 (hub ns) + nftables bridge table
 *   ns n2:   node n2 10.A.B.2   ──veth──┤   the table's forward chain drops what the
 *   ns n3:   node n3 10.A.B.3   ──veth──┘   current cuts name: (source ip, dest ip)
 *
 * Cuts are nftables rules in the hub's bridge table, so every frame between two
 * endpoints passes them: nothing can bypass a partition, whatever address a process
 * dials, and the root namespace's own firewall is never touched. A dropped frame is
 * silent (no reset, no ICMP), as a failed switch or cable is: TCP retries until it
 * times out. A one-way cut (A→B dropped, B→A passing) stalls TCP both ways in practice,
 * since B never gets A's acknowledgements or handshake replies; the harness reports
 * the cut as asked, and tests observe what TCP does with it.
 *
 * Everything is named after the run (`dlmj-<pid>-<tag>-…`), so parallel runs do not
 * collide, and removed by close(), also on error and at process exit; a new run first
 * removes what runs whose process is gone left behind.
 *
 * Needs root, iproute2 (`ip`) and nftables (`nft`); installs nothing. Without them,
 * create() returns { ok: false, skipped } with the reason, which callers must report
 * as skipped, never as passed.
 */
export type NetnsCreateResult =
  | { readonly ok: true; readonly network: NetnsNetwork }
  | { readonly ok: false; readonly skipped: string };

/** The test client's endpoint (the root namespace) in cuts and partitions. */
export const CLIENT = 'client';

export interface NetnsOptions {
  /** One namespace per node, in this order; at most NODES_MAX. */
  readonly nodeIds: readonly string[];
}

export const NODES_MAX = 250;
const NAME_PREFIX = 'dlmj';
const CLIENT_HOST = 254;
const BRIDGE = 'br0';
const HUB_UPLINK = 'up0';
const NFT_TABLE = 'dlmj';
const NFT_CHAIN = 'cuts';
/** Subnet picks tried before giving up: there are 25,600 candidates. */
const SUBNET_ATTEMPTS_MAX = 50;
/** How long close() waits for a killed process to exit, and for the kernel to drop a link. */
const SETTLE_TIMEOUT_MS = 5_000;

export class NetnsNetwork {
  private readonly children = new Set<ChildProcess>();
  private readonly created: string[] = [];
  private current: Grudge = new Set();
  private closed = false;
  private readonly exitHook = (): void => this.removeNowSync();

  private constructor(
    readonly nodeIds: readonly string[],
    /** Names everything this run creates. */
    readonly runName: string,
    /** The root namespace's end of its veth pair (an interface name: at most 15 bytes). */
    private readonly rootLink: string,
    /** The first three octets of the run's /24, e.g. "10.123.45". */
    readonly subnet: string,
  ) {}

  /**
   * Builds the namespaces, links, bridge and (empty) cut table; or says why it cannot.
   * A failure after namespaces proved possible is an error, and what was made is removed.
   */
  static async create(options: NetnsOptions): Promise<NetnsCreateResult> {
    const reason = await whyNotPossible(options.nodeIds);
    if (reason !== null) return { ok: false, skipped: reason };
    await sweepStaleRuns();
    const tag = randomInt(36 ** 5, 36 ** 6).toString(36);
    const runName = `${NAME_PREFIX}-${process.pid}-${tag}`;
    const subnet = await pickSubnet();
    const network = new NetnsNetwork(options.nodeIds, runName, `${NAME_PREFIX}${tag}`, subnet);
    process.once('exit', network.exitHook);
    try {
      await network.addNamespace(network.hubNamespace);
    } catch (error) {
      await network.close();
      return {
        ok: false,
        skipped: `cannot create a network namespace: ${(error as Error).message}`,
      };
    }
    try {
      await network.build();
    } catch (error) {
      await network.close();
      throw error;
    }
    return { ok: true, network };
  }

  get hubNamespace(): string {
    return `${this.runName}-hub`;
  }

  /** The namespace a node runs in. */
  namespace(id: string): string {
    return `${this.runName}-n${this.indexOf(id) + 1}`;
  }

  /** The node's IPv4 address on the bridge; it listens there. */
  address(id: string): string {
    return `${this.subnet}.${this.indexOf(id) + 1}`;
  }

  /** The root namespace's address on the bridge: where the test client's calls come from. */
  get clientAddress(): string {
    return `${this.subnet}.${CLIENT_HOST}`;
  }

  /** `ip netns exec <ns> file args…`: ip execs the command, so the child's pid is the command's. */
  command(id: string, file: string, args: readonly string[]): { file: string; args: string[] } {
    return { file: 'ip', args: ['netns', 'exec', this.namespace(id), file, ...args] };
  }

  /** Starts a process in a node's namespace; close() kills it if it still runs. */
  spawn(
    id: string,
    file: string,
    args: readonly string[],
    options: SpawnOptions = {},
  ): ChildProcess {
    this.assertOpen();
    const command = this.command(id, file, args);
    const child = spawn(command.file, command.args, options);
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Adds an address (a /32 on loopback) inside a node's namespace, e.g. for a proxy to listen on. */
  async addLocalAddress(id: string, ip: string): Promise<void> {
    this.assertOpen();
    await run('ip', ['-n', this.namespace(id), 'addr', 'add', `${ip}/32`, 'dev', 'lo']);
  }

  /** The cuts in force, as directed (from, to) endpoint pairs. */
  cuts(): Cut[] {
    return [...this.current].map(parseCut);
  }

  /** Replaces the cuts in force with `grudge` (directed pairs of node ids or CLIENT); atomic. */
  async apply(grudge: Grudge): Promise<void> {
    this.assertOpen();
    const endpoints = new Set([...this.nodeIds, CLIENT]);
    for (const endpoint of endpointsOf(grudge)) {
      if (!endpoints.has(endpoint)) {
        throw new Error(
          `unknown endpoint ${JSON.stringify(endpoint)} in a cut (known: ${[...endpoints].join(', ')})`,
        );
      }
    }
    const lines = [`flush chain bridge ${NFT_TABLE} ${NFT_CHAIN}`];
    for (const key of grudge) {
      const [from, to] = parseCut(key);
      lines.push(
        `add rule bridge ${NFT_TABLE} ${NFT_CHAIN} ip saddr ${this.ip(from)} ip daddr ${this.ip(to)} drop`,
      );
    }
    await this.nft(`${lines.join('\n')}\n`);
    this.current = new Set(grudge);
  }

  /** Removes every cut. */
  heal(): Promise<void> {
    return this.apply(new Set());
  }

  // The shapes of grudge.ts, applied (each replaces the cuts in force).

  /** One node cut from every other node; the client still reaches it. */
  isolate(id: string): Promise<void> {
    return this.apply(isolate(id, this.nodeIds));
  }

  /** Every node in exactly one group; groups cannot reach each other. */
  partition(groups: readonly (readonly string[])[]): Promise<void> {
    return this.apply(partition(groups, this.nodeIds));
  }

  /** Each node sees a majority, no two the same one; `order` places the nodes on the ring. */
  majoritiesRing(order: readonly string[] = this.nodeIds): Promise<void> {
    return this.apply(majoritiesRing(this.sameNodes(order)));
  }

  /** Two halves joined only through the middle node of `order`. */
  bridge(order: readonly string[] = this.nodeIds): Promise<void> {
    return this.apply(bridge(this.sameNodes(order)));
  }

  /** Packets from `from` to `to` dropped, the reverse passing (TCP stalls both ways). */
  dropOneWay(from: string, to: string): Promise<void> {
    return this.apply(oneWay(from, to));
  }

  /** The test client (root namespace) and one node cannot reach each other. */
  cutClientFrom(id: string): Promise<void> {
    return this.apply(between(CLIENT, id));
  }

  /** Kills what still runs in the namespaces, then removes every namespace, link and table. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    process.removeListener('exit', this.exitHook);
    await this.killAll();
    for (const namespace of [...this.created].reverse()) {
      await run('ip', ['netns', 'del', namespace]).catch(() => {});
    }
    // The root end of the uplink goes with its peer in the hub, once the kernel has freed it.
    const deadline = performance.now() + SETTLE_TIMEOUT_MS;
    while (await linkExists(this.rootLink)) {
      if (performance.now() > deadline) {
        await run('ip', ['link', 'del', this.rootLink]).catch(() => {});
        break;
      }
      await sleep(50);
    }
  }

  private async build(): Promise<void> {
    const hub = this.hubNamespace;
    await run('ip', ['-n', hub, 'link', 'add', BRIDGE, 'type', 'bridge']);
    await run('ip', ['-n', hub, 'link', 'set', BRIDGE, 'up']);
    await run('ip', ['-n', hub, 'link', 'set', 'lo', 'up']);
    await run('ip', [
      'link',
      'add',
      this.rootLink,
      'type',
      'veth',
      'peer',
      'name',
      HUB_UPLINK,
      'netns',
      hub,
    ]);
    await run('ip', ['-n', hub, 'link', 'set', HUB_UPLINK, 'master', BRIDGE, 'up']);
    await run('ip', ['addr', 'add', `${this.clientAddress}/24`, 'dev', this.rootLink]);
    await run('ip', ['link', 'set', this.rootLink, 'up']);
    for (const [index, id] of this.nodeIds.entries()) {
      const namespace = this.namespace(id);
      const port = `p${index + 1}`;
      await this.addNamespace(namespace);
      // Both ends are made inside their namespaces: nothing of it appears in the root one.
      await run('ip', [
        'link',
        'add',
        'eth0',
        'netns',
        namespace,
        'type',
        'veth',
        'peer',
        'name',
        port,
        'netns',
        hub,
      ]);
      await run('ip', ['-n', hub, 'link', 'set', port, 'master', BRIDGE, 'up']);
      await run('ip', ['-n', namespace, 'addr', 'add', `${this.address(id)}/24`, 'dev', 'eth0']);
      await run('ip', ['-n', namespace, 'link', 'set', 'eth0', 'up']);
      await run('ip', ['-n', namespace, 'link', 'set', 'lo', 'up']);
    }
    await this.nft(
      `add table bridge ${NFT_TABLE}\n` +
        `add chain bridge ${NFT_TABLE} ${NFT_CHAIN} { type filter hook forward priority 0; policy accept; }\n`,
    );
  }

  private async addNamespace(name: string): Promise<void> {
    await run('ip', ['netns', 'add', name]);
    this.created.push(name);
  }

  private nft(script: string): Promise<string> {
    return run('ip', ['netns', 'exec', this.hubNamespace, 'nft', '-f', '-'], script);
  }

  private ip(endpoint: string): string {
    return endpoint === CLIENT ? this.clientAddress : this.address(endpoint);
  }

  private sameNodes(order: readonly string[]): readonly string[] {
    const sorted = (ids: readonly string[]): string => [...ids].sort().join(',');
    if (sorted(order) !== sorted(this.nodeIds)) {
      throw new Error(
        `expected an order of every node (${this.nodeIds.join(', ')}), got ${order.join(', ')}`,
      );
    }
    return order;
  }

  private indexOf(id: string): number {
    const index = this.nodeIds.indexOf(id);
    if (index < 0)
      throw new Error(`unknown node ${JSON.stringify(id)} (nodes: ${this.nodeIds.join(', ')})`);
    return index;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`network ${this.runName} is closed`);
  }

  private async killAll(): Promise<void> {
    const exits = [...this.children].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) resolve();
          else child.once('exit', () => resolve());
        }),
    );
    for (const child of this.children) child.kill('SIGKILL');
    // Also whatever the namespaces hold that this process did not start itself.
    for (const namespace of this.created) await killProcessesIn(namespace);
    await Promise.race([Promise.all(exits), sleep(SETTLE_TIMEOUT_MS)]);
  }

  /** At process exit only synchronous calls run: kill what is tracked, delete the namespaces. */
  private removeNowSync(): void {
    if (this.closed) return;
    this.closed = true;
    for (const child of this.children) child.kill('SIGKILL');
    for (const namespace of [...this.created].reverse())
      runSyncQuietly('ip', ['netns', 'del', namespace]);
    runSyncQuietly('ip', ['link', 'del', this.rootLink]);
  }
}

/** Why namespaces cannot be used here, or null when they can be tried. */
async function whyNotPossible(nodeIds: readonly string[]): Promise<string | null> {
  if (nodeIds.length === 0 || nodeIds.length > NODES_MAX) {
    throw new Error(`a network needs 1..${NODES_MAX} nodes, got ${nodeIds.length}`);
  }
  if (new Set(nodeIds).size !== nodeIds.length || nodeIds.includes(CLIENT)) {
    throw new Error(`node ids must be distinct and not "${CLIENT}": ${nodeIds.join(', ')}`);
  }
  if (process.platform !== 'linux')
    return `network namespaces need Linux, this is ${process.platform}`;
  const uid = process.getuid?.();
  if (uid !== 0) return `network namespaces need root, running as uid ${String(uid)}`;
  if (!(await available('ip', ['-V'])))
    return 'iproute2 is not installed (`ip` not found): apt-get install iproute2';
  if (!(await available('nft', ['--version'])))
    return 'nftables is not installed (`nft` not found): apt-get install nftables';
  return null;
}

/**
 * Namespaces of runs whose process is gone (killed before it could clean up), with
 * whatever still runs in them: nodes of a killed harness outlive it.
 */
async function sweepStaleRuns(): Promise<void> {
  const listing = await run('ip', ['netns', 'list']);
  const pattern = new RegExp(`^${NAME_PREFIX}-(\\d+)-[a-z0-9]+-\\S+`);
  for (const line of listing.split('\n')) {
    const match = pattern.exec(line.trim());
    if (match === null || processAlive(Number(match[1]))) continue;
    await killProcessesIn(match[0]);
    await run('ip', ['netns', 'del', match[0]]).catch(() => {});
  }
}

async function killProcessesIn(namespace: string): Promise<void> {
  const pids = await run('ip', ['netns', 'pids', namespace]).catch(() => '');
  for (const pid of pids.split(/\s+/).filter((text) => /^\d+$/.test(text))) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A 10.A.B.0/24 that overlaps no address or route of the root namespace (other runs' included). */
async function pickSubnet(): Promise<string> {
  const addresses = await run('ip', ['-4', '-o', 'addr', 'show']);
  const routes = await run('ip', ['-4', 'route', 'show', 'table', 'all']);
  const taken = [...usedPrefixes(addresses, /\binet (\d+\.\d+\.\d+\.\d+(?:\/\d+)?)/g)];
  for (const line of routes.split('\n')) {
    // Skip the route type (local, broadcast, …) to the destination; "default" covers
    // everything only as a fallback, so it does not count as taken.
    const match = /^(?:[a-z]+ )?(\d+\.\d+\.\d+\.\d+(?:\/\d+)?)/.exec(line.trim());
    if (match?.[1] !== undefined) taken.push(toPrefix(match[1]));
  }
  for (let attempt = 0; attempt < SUBNET_ATTEMPTS_MAX; attempt++) {
    const subnet = `10.${randomInt(100, 200)}.${randomInt(0, 256)}`;
    const candidate = toPrefix(`${subnet}.0/24`);
    if (!taken.some((prefix) => overlaps(prefix, candidate))) return subnet;
  }
  throw new Error(`no free 10.x.y.0/24 subnet found in ${SUBNET_ATTEMPTS_MAX} attempts`);
}

interface Prefix {
  readonly base: number;
  readonly bits: number;
}

function* usedPrefixes(text: string, pattern: RegExp): Generator<Prefix> {
  for (const match of text.matchAll(pattern)) if (match[1] !== undefined) yield toPrefix(match[1]);
}

function toPrefix(cidr: string): Prefix {
  const [ip = '', bitsText] = cidr.split('/');
  const bits = bitsText === undefined ? 32 : Number(bitsText);
  const value = ip.split('.').reduce((sum, octet) => sum * 256 + Number(octet), 0);
  return { base: maskOf(value, bits), bits };
}

function maskOf(value: number, bits: number): number {
  return bits === 0 ? 0 : Math.floor(value / 2 ** (32 - bits)) * 2 ** (32 - bits);
}

function overlaps(a: Prefix, b: Prefix): boolean {
  const bits = Math.min(a.bits, b.bits);
  return maskOf(a.base, bits) === maskOf(b.base, bits);
}

async function linkExists(name: string): Promise<boolean> {
  return run('ip', ['link', 'show', name]).then(
    () => true,
    () => false,
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
