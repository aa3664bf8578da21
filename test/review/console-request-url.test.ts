import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ProcessCluster } from '../support/process-cluster.ts';

/**
 * Review of the console merge: the metrics address now parses every request's URL with
 * `new URL(request.url, base)` (ConsoleServer.handle), outside any try. A request line
 * whose target is not a valid relative URL ("//", "///", "/\\") makes that throw inside
 * the http server's request listener, which nothing catches: the node process dies.
 * Before the merge, the metrics server only compared request.url with '/metrics'.
 * Anyone who can reach the metrics port (Prometheus' network) can kill every node with
 * one line.
 */
let cluster: ProcessCluster | null = null;

afterEach(async () => {
  await cluster?.stopAll();
  cluster?.remove();
  cluster = null;
});

/** Sends one raw request line and resolves with whatever came back before the close. */
function rawGet(address: string, target: string): Promise<string> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const socket = connect(Number(address.slice(colon + 1)), address.slice(0, colon));
    let answer = '';
    socket.setTimeout(5_000, () => socket.destroy());
    socket.on('data', (chunk) => {
      answer += chunk.toString('utf8');
    });
    socket.on('error', () => resolve(answer));
    socket.on('close', () => resolve(answer));
    socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  });
}

describe('review: console request URLs', () => {
  it('a GET of "//" on the metrics address is answered and the node keeps running', async () => {
    cluster = await ProcessCluster.create(1);
    const c = cluster;
    c.startAll();
    await c.waitForLeader(30_000);
    const node = c.nodes[0];
    if (node === undefined) throw new Error('no node');

    const answer = await rawGet(node.metricsAddress, '//');
    // Give an exiting process time to be seen as exited.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const log = readFileSync(c.logPath(node.id), 'utf8').slice(-600);
    expect(c.isRunning(node.id), `node ${node.id} died on GET //; its log ends: ${log}`).toBe(true);
    expect(answer).toMatch(/^HTTP\/1\.1 (400|404)/);
    const metrics = await fetch(`http://${node.metricsAddress}/metrics`);
    expect(metrics.status).toBe(200);
  });
});
