import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tls from 'node:tls';
import {
  caPaths,
  clientCertificatePaths,
  initCertificates,
  issueCertificate,
  nodeCertificatePaths,
} from '../../src/cli/certs.ts';
import type { TlsMaterial } from '../../src/config/index.ts';

/**
 * Certificates for tests, made the way `dlm certs init` makes them (same code): a CA,
 * one certificate per node (URI SAN dlm-node://ID, IP:127.0.0.1, DNS:localhost unless
 * `sans` says otherwise) and one per client.
 */
export interface TestCerts {
  readonly dir: string;
  readonly ca: Buffer;
  node(id: string): TlsMaterial;
  client(name?: string): TlsMaterial;
  /** The config's tls section, one file per node through {node}, and a client's for the CLI. */
  readonly tlsSection: {
    caFile: string;
    certFile: string;
    keyFile: string;
    clientCertFile: string;
    clientKeyFile: string;
  };
}

export function makeCerts(
  dir: string,
  options: {
    nodes?: readonly string[];
    clients?: readonly string[];
    sans?: readonly string[];
  } = {},
): TestCerts {
  const nodes = options.nodes ?? ['n1', 'n2', 'n3', 'n4', 'n5'];
  const sans = options.sans ?? ['IP:127.0.0.1', 'DNS:localhost'];
  initCertificates({
    outDir: dir,
    nodes: nodes.map((id) => ({ id, sans })),
    clients: options.clients ?? ['client'],
    days: 30,
  });
  return certsIn(dir);
}

/** The certificates already in `dir` (read afresh on every call, so reissues show). */
export function certsIn(dir: string): TestCerts {
  const ca = readFileSync(caPaths(dir).cert);
  const material = ({ cert, key }: { cert: string; key: string }): TlsMaterial => ({
    ca: readFileSync(caPaths(dir).cert),
    cert: readFileSync(cert),
    key: readFileSync(key),
  });
  return {
    dir,
    ca,
    node: (id) => material(nodeCertificatePaths(dir, id)),
    client: (name = 'client') => material(clientCertificatePaths(dir, name)),
    tlsSection: tlsSectionFor(dir),
  };
}

/** The config's tls section for `dir` (whether or not its files exist yet). */
export function tlsSectionFor(dir: string): TestCerts['tlsSection'] {
  const client = clientCertificatePaths(dir, 'client');
  return {
    caFile: caPaths(dir).cert,
    certFile: join(dir, 'nodes', '{node}.pem'),
    keyFile: join(dir, 'nodes', '{node}-key.pem'),
    clientCertFile: client.cert,
    clientKeyFile: client.key,
  };
}

/** A client certificate of `dir`'s CA whose validity ended an hour ago. */
export function expiredClient(dir: string, name: string): TlsMaterial {
  const paths = clientCertificatePaths(dir, name);
  const hourMs = 3600 * 1000;
  issueCertificate(dir, {
    commonName: name,
    extendedKeyUsage: 'clientAuth',
    sans: [],
    notBefore: new Date(Date.now() - 48 * hourMs),
    notAfter: new Date(Date.now() - hourMs),
    ...paths,
  });
  return certsIn(dir).client(name);
}

/** The serial of the certificate a TLS port presents to a new connection. */
export function servedSerial(
  address: string,
  material: TlsMaterial,
  alpn?: string,
): Promise<string> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), address.split(':').at(-1)];
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port: Number(port),
      ...material,
      checkServerIdentity: () => undefined,
      ...(alpn === undefined ? {} : { ALPNProtocols: [alpn] }),
    });
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}
