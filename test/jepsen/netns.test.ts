/**
 * The fault infrastructure of the Jepsen suite, proved against real `dlm serve`
 * processes, each in its own network namespace (src/tools/jepsen/netns.ts):
 *
 * - no bypass: once a node is isolated, its peers' per-sender received-message
 *   counters (/metrics, dlm_peer_messages_received_total) stop for it and its own stop
 *   for them, while the majority's counters for each other keep rising; after the heal
 *   they resume and the cluster converges;
 * - the majority keeps serving Acquire; the isolated node cannot;
 * - the same proof for the per-link proxies (proxy-mesh.ts), including that one
 *   directed link can be cut alone (n1's messages to n3 stop, n3's to n1 do not), and
 *   that a delay on the links shows in an Acquire's latency.
 *
 * Needs root, iproute2 and nftables (.ci/run installs them). Without them each test
 * is reported as skipped with the reason, never as passed.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, type TestContext } from 'vitest';
import { NetnsNetwork } from '../../src/tools/jepsen/netns.ts';
import { NetnsCluster } from '../../src/tools/jepsen/netns-cluster.ts';
import { ProxyMesh } from '../../src/tools/jepsen/proxy-mesh.ts';
import { receivedFrom, sample, scrape } from '../../src/tools/jepsen/scrape.ts';
import { callAt, callUntil, closeClients, requestId } from './grpc-calls.ts';

const NODES = ['n1', 'n2', 'n3'] as const;
/** Elections in a few hundred ms, as in the other real-process tests. */
const EXTRA_CONFIG = { raft: { tickIntervalMs: 20 } };
/** Three `dlm serve` processes load (tsx) and elect; 8-12 s seen on a busy 2-core machine. */
const STARTUP_TIMEOUT_MS = 30_000;
/** After a cut, what was already on the wire may still land; counting starts after this. */
const CUT_SETTLE_MS = 600;
/** How long counters must stand still to count as stopped. */
const QUIET_WINDOW_MS = 1_000;

let network: NetnsNetwork | null = null;
let mesh: ProxyMesh | null = null;
let cluster: NetnsCluster | null = null;
let dir: string | null = null;

afterEach(async () => {
  closeClients();
  await cluster?.stopAll();
  await mesh?.close();
  await network?.close();
  if (dir !== null && process.env.DLM_KEEP_LOGS === undefined)
    rmSync(dir, { recursive: true, force: true });
  cluster = null;
  mesh = null;
  network = null;
  dir = null;
});

/** A network, or the test is skipped with the reason printed. */
async function networkOrSkip(context: TestContext): Promise<NetnsNetwork> {
  const created = await NetnsNetwork.create({ nodeIds: NODES });
  if (!created.ok) {
    console.warn(`skipped: ${created.skipped}`);
    context.skip(created.skipped);
    throw new Error('unreachable: skip() throws');
  }
  network = created.network;
  return created.network;
}

function startCluster(net: NetnsNetwork, withMesh?: ProxyMesh): NetnsCluster {
  dir = mkdtempSync(join(tmpdir(), 'dlm-netns-'));
  cluster = new NetnsCluster({
    network: net,
    dir,
    extraConfig: EXTRA_CONFIG,
    ...(withMesh === undefined ? {} : { mesh: withMesh }),
  });
  cluster.startAll();
  return cluster;
}

function logsOf(c: NetnsCluster): string {
  return NODES.map(
    (id) => `--- ${id}\n${readFileSync(c.logPath(id), 'utf8').split('\n').slice(-15).join('\n')}`,
  ).join('\n');
}

/** The leader, once every node names the same one (bounded by timeoutMs). */
async function agreedLeader(
  c: NetnsCluster,
  among: readonly string[],
  timeoutMs: number,
): Promise<string> {
  const endMs = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < endMs) {
    const leaders = await Promise.all(
      among.map((id) =>
        callAt(c.node(id).clientAddress, 'Status', {}, 500, 'Cluster').then(
          (status) => String(status.leader_id ?? ''),
          () => '',
        ),
      ),
    );
    last = leaders.join(',');
    const first = leaders[0] ?? '';
    if (first !== '' && among.includes(first) && leaders.every((leader) => leader === first))
      return first;
    await sleep(100);
  }
  throw new Error(
    `no leader agreed by ${among.join(', ')} within ${timeoutMs} ms (last: ${last})\n${logsOf(c)}`,
  );
}

