/**
 * Partition shapes as "grudges": the set of directed links that are cut, each written
 * "from>to" where from and to are node ids or the client endpoint. Pure functions, so a
 * seeded schedule can build them and tests can check them without any network.
 *
 * Node order matters for ring and bridge shapes; a schedule shuffles the ids (with a
 * seeded PRNG) before calling them to vary which node lands where.
 */
export type Grudge = ReadonlySet<string>;
export type Cut = readonly [from: string, to: string];

export function cutKey(from: string, to: string): string {
  if (from.includes('>') || to.includes('>'))
    throw new Error(`an endpoint name may not contain ">": ${from}, ${to}`);
  return `${from}>${to}`;
}

export function parseCut(key: string): Cut {
  const [from, to, ...rest] = key.split('>');
  if (from === undefined || to === undefined || rest.length > 0)
    throw new Error(`not a cut: ${JSON.stringify(key)}`);
  return [from, to];
}

/** Cuts both directions between every pair of endpoints in different groups. */
export function partition(
  groups: readonly (readonly string[])[],
  nodes: readonly string[],
): Grudge {
  const groupOf = new Map<string, number>();
  for (const [index, group] of groups.entries()) {
    for (const id of group) {
      if (groupOf.has(id)) throw new Error(`${JSON.stringify(id)} is in two groups of a partition`);
      groupOf.set(id, index);
    }
  }
  const missing = nodes.filter((id) => !groupOf.has(id));
  if (missing.length > 0)
    throw new Error(`a partition must place every node; missing: ${missing.join(', ')}`);
  const cuts = new Set<string>();
  const members = [...groupOf.keys()];
  for (const a of members) {
    for (const b of members) if (groupOf.get(a) !== groupOf.get(b)) cuts.add(cutKey(a, b));
  }
  return cuts;
}

/** One node cut off from every other node (the client still reaches it). */
export function isolate(id: string, nodes: readonly string[]): Grudge {
  requireNode(id, nodes);
  return partition([[id], nodes.filter((other) => other !== id)], nodes);
}

/**
 * Every node sees a majority (itself included), and no two nodes see the same one:
 * nodes on a ring, each linked only to its nearest neighbours. Needs 4 or more nodes;
 * with 3, any node that sees a majority sees the node the others see.
 */
export function majoritiesRing(nodes: readonly string[]): Grudge {
  const n = nodes.length;
  if (n < 4) throw new Error(`majorities-ring needs at least 4 nodes, got ${n}`);
  // Neighbours on each side: enough that 2·reach + 1 ≥ a majority (⌊n/2⌋ + 1).
  const reach = Math.ceil(Math.floor(n / 2) / 2);
  const cuts = new Set<string>();
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const distance = Math.min(Math.abs(i - j), n - Math.abs(i - j));
      if (distance > reach) cuts.add(cutKey(nodes[i] as string, nodes[j] as string));
    }
  }
  return cuts;
}

/**
 * Two halves that cannot see each other, and one node (the middle one in `nodes`
 * order) that sees both: it alone can reach a majority, and must stay or become leader.
 */
export function bridge(nodes: readonly string[]): Grudge {
  if (nodes.length < 3) throw new Error(`a bridge needs at least 3 nodes, got ${nodes.length}`);
  const middle = Math.floor(nodes.length / 2);
  const left = nodes.slice(0, middle);
  const right = nodes.slice(middle + 1);
  const cuts = new Set<string>();
  for (const a of left) {
    for (const b of right) {
      cuts.add(cutKey(a, b));
      cuts.add(cutKey(b, a));
    }
  }
  return cuts;
}

/** The bridge node of bridge(nodes). */
export function bridgeNode(nodes: readonly string[]): string {
  return nodes[Math.floor(nodes.length / 2)] as string;
}

/** Packets from `from` to `to` are dropped; the other direction passes. */
export function oneWay(from: string, to: string): Grudge {
  return new Set([cutKey(from, to)]);
}

/** Both directions between one endpoint and another (e.g. the client and the leader). */
export function between(a: string, b: string): Grudge {
  return new Set([cutKey(a, b), cutKey(b, a)]);
}

export function union(...grudges: readonly Grudge[]): Grudge {
  return new Set(grudges.flatMap((grudge) => [...grudge]));
}

export function endpointsOf(grudge: Grudge): Set<string> {
  const endpoints = new Set<string>();
  for (const key of grudge) for (const endpoint of key.split('>')) endpoints.add(endpoint);
  return endpoints;
}

/** Who `id` can still send to, among `endpoints`. */
export function reachable(grudge: Grudge, id: string, endpoints: readonly string[]): string[] {
  return endpoints.filter((other) => other === id || !grudge.has(cutKey(id, other)));
}

/** For logs and reports: "n1>n2 n2>n1", or "none". */
export function cutsText(grudge: Grudge): string {
  return grudge.size === 0 ? 'none' : [...grudge].sort().join(' ');
}

function requireNode(id: string, nodes: readonly string[]): void {
  if (!nodes.includes(id))
    throw new Error(`unknown node ${JSON.stringify(id)} (nodes: ${nodes.join(', ')})`);
}
