import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { NODE_ID_PATTERN } from '../config/index.ts';
import { nodeCertificateUri } from '../transport/peer-identity.ts';

/**
 * `dlm certs init`: a certificate authority, one certificate per node and one per lock
 * client, made with the `openssl` command (Debian's openssl package). A node's
 * certificate names its id (URI SAN dlm-node://ID, which peers check against the id the
 * node claims) and its addresses; a client's names the client in its CN and carries no
 * node id, so the peer port refuses it. The CA key stays in DIR: keep it offline in
 * production, and give each machine only its own node's key.
 *
 * Layout of DIR (the config's tls section points at it, `{node}` standing for the id):
 *   ca.pem, ca-key.pem
 *   nodes/ID.pem, nodes/ID-key.pem
 *   clients/NAME.pem, clients/NAME-key.pem
 */
export interface NodeCertificatePlan {
  readonly id: string;
  /** Subject alternative names besides the node id, like IP:127.0.0.1 or DNS:n1.example. */
  readonly sans: readonly string[];
}

export interface CertificatePlan {
  readonly outDir: string;
  readonly nodes: readonly NodeCertificatePlan[];
  readonly clients: readonly string[];
  readonly days: number;
}

/** Leaf certificates start this long before now, so a node whose clock lags still takes them. */
const BACKDATE_MS = 60 * 60 * 1000;
export const CLIENT_NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,62}$/;

/** Writes the CA (unless DIR already has one: it is reused) and every certificate; returns the files written. */
export function initCertificates(plan: CertificatePlan): string[] {
  requireOpenssl();
  const written: string[] = [];
  mkdirSync(join(plan.outDir, 'nodes'), { recursive: true });
  mkdirSync(join(plan.outDir, 'clients'), { recursive: true });
  if (!existsSync(caPaths(plan.outDir).cert) || !existsSync(caPaths(plan.outDir).key)) {
    createCa(plan.outDir, plan.days);
    written.push(caPaths(plan.outDir).cert, caPaths(plan.outDir).key);
  }
  const notBefore = new Date(Date.now() - BACKDATE_MS);
  const notAfter = new Date(Date.now() + plan.days * 24 * 3600 * 1000);
  for (const node of plan.nodes) {
    const paths = nodeCertificatePaths(plan.outDir, node.id);
    issueCertificate(plan.outDir, {
      commonName: node.id,
      // Nodes serve clients and peers, and dial peers: both usages.
      extendedKeyUsage: 'serverAuth,clientAuth',
      sans: [`URI:${nodeCertificateUri(node.id)}`, ...node.sans],
      notBefore,
      notAfter,
      ...paths,
    });
    written.push(paths.cert, paths.key);
  }
  for (const name of plan.clients) {
    const paths = clientCertificatePaths(plan.outDir, name);
    issueCertificate(plan.outDir, {
      commonName: name,
      extendedKeyUsage: 'clientAuth',
      sans: [],
      notBefore,
      notAfter,
      ...paths,
    });
    written.push(paths.cert, paths.key);
  }
  return written;
}

export function caPaths(dir: string): { cert: string; key: string } {
  return { cert: join(dir, 'ca.pem'), key: join(dir, 'ca-key.pem') };
}

export function nodeCertificatePaths(dir: string, id: string): { cert: string; key: string } {
  return { cert: join(dir, 'nodes', `${id}.pem`), key: join(dir, 'nodes', `${id}-key.pem`) };
}

export function clientCertificatePaths(dir: string, name: string): { cert: string; key: string } {
  return {
    cert: join(dir, 'clients', `${name}.pem`),
    key: join(dir, 'clients', `${name}-key.pem`),
  };
}

export interface IssueRequest {
  readonly commonName: string;
  readonly extendedKeyUsage: string;
  readonly sans: readonly string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Where the certificate and its new key go. */
  readonly cert: string;
  readonly key: string;
}

/** One certificate signed by DIR's CA; any validity window (tests issue expired ones). */
export function issueCertificate(caDir: string, request: IssueRequest): void {
  const work = mkdtempSync(join(caDir, '.issue-'));
  try {
    newKey(request.key);
    const csr = join(work, 'req.csr');
    openssl([
      'req',
      '-new',
      '-key',
      request.key,
      '-subj',
      `/CN=${request.commonName}`,
      '-out',
      csr,
    ]);
    const extensions = [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature',
      `extendedKeyUsage=${request.extendedKeyUsage}`,
      ...(request.sans.length === 0 ? [] : [`subjectAltName=${request.sans.join(',')}`]),
    ];
    writeFileSync(join(work, 'ext.cnf'), `${extensions.join('\n')}\n`);
    writeFileSync(join(work, 'index.txt'), '');
    // Random serials: certificates reissued from the same CA never share one.
    writeFileSync(join(work, 'serial'), `${randomBytes(16).toString('hex').replace(/^0/, '1')}\n`);
    writeFileSync(join(work, 'ca.cnf'), caConfig(work));
    const ca = caPaths(caDir);
    openssl([
      'ca',
      '-batch',
      '-notext',
      '-config',
      join(work, 'ca.cnf'),
      '-cert',
      ca.cert,
      '-keyfile',
      ca.key,
      '-in',
      csr,
      '-out',
      request.cert,
      '-startdate',
      opensslTime(request.notBefore),
      '-enddate',
      opensslTime(request.notAfter),
      '-extfile',
      join(work, 'ext.cnf'),
    ]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** A node's SANs for the hosts it is reached at: IP: for addresses, DNS: for names. */
export function hostSans(hosts: Iterable<string>): string[] {
  const sans = new Set<string>();
  for (const host of hosts) {
    if (host === '' || host === '0.0.0.0' || host === '::') continue;
    sans.add(isIP(host) === 0 ? `DNS:${host}` : `IP:${host}`);
    // A client on the same machine may dial "localhost" for a loopback address.
    if (host === '127.0.0.1' || host === '::1') sans.add('DNS:localhost');
  }
  return [...sans];
}

export function checkNodeId(id: string): string | null {
  return NODE_ID_PATTERN.test(id) ? null : `node id '${id}' must match ${NODE_ID_PATTERN}`;
}

export function checkClientName(name: string): string | null {
  return CLIENT_NAME_PATTERN.test(name)
    ? null
    : `client name '${name}' must match ${CLIENT_NAME_PATTERN}`;
}

function createCa(dir: string, days: number): void {
  const { cert, key } = caPaths(dir);
  newKey(key);
  openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    key,
    '-sha256',
    '-days',
    String(days),
    '-subj',
    '/CN=dlm cluster CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-out',
    cert,
  ]);
}

function newKey(path: string): void {
  openssl([
    'genpkey',
    '-algorithm',
    'EC',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-out',
    path,
  ]);
  chmodSync(path, 0o600);
}

function caConfig(work: string): string {
  return [
    '[ca]',
    'default_ca = dlm',
    '[dlm]',
    `database = ${join(work, 'index.txt')}`,
    `new_certs_dir = ${work}`,
    `serial = ${join(work, 'serial')}`,
    'default_md = sha256',
    'policy = any_name',
    'unique_subject = no',
    // Only the extensions of -extfile, never what a request asks for.
    'copy_extensions = none',
    '[any_name]',
    'commonName = supplied',
    '',
  ].join('\n');
}

function opensslTime(date: Date): string {
  return `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

function openssl(args: readonly string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '').trim();
    throw new Error(`openssl ${args[0]} failed: ${stderr || (error as Error).message}`);
  }
}

function requireOpenssl(): void {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    throw new Error('the openssl command is needed (Debian: apt-get install openssl)');
  }
}