type Counts = Map<string, Map<string, number>>;

/** dlm_peer_messages_received_total of every node, by receiver then sender. */
async function receivedCounts(c: NetnsCluster): Promise<Counts> {
  const counts: Counts = new Map();
  for (const id of NODES) counts.set(id, receivedFrom(await scrape(c.node(id).metricsAddress)));
  return counts;
}

function count(counts: Counts, receiver: string, sender: string): number {
  return counts.get(receiver)?.get(sender) ?? 0;
}

/** Waits until `check` holds of fresh counts (bounded), returning them. */
async function countsUntil(
  c: NetnsCluster,
  what: string,
  check: (counts: Counts) => boolean,
  timeoutMs: number,
): Promise<Counts> {
  const endMs = Date.now() + timeoutMs;
  for (;;) {
    const counts = await receivedCounts(c);
    if (check(counts)) return counts;
    if (Date.now() > endMs)
      throw new Error(
        `${what}: not within ${timeoutMs} ms; counts ${JSON.stringify(Object.fromEntries([...counts].map(([k, v]) => [k, Object.fromEntries(v)])))}`,
      );
    await sleep(100);
  }
}

/** Every node applied the same index, at or past `atLeast`. */
async function converged(c: NetnsCluster, atLeast: number, timeoutMs: number): Promise<number> {
  const endMs = Date.now() + timeoutMs;
  let last: number[] = [];
  while (Date.now() < endMs) {
    last = await Promise.all(
      NODES.map(
        async (id) =>
          sample(await scrape(c.node(id).metricsAddress), 'dlm_raft_applied_index') ?? -1,
      ),
    );
    const first = last[0] ?? -1;
    if (first >= atLeast && last.every((index) => index === first)) return first;
    await sleep(100);
  }
  throw new Error(
    `nodes did not converge on an applied index >= ${atLeast} within ${timeoutMs} ms (last: ${last.join(', ')})`,
  );
}

async function openSession(address: string): Promise<string> {
  const opened = await callUntil(
    address,
    'OpenSession',
    { ttl_ms: 60_000, client_name: 'netns-test', request_id: requestId() },
    10_000,
  );
  return String(opened.session_id);
}

function acquireRequest(sessionId: string, lock: string): Record<string, unknown> {
  return {
    lock,
    session_id: sessionId,
    mode: 'EXCLUSIVE',
    wait_ms: 0,
    request_id: requestId(),
    owner: 'netns-test',
  };
}

function acquire(
  address: string,
  sessionId: string,
  lock: string,
  deadlineMs: number,
): Promise<Record<string, unknown>> {
  return callAt(address, 'Acquire', acquireRequest(sessionId, lock), deadlineMs);
}

