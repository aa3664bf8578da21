import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { initCertificates } from '../../src/cli/certs.ts';
import { DlmClient } from '../../src/client/index.ts';
import type { TlsMaterial } from '../../src/config/index.ts';
import { makeCerts, servedSerial, type TestCerts } from '../support/certs.ts';
import { ProcessCluster } from '../support/process-cluster.ts';

/**
 * Issue 15 on real processes: SIGHUP reloads the certificates without dropping the
 * cluster or a request, the metrics port serves HTTPS, and a node given another node's
 * certificate does not start.
 */
let cluster: ProcessCluster | null = null;
let client: DlmClient | null = null;
const dirs: string[] = [];

afterEach(async () => {
  client?.close();
  client = null;
  await cluster?.stopAll();
  cluster?.remove();
  cluster = null;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function tlsCluster(
  metrics: 'plaintext' | 'tls' | 'mutual',
): Promise<{ c: ProcessCluster; certs: TestCerts }> {
  const dir = mkdtempSync(join(tmpdir(), 'dlm-reload-certs-'));
  dirs.push(dir);
  const certs = makeCerts(dir, { nodes: ['n1', 'n2', 'n3'] });
  cluster = await ProcessCluster.create(3, {
    tls: { ...certs.tlsSection, metrics },
    peerTransport: process.env.DLM_PEER_TRANSPORT === 'tcp' ? 'tcp' : 'grpc',
  });
  const own = certs.client();
  cluster.credentials = grpc.credentials.createSsl(own.ca, own.key, own.cert);
  return { c: cluster, certs };
}

function httpsGet(
  address: string,
  material: Partial<TlsMaterial>,
  path = '/metrics',
): Promise<{ status: number; body: string }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), address.split(':').at(-1)];
  return new Promise((resolve, reject) => {
    const call = request(
      { host, port: Number(port), path, ...material, servername: 'localhost' },
      (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => {
          body += chunk.toString();
        });
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      },
    );
    call.on('error', reject);
    call.end();
  });
}

describe('SIGHUP reloads the certificates', () => {
  it('under load: every port presents the new certificate to new connections, and no request fails', async () => {
    const { c, certs } = await tlsCluster('tls');
    c.startAll();
    await c.waitForLeader(20_000);
    client = new DlmClient({
      endpoints: c.nodes.map((node) => node.clientAddress),
      credentials: c.credentials,
    });
    const live = client;
    const failures: string[] = [];
    let done = 0;
    let stop = false;
    // Four workers, each a session acquiring and releasing its own lock; bounded: at most
    // 5,000 round trips each, and they stop once the reloads are over.
    const worker = async (w: number): Promise<void> => {
      const session = await live.openSession({ ttlMs: 10_000, clientName: `reload-${w}` });
      try {
        for (let i = 0; i < 5_000 && !stop; i++) {
          try {
            const handle = await session.acquire(`reload/${w}`, { waitMs: 0 });
            await handle.release();
            done++;
          } catch (error) {
            failures.push(String(error));
          }
        }
      } finally {
        await session.close();
      }
    };
    const load = Promise.all([0, 1, 2, 3].map(worker));
    const n1 = c.nodes[0];
    if (n1 === undefined) throw new Error('no n1');
    const before = await servedSerial(n1.clientAddress, certs.client());
    for (let round = 0; round < 3; round++) {
      await new Promise((resolve) => setTimeout(resolve, 700));
      // New node certificates from the same CA (new keys and serials) …
      initCertificates({
        outDir: certs.dir,
        nodes: ['n1', 'n2', 'n3'].map((id) => ({ id, sans: ['IP:127.0.0.1', 'DNS:localhost'] })),
        clients: [],
        days: 30,
      });
      // … then SIGHUP to every node.
      for (const node of c.nodes) process.kill(c.pid(node.id) ?? 0, 'SIGHUP');
      const expected = (await import('node:crypto')).X509Certificate;
      const serial = new expected(readFileSync(join(certs.dir, 'nodes', 'n1.pem'))).serialNumber;
      const deadline = Date.now() + 5_000;
      let served = '';
      while (Date.now() < deadline) {
        served = await servedSerial(n1.clientAddress, certs.client());
        if (served === serial) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(served, `round ${round}: the client port's certificate`).toBe(serial);
      expect(await servedSerial(n1.peerAddress, certs.client(), 'h2')).toBe(serial);
      expect(await servedSerial(n1.metricsAddress, certs.client())).toBe(serial);
    }
    await new Promise((resolve) => setTimeout(resolve, 700));
    stop = true;
    await load;
    expect(before).not.toBe(await servedSerial(n1.clientAddress, certs.client()));
    console.log(`reload under load: ${done} lock round trips, ${failures.length} failed`);
    expect({ failures, someDone: done > 20 }).toEqual({ failures: [], someDone: true });
    for (const node of c.nodes) expect(c.isRunning(node.id), node.id).toBe(true);
    const log = readFileSync(c.logPath('n2'), 'utf8');
    // Each SIGHUP reloads the certificates (and the policy: here none, the cluster is open).
    expect(log.match(/"what":"tls certificates"[^\n]*"reloaded on SIGHUP"/g)?.length).toBe(3);
    expect(log.match(/"what":"access policy","outcome":"open"/g)?.length).toBe(3);
  }, 120_000);

  it('a reload whose certificate names another node keeps the old one, and says why', async () => {
    const { c, certs } = await tlsCluster('plaintext');
    c.startAll();
    await c.waitForLeader(20_000);
    const n1 = c.nodes[0];
    if (n1 === undefined) throw new Error('no n1');
    const before = await servedSerial(n1.clientAddress, certs.client());
    // n1's files now hold n2's certificate and key.
    const { copyFileSync } = await import('node:fs');
    copyFileSync(join(certs.dir, 'nodes', 'n2.pem'), join(certs.dir, 'nodes', 'n1.pem'));
    copyFileSync(join(certs.dir, 'nodes', 'n2-key.pem'), join(certs.dir, 'nodes', 'n1-key.pem'));
    process.kill(c.pid('n1') ?? 0, 'SIGHUP');
    const deadline = Date.now() + 5_000;
    let log = '';
    while (Date.now() < deadline && !log.includes('could not reload')) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      log = readFileSync(c.logPath('n1'), 'utf8');
    }
    expect(log).toContain("is not node n1's certificate: it names node n2");
    expect(await servedSerial(n1.clientAddress, certs.client())).toBe(before);
    expect(c.isRunning('n1')).toBe(true);
  }, 60_000);
});

