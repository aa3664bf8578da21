/**
 * Listen addresses apart from advertised ones (peerListenAddress, clientListenAddress),
 * with real `dlm serve` processes on loopback: n1 binds its peer server on a port that
 * no one dials and its client API on 0.0.0.0, while it advertises other addresses; a
 * proxy (src/tools/jepsen/proxy.ts) forwards its advertised peer address to where it
 * listens, as NAT or a container port map would. Needs no root.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { LinkProxy } from '../../src/tools/jepsen/proxy.ts';
import { receivedFrom, scrape } from '../../src/tools/jepsen/scrape.ts';
import { callAt, closeClients } from '../jepsen/grpc-calls.ts';
import { freePort } from '../support/free-port.ts';
import { newRequestId, ProcessCluster } from '../support/process-cluster.ts';

let cluster: ProcessCluster | null = null;
let proxy: LinkProxy | null = null;

afterEach(async () => {
  closeClients();
  await cluster?.stopAll();
  await proxy?.close();
  cluster?.remove();
  cluster = null;
  proxy = null;
});

/** Adds fields to one node in both config files the cluster wrote. */
function editNode(c: ProcessCluster, id: string, fields: Record<string, string>): void {
  for (const path of [c.configPath, c.allNodesConfigPath]) {
    const config = JSON.parse(readFileSync(path, 'utf8')) as { nodes: { id: string }[] };
    config.nodes = config.nodes.map((node) => (node.id === id ? { ...node, ...fields } : node));
    writeFileSync(path, JSON.stringify(config));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('a node that listens elsewhere than it advertises', () => {
  it('is reached by peers and clients only through its advertised addresses', async () => {
    cluster = await ProcessCluster.create(3, { raft: { tickIntervalMs: 20 } });
    const c = cluster;
    const n1 = c.nodes[0];
    if (n1 === undefined) throw new Error('no n1');
    const peerListenAddress = `127.0.0.1:${await freePort()}`;
    const clientPort = n1.clientAddress.split(':')[1];
    editNode(c, 'n1', { peerListenAddress, clientListenAddress: `0.0.0.0:${clientPort}` });
    // Peers dial n1.peerAddress; only this proxy listens there.
    proxy = await LinkProxy.start({ listen: n1.peerAddress, target: peerListenAddress, seed: 1 });
    c.startAll();
    await c.waitForLeader(30_000);

    // Every peer message n1 gets came through the advertised address.
    const opened = await c.callNode('n1', 'OpenSession', {
      ttl_ms: 30_000,
      client_name: 'listen',
      request_id: newRequestId(),
    });
    const acquired = await c.callNode('n1', 'Acquire', {
      lock: 'listen/a',
      session_id: opened.session_id,
      mode: 'EXCLUSIVE',
      wait_ms: 0,
      request_id: newRequestId(),
      owner: 'listen',
    });
    expect(acquired.acquired).toBe(true);
    expect(proxy.stats().bytesToTarget).toBeGreaterThan(0);
    // A gRPC peer stream answers on the same connection; a TCP peer link carries one
    // direction only (n1 dials its own links to its peers), so nothing comes back.
    const transport = (JSON.parse(readFileSync(c.configPath, 'utf8')) as { peerTransport?: string })
      .peerTransport;
    if (transport === 'grpc') expect(proxy.stats().bytesToSource).toBeGreaterThan(0);

    // What n1 reports, and tells its peers, is the advertised address, never the listen one.
    const status = await c.callNode('n1', 'Status', {}, 10_000, 'Cluster');
    const members = status.members as {
      id: string;
      peer_address: string;
      client_address: string;
    }[];
    const self = members.find((member) => member.id === 'n1');
    expect(self?.peer_address).toBe(n1.peerAddress);
    expect(self?.client_address).toBe(n1.clientAddress);
    // Bound on 0.0.0.0, so another loopback address of the host reaches it too (Linux
    // routes all of 127.0.0.0/8 to loopback); bound on 127.0.0.1 alone, this would fail.
    const viaWildcard = await callAt(`127.0.0.2:${clientPort}`, 'Status', {}, 5_000, 'Cluster');
    expect(viaWildcard.node_id).toBe('n1');
    const log = readFileSync(c.logPath('n1'), 'utf8');
    expect(log).toContain(`"peerListenAddress":"${peerListenAddress}"`);
    expect(log).toContain(`"clientListenAddress":"0.0.0.0:${clientPort}"`);

    // Blackhole the advertised address: n1 hears from no peer, so none dials the listen
    // address directly. Lifting it resets the stalled connections, and they come back.
    proxy.setFaults({ blackhole: true });
    await sleep(500);
    const before = receivedFrom(await scrape(n1.metricsAddress));
    await sleep(1_000);
    const after = receivedFrom(await scrape(n1.metricsAddress));
    // A follower sends only to the leader, so n1 need not have heard from both peers:
    // every peer it did hear from must stand still, and it must have heard from one.
    const heard = ['n2', 'n3'].filter((peer) => (before.get(peer) ?? 0) > 0);
    expect(heard.length, 'n1 heard from a peer before the blackhole').toBeGreaterThan(0);
    for (const peer of heard) {
      expect(after.get(peer), `n1 still hears ${peer}`).toBe(before.get(peer));
    }
    proxy.setFaults({});
    const endMs = Date.now() + 10_000;
    for (;;) {
      const now = receivedFrom(await scrape(n1.metricsAddress));
      if (['n2', 'n3'].every((peer) => (now.get(peer) ?? 0) > (after.get(peer) ?? 0))) break;
      if (Date.now() > endMs)
        throw new Error(`n1 did not hear its peers again within 10 s: ${JSON.stringify([...now])}`);
      await sleep(100);
    }
  });
});