let phaseStartMs = 0;
/** Prints how long each step took, so a slow run shows where its time went. */
function phase(name: string): void {
  const nowMs = performance.now();
  if (phaseStartMs !== 0) console.log(`  ${name}: +${(nowMs - phaseStartMs).toFixed(0)} ms`);
  phaseStartMs = nowMs;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('network namespaces: no peer traffic bypasses a partition', () => {
  it('an isolated node hears nothing and is heard by no one; the majority serves, the minority cannot; the heal converges; then a one-way cut (reported as TCP makes it), the client cut from the leader, and a bridge', async (context) => {
    phaseStartMs = performance.now();
    const net = await networkOrSkip(context);
    phase('namespaces created');
    const c = startCluster(net);
    const leader = await agreedLeader(c, NODES, STARTUP_TIMEOUT_MS);
    phase('leader agreed');
    // Isolate a follower: the leader stays, so the majority's service is uninterrupted.
    const isolated = NODES.find((id) => id !== leader) as string;
    const majority = NODES.filter((id) => id !== isolated);
    const other = majority.find((id) => id !== leader) as string;
    const sessionId = await openSession(c.node(leader).clientAddress);
    // Every link carries traffic before the cut, or "stopped" below would prove nothing.
    await countsUntil(
      c,
      'traffic on every link',
      (counts) =>
        NODES.every((to) => NODES.every((from) => from === to || count(counts, to, from) > 0)),
      5_000,
    );

    phase('session opened, every link carries traffic');
    await net.isolate(isolated);
    await sleep(CUT_SETTLE_MS);
    const before = await receivedCounts(c);
    await sleep(QUIET_WINDOW_MS);
    const after = await receivedCounts(c);
    for (const peer of majority) {
      expect(count(after, peer, isolated), `${peer} still hears ${isolated}`).toBe(
        count(before, peer, isolated),
      );
      expect(count(after, isolated, peer), `${isolated} still hears ${peer}`).toBe(
        count(before, isolated, peer),
      );
    }
    // The counters work: the majority still hears itself (heartbeats every 20 ms).
    expect(count(after, other, leader)).toBeGreaterThan(count(before, other, leader));
    expect(count(after, leader, other)).toBeGreaterThan(count(before, leader, other));

    // The majority serves Acquire, through either of its nodes; the isolated node cannot.
    const granted = await acquire(c.node(other).clientAddress, sessionId, 'netns/a', 5_000);
    expect(granted.acquired).toBe(true);
    const minority = await acquire(
      c.node(isolated).clientAddress,
      sessionId,
      'netns/b',
      1_500,
    ).then(
      (response) => `answered ${JSON.stringify(response)}`,
      (error: { code?: number; details?: string }) => `failed ${error.code}: ${error.details}`,
    );
    // UNAVAILABLE (14) or DEADLINE_EXCEEDED (4): never a grant.
    expect(minority).toMatch(/^failed (14|4):/);

    phase('isolated: counters stopped, majority served, minority refused');
    await net.heal();
    const healed = await countsUntil(
      c,
      'traffic resuming after the heal',
      (counts) =>
        majority.every(
          (peer) =>
            count(counts, peer, isolated) > count(after, peer, isolated) &&
            count(counts, isolated, peer) > count(after, isolated, peer),
        ),
      10_000,
    );
    expect(healed.size).toBe(3);
    const appliedIndex = Number((granted.header as { index?: string }).index ?? 0);
    await converged(c, appliedIndex, 10_000);
    // The healed node serves again, and sees the grant made while it was away.
    const again = await callUntil(
      c.node(isolated).clientAddress,
      'Acquire',
      {
        lock: 'netns/a',
        session_id: sessionId,
        mode: 'EXCLUSIVE',
        wait_ms: 0,
        request_id: requestId(),
        owner: 'netns-test',
      },
      10_000,
    );
    expect(again.fencing_token).toBe(granted.fencing_token);
    phase('healed: traffic resumed, converged, healed node serves');

    // One way: packets from the follower to the leader dropped, the reverse passing.
    await countsUntil(
      c,
      'traffic both ways again',
      (counts) =>
        count(counts, leader, isolated) > count(healed, leader, isolated) &&
        count(counts, isolated, leader) > count(healed, isolated, leader),
      10_000,
    );
    await net.dropOneWay(isolated, leader);
    await sleep(CUT_SETTLE_MS);
    const oneWayBefore = await receivedCounts(c);
    await sleep(QUIET_WINDOW_MS);
    const oneWayAfter = await receivedCounts(c);
    const cutDirection =
      count(oneWayAfter, leader, isolated) - count(oneWayBefore, leader, isolated);
    const openDirection =
      count(oneWayAfter, isolated, leader) - count(oneWayBefore, isolated, leader);
    // TCP needs the acknowledgements the cut drops, so the open direction stalls too.
    console.log(
      `one-way cut ${isolated}->${leader} over ${QUIET_WINDOW_MS} ms: ${leader} received ${cutDirection} from ${isolated}, ${isolated} received ${openDirection} from ${leader}`,
    );
    expect(cutDirection).toBe(0);
    await net.heal();
    await countsUntil(
      c,
      'traffic resuming both ways after the one-way cut',
      // Both ways: the isolated node's pre-votes reach the leader as soon as the cut
      // heals, but it knows the leader again only once the leader's link to it has come
      // back from its reconnect backoff and a heartbeat arrived.
      (counts) =>
        count(counts, leader, isolated) > count(oneWayAfter, leader, isolated) &&
        count(counts, isolated, leader) > count(oneWayAfter, isolated, leader),
      10_000,
    );
    phase('one-way cut and heal');

    // The client cut from the leader: the leader does not answer it, a follower serves it
    // (forwarding to the leader over the peer links, which stay up).
    await net.cutClientFrom(leader);
    const fromLeader = await callAt(
      c.node(leader).clientAddress,
      'Status',
      {},
      1_000,
      'Cluster',
    ).then(
      () => 'answered',
      (error: { code?: number }) => `failed ${error.code}`,
    );
    expect(fromLeader).toBe('failed 4');
    // Retried as a client would (same request id, so at most one grant): a follower that
    // was a pre-candidate a moment ago says "knows no leader" until a heartbeat lands.
    const viaFollower = await callUntil(
      c.node(isolated).clientAddress,
      'Acquire',
      acquireRequest(sessionId, 'netns/c'),
      5_000,
    );
    expect(viaFollower.acquired).toBe(true);
    await net.heal();
    phase('client cut from the leader');

    // A bridge, a grudge no pair of separate networks could make: the leader in the
    // middle sees both followers, which cannot see each other.
    const left = other;
    const right = isolated;
    await net.bridge([left, leader, right]);
    await sleep(CUT_SETTLE_MS);
    const bridgeBefore = await receivedCounts(c);
    await sleep(QUIET_WINDOW_MS);
    const bridgeAfter = await receivedCounts(c);
    expect(count(bridgeAfter, left, right)).toBe(count(bridgeBefore, left, right));
    expect(count(bridgeAfter, right, left)).toBe(count(bridgeBefore, right, left));
    for (const side of [left, right]) {
      expect(count(bridgeAfter, side, leader), `${side} hears the bridge`).toBeGreaterThan(
        count(bridgeBefore, side, leader),
      );
      expect(count(bridgeAfter, leader, side), `the bridge hears ${side}`).toBeGreaterThan(
        count(bridgeBefore, leader, side),
      );
    }
    await net.heal();
    phase('bridge');
  });
});

describe('per-link proxies: no peer traffic bypasses them', () => {
  it("blackholing one node's links stops its messages both ways; one directed link can be cut alone; kernel cuts hold under the proxies; a delay shows", async (context) => {
    phaseStartMs = performance.now();
    const net = await networkOrSkip(context);
    mesh = await ProxyMesh.start({ network: net, peerPort: 7000, seed: 42 });
    phase('namespaces and proxies started');
    const m = mesh;
    const c = startCluster(net, m);
    const leader = await agreedLeader(c, NODES, STARTUP_TIMEOUT_MS);
    phase('leader agreed');
    await countsUntil(
      c,
      'traffic on every link',
      (counts) =>
        NODES.every((to) => NODES.every((from) => from === to || count(counts, to, from) > 0)),
      5_000,
    );
    // Every directed link's proxy carried bytes: the nodes dial the advertised addresses.
    const stats = await m.stats();
    expect(stats.size).toBe(6);
    for (const [link, linkStats] of stats) expect(linkStats.bytesToTarget, link).toBeGreaterThan(0);

    phase('every link carries traffic through its proxy');
    // All four links of one follower blackholed: no message crosses either way.
    const isolated = NODES.find((id) => id !== leader) as string;
    const majority = NODES.filter((id) => id !== isolated);
    for (const peer of majority) {
      await m.set(isolated, peer, { blackhole: true });
      await m.set(peer, isolated, { blackhole: true });
    }
    await sleep(CUT_SETTLE_MS);
    const before = await receivedCounts(c);
    await sleep(QUIET_WINDOW_MS);
    const after = await receivedCounts(c);
    for (const peer of majority) {
      expect(count(after, peer, isolated), `${peer} still hears ${isolated}`).toBe(
        count(before, peer, isolated),
      );
      expect(count(after, isolated, peer), `${isolated} still hears ${peer}`).toBe(
        count(before, isolated, peer),
      );
    }
    const other = majority.find((id) => id !== leader) as string;
    expect(count(after, other, leader)).toBeGreaterThan(count(before, other, leader));
    await m.setAll({});
    await countsUntil(
      c,
      'traffic resuming after the blackhole',
      (counts) =>
        majority.every(
          (peer) =>
            count(counts, peer, isolated) > count(after, peer, isolated) &&
            count(counts, isolated, peer) > count(after, isolated, peer),
        ),
      10_000,
    );

    phase('blackholed and restored');
    // One directed link: the leader's messages to the follower stop, the follower's to
    // the leader do not (each node sends on its own outbound connection).
    await m.set(leader, isolated, { blackhole: true });
    await sleep(CUT_SETTLE_MS);
    const oneWayBefore = await receivedCounts(c);
    await sleep(QUIET_WINDOW_MS);
    const oneWayAfter = await receivedCounts(c);
    expect(count(oneWayAfter, isolated, leader)).toBe(count(oneWayBefore, isolated, leader));
    expect(count(oneWayAfter, leader, isolated)).toBeGreaterThan(
      count(oneWayBefore, leader, isolated),
    );
    await m.setAll({});
    await agreedLeader(c, NODES, 10_000);

    phase('one directed link cut and restored');

    // The kernel's cuts hold for proxied traffic too: a proxy sends from its node's own
    // bridge address, so isolating a node in the hub stops its links with every proxy
    // passing bytes.
    await net.isolate(isolated);
    await sleep(CUT_SETTLE_MS);
    const composedBefore = await receivedCounts(c);
    await sleep(QUIET_WINDOW_MS);
    const composedAfter = await receivedCounts(c);
    for (const peer of majority) {
      expect(count(composedAfter, peer, isolated)).toBe(count(composedBefore, peer, isolated));
      expect(count(composedAfter, isolated, peer)).toBe(count(composedBefore, isolated, peer));
    }
    await net.heal();
    await countsUntil(
      c,
      'traffic resuming after the kernel cut',
      (counts) =>
        majority.every(
          (peer) => count(counts, peer, isolated) > count(composedAfter, peer, isolated),
        ),
      10_000,
    );
    await agreedLeader(c, NODES, 10_000);
    phase('kernel cut under the proxies');
    // 60 ± 10 ms each way on every link: a write needs a round trip to a follower, so at
    // least 100 ms. (Kept below the 200 ms election timeout of these 20 ms ticks: with
    // 150 ms each way, leadership was seen to move, and the Acquire took 2-4 s.)
    const sessionId = await openSession(c.node(leader).clientAddress);
    const fastStartMs = performance.now();
    await acquire(c.node(leader).clientAddress, sessionId, 'proxy/fast', 5_000);
    const fastMs = performance.now() - fastStartMs;
    await m.setAll({ delayMs: 60, jitterMs: 10 });
    const slowStartMs = performance.now();
    const slow = await acquire(c.node(leader).clientAddress, sessionId, 'proxy/slow', 10_000);
    const slowMs = performance.now() - slowStartMs;
    console.log(
      `Acquire on the leader: ${fastMs.toFixed(0)} ms without delay, ${slowMs.toFixed(0)} ms with 60 ± 10 ms per link direction`,
    );
    expect(slow.acquired).toBe(true);
    expect(slowMs).toBeGreaterThanOrEqual(100);
    phase('delay measured');
  });
});