describe('the metrics port over TLS', () => {
  it('mutual: served to a scraper with a certificate of the CA, refused to one without', async () => {
    const { c, certs } = await tlsCluster('mutual');
    c.start('n1');
    const address = c.nodes[0]?.metricsAddress ?? '';
    const deadline = Date.now() + 20_000;
    let answer: { status: number; body: string } | null = null;
    while (answer === null && Date.now() < deadline) {
      answer = await httpsGet(address, certs.client()).catch(() => null);
      if (answer === null) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(answer?.status).toBe(200);
    expect(answer?.body).toContain('dlm_auth_failures_total{reason="tls_handshake"');
    await expect(httpsGet(address, { ca: certs.ca })).rejects.toThrow();
  }, 60_000);
});

describe('the console over a mutual-TLS metrics port', () => {
  it('reaches the other members over HTTPS: every member ok, none unreachable', async () => {
    const { c, certs } = await tlsCluster('mutual');
    c.startAll();
    await c.waitForLeader(20_000);
    const address = c.nodes[0]?.metricsAddress ?? '';
    const deadline = Date.now() + 20_000;
    let health: string[] = [];
    while (Date.now() < deadline) {
      const answer = await httpsGet(address, certs.client(), '/console/view.json').catch(
        () => null,
      );
      if (answer?.status === 200) {
        const view = JSON.parse(answer.body) as { cluster: { members: { health: string }[] } };
        health = view.cluster.members.map((member) => member.health);
        if (health.length === 3 && health.every((each) => each === 'ok')) break;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(health).toEqual(['ok', 'ok', 'ok']);
  }, 60_000);
});

describe('a node given another node certificate', () => {
  it('does not start, naming the certificate and the node it belongs to', async () => {
    const { c, certs } = await tlsCluster('plaintext');
    const wrong = c.writeConfig('wrong-cert.config.json', {
      tls: {
        ...certs.tlsSection,
        certFile: join(certs.dir, 'nodes', 'n2.pem'),
        keyFile: join(certs.dir, 'nodes', 'n2-key.pem'),
      },
    });
    const run = await c.dlm(['serve', '--config', wrong, '--node', 'n3'], 30_000);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("is not node n3's certificate: it names node n2");
  }, 60_000);
});
