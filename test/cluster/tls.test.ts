import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient } from '../../src/client/index.ts';
import { expiredClient, makeCerts, tlsSectionFor } from '../support/certs.ts';
import { openSession } from '../support/lock-load.ts';
import { ProcessCluster } from '../support/process-cluster.ts';

/**
 * Mutual TLS on real processes, with certificates from `dlm certs init`: the nodes
 * elect and replicate over TLS peer links, clients with a certificate from the
 * cluster's CA are served, and every other client is refused at the handshake.
 */
let cluster: ProcessCluster | null = null;
let client: DlmClient | null = null;
const certDirs: string[] = [];

afterEach(async () => {
  for (const dir of certDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  client?.close();
  client = null;
  await cluster?.stopAll();
  cluster?.remove();
  cluster = null;
});

function pem(dir: string, name: string): Buffer {
  return readFileSync(join(dir, name));
}

/**
 * A Status call with these credentials: 'answered', or the gRPC status code of the last
 * failure. A fresh channel can fail fast while it connects, so a few attempts are made.
 */
async function statusWith(
  address: string,
  credentials: grpc.ChannelCredentials,
): Promise<string | number> {
  const Cluster = grpc.makeGenericClientConstructor({}, 'Cluster');
  const raw = new Cluster(address, credentials);
  let outcome: string | number = 'no attempt';
  for (let attempt = 0; attempt < 10 && outcome !== 'answered'; attempt++) {
    outcome = await new Promise<string | number>((resolve) => {
      raw.makeUnaryRequest(
        '/dlm.v1.Cluster/Status',
        () => Buffer.alloc(0),
        (bytes: Buffer) => bytes,
        {},
        { deadline: Date.now() + 2_000 },
        (error) => resolve(error === null ? 'answered' : error.code),
      );
    });
    if (outcome !== 'answered') await new Promise((resolve) => setTimeout(resolve, 100));
  }
  raw.close();
  return outcome;
}

/** dlm_auth_failures_total summed over reasons, from a plaintext metrics port. */
async function authFailures(metricsAddress: string): Promise<number> {
  const text = await (await fetch(`http://${metricsAddress}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('dlm_auth_failures_total{')) total += Number(line.split(' ').at(-1));
  }
  return total;
}

describe('mutual TLS on real processes', () => {
  // The peer links too, over either transport: TCP uses node:tls with the same files.
  it.each(['grpc', 'tcp'] as const)(
    'serves clients with a certificate of the cluster CA and refuses every other (%s peer transport)',
    async (peerTransport) => {
      const dir = mkdtempSync(join(tmpdir(), 'dlm-certs-'));
      certDirs.push(dir);
      const certs = join(dir, 'certs');
      const strangers = join(dir, 'strangers');
      const tls = tlsSectionFor(certs);
      cluster = await ProcessCluster.create(3, { tls, peerTransport });
      const c = cluster;
      // The command itself, on the cluster's config: each node's addresses become SANs.
      const init = await c.dlm(['certs', 'init', '--config', c.configPath, '--out', certs]);
      expect(init.code, init.stderr).toBe(0);
      expect(init.stdout).toContain('node n1: dlm-node://n1 IP:127.0.0.1 DNS:localhost');
      makeCerts(strangers);
      c.credentials = grpc.credentials.createSsl(
        pem(certs, 'ca.pem'),
        pem(certs, 'clients/client-key.pem'),
        pem(certs, 'clients/client.pem'),
      );
      c.startAll();
      // Electing a leader needs the peer links, which are TLS too.
      await c.waitForLeader(15_000);
      const session = await openSession(c, 'tls');
      expect(Number(session)).toBeGreaterThan(0);

      const address = c.nodes[0]?.clientAddress ?? '';
      // n1 may still be starting (the session above went to any node), and grpc-js shares
      // a subchannel in backoff between channels of the same credentials: keep asking.
      const deadline = Date.now() + 20_000;
      let first = await statusWith(address, c.credentials);
      while (first !== 'answered' && Date.now() < deadline) {
        first = await statusWith(address, c.credentials);
      }
      expect(first).toBe('answered');
      // Plaintext, no client certificate, a certificate from another CA: all refused.
      expect(await statusWith(address, grpc.credentials.createInsecure())).toBe(
        grpc.status.UNAVAILABLE,
      );
      expect(await statusWith(address, grpc.credentials.createSsl(pem(certs, 'ca.pem')))).toBe(
        grpc.status.UNAVAILABLE,
      );
      const stranger = grpc.credentials.createSsl(
        pem(certs, 'ca.pem'),
        pem(strangers, 'clients/client-key.pem'),
        pem(strangers, 'clients/client.pem'),
      );
      expect(await statusWith(address, stranger)).toBe(grpc.status.UNAVAILABLE);
      // A certificate of the cluster's CA whose validity has ended.
      const expired = expiredClient(certs, 'expired');
      expect(
        await statusWith(
          address,
          grpc.credentials.createSsl(expired.ca, expired.key, expired.cert),
        ),
      ).toBe(grpc.status.UNAVAILABLE);
      // Each refusal was counted on the node (and logged at warn, without secrets).
      const failures = await authFailures(c.nodes[0]?.metricsAddress ?? '');
      expect(failures).toBeGreaterThanOrEqual(4);
      const log = readFileSync(c.logPath('n1'), 'utf8');
      expect(log).toContain('"reason":"tls_handshake"');
      expect(log).not.toContain('PRIVATE KEY');

      // The CLI takes the config's tls section, or the --tls-* flags with --endpoints.
      const status = await c.dlm(['status', '--config', c.configPath], 20_000);
      expect(status.code, status.stderr).toBe(0);
      const flags = [
        '--tls-ca',
        join(certs, 'ca.pem'),
        '--tls-cert',
        join(certs, 'clients/client.pem'),
        '--tls-key',
        join(certs, 'clients/client-key.pem'),
      ];
      const viaFlags = await c.dlm(['status', '--endpoints', address, ...flags], 20_000);
      expect(viaFlags.code, viaFlags.stderr).toBe(0);
      const plain = await c.dlm(['status', '--endpoints', address, '--timeout-ms', '2000'], 20_000);
      expect(plain.code).toBe(1);
      expect(plain.stderr).not.toContain('DEP0123');

      // The TypeScript client, with the client certificate.
      client = new DlmClient({ endpoints: [address], credentials: c.credentials });
      expect(await client.withLock('tls/1', async ({ token }) => BigInt(token) > 0n)).toBe(true);
    },
    90_000,
  );

  it('a tls file that cannot be read stops start-up, naming the field', async () => {
    cluster = await ProcessCluster.create(3);
    const c = cluster;
    const config = JSON.parse(readFileSync(c.configPath, 'utf8'));
    config.tls = { caFile: 'nowhere/ca.pem', certFile: 'cluster.config.json', keyFile: '' };
    const badPath = join(c.dir, 'bad-tls.config.json');
    writeFileSync(badPath, JSON.stringify(config));
    const refused = await c.dlm(['serve', '--config', badPath, '--node', 'n1'], 20_000);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('tls.keyFile: expected a non-empty path');
    config.tls.keyFile = 'cluster.config.json';
    writeFileSync(badPath, JSON.stringify(config));
    const unreadable = await c.dlm(['serve', '--config', badPath, '--node', 'n1'], 20_000);
    expect(unreadable.code).toBe(1);
    expect(unreadable.stderr).toContain(`tls.caFile: cannot read ${join(c.dir, 'nowhere/ca.pem')}`);
    expect(unreadable.stderr).toContain('tls.certFile:');
    expect(unreadable.stderr).toContain('is not a PEM file');
  }, 60_000);
});
