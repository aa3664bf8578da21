/**
 * Review of sec-authz (issue 15), replica divergence during a rolling upgrade of a
 * cluster that already runs mutual TLS.
 *
 * Under mutual TLS the branch owns sessions by certificate subject even without an
 * `auth` section (src/cli/serve.ts authOption): an upgraded node writes the caller's
 * identity into every command, and its state machine refuses a command whose identity
 * differs from the session's. A node of the previous version writes no identity and
 * checks none. docs/operations.md says to "upgrade every node before any node gets an
 * auth section (or mutual TLS)", which a cluster that runs mutual TLS today cannot do:
 * the upgrade itself turns ownership on, one node at a time.
 *
 * Here n1 runs the branch and n2, n3 the commit before it (98fee84), with the same
 * config (mutual TLS, no auth section). Alice opens a session through n1 (identity
 * "alice" in the entry) and acquires through n2 (no identity in the entry): n2 and n3
 * grant it, n1 refuses it (notSessionOwner). Bob then acquires the same lock through
 * n1, which thinks it free and grants it. Both were told Acquired for one exclusive lock.
 *
 * FAILED on sec-authz as reviewed (88423af): alice Acquired x via n2 (token 6), bob via n1
 * (token 7). Since authz-fix, a node without an `auth` section writes no identity even
 * under mutual TLS, so old and new nodes apply alike. Needs `git` and `openssl`; builds the old
 * commit's dist/ once under .build/ (about 15 s).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCertificate } from '../../src/cli/certs.ts';
import { makeCerts } from '../support/certs.ts';
import { oldReleaseBin } from '../support/old-release.ts';
import { loadServices, newRequestId, ProcessCluster } from '../support/process-cluster.ts';

/** The last commit before sec-authz: the version a rolling upgrade starts from. */
const OLD_COMMIT = '98fee841693c57d15d9edca5c964e1cb5c5a9afe';

/**
 * Certificates from dlm certs init's code, but one node certificate shared by the three
 * nodes (it names dlm-node://n1, n2 and n3): the old version knows no {node} placeholder
 * in tls.certFile, and the new one checks that a peer's certificate names its id.
 */
function makeUpgradeCerts(dir: string): { certFile: string; keyFile: string } {
  makeCerts(dir, { nodes: [], clients: ['client', 'alice', 'bob'] });
  const shared = {
    cert: join(dir, 'nodes', 'shared.pem'),
    key: join(dir, 'nodes', 'shared-key.pem'),
  };
  issueCertificate(dir, {
    commonName: 'node',
    extendedKeyUsage: 'serverAuth,clientAuth',
    sans: ['n1', 'n2', 'n3']
      .map((id) => `URI:dlm-node://${id}`)
      .concat('IP:127.0.0.1', 'DNS:localhost'),
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 2 * 24 * 3600_000),
    ...shared,
  });
  return { certFile: shared.cert, keyFile: shared.key };
}

type Reply = Record<string, unknown>;
type Unary = (
  request: object,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, reply: Reply) => void,
) => void;

describe('review sec-authz: rolling upgrade of a mutual-TLS cluster (real processes, mixed versions)', () => {
  let cluster: ProcessCluster;
  let certs: string;
  const clients: grpc.Client[] = [];

  beforeAll(async () => {
    const old = oldReleaseBin(OLD_COMMIT);
    certs = mkdtempSync(join(tmpdir(), 'dlm-review-upgrade-certs-'));
    const node = makeUpgradeCerts(certs);
    const pem = (name: string) => readFileSync(join(certs, name));
    // The old version's peer transport was gRPC by default: an upgrade pins it (docs/operations.md).
    cluster = await ProcessCluster.create(3, {
      tls: { caFile: join(certs, 'ca.pem'), ...node },
      peerTransport: 'grpc',
    });
    cluster.credentials = grpc.credentials.createSsl(
      pem('ca.pem'),
      pem('clients/client-key.pem'),
      pem('clients/client.pem'),
    );
    // n1 upgraded to the branch; n2 and n3 still on the previous version.
    cluster.start('n1');
    cluster.start('n2', { command: [old] });
    cluster.start('n3', { command: [old] });
    await cluster.waitForLeader(30_000);
  }, 120_000);

  afterAll(async () => {
    for (const client of clients) client.close();
    await cluster?.stopAll();
    if (process.env.DLM_REVIEW_KEEP === undefined) cluster?.remove();
    else console.log(cluster.dir);
    if (certs !== undefined) rmSync(certs, { recursive: true, force: true });
  });

  function callerAt(
    name: string,
    node: string,
  ): (method: string, request: object) => Promise<Reply> {
    const pem = (file: string) => readFileSync(join(certs, file));
    const credentials = grpc.credentials.createSsl(
      pem('ca.pem'),
      pem(`clients/${name}-key.pem`),
      pem(`clients/${name}.pem`),
    );
    const address = cluster.nodes.find((each) => each.id === node)?.clientAddress ?? '';
    const Lock = loadServices().Lock;
    if (Lock === undefined) throw new Error('no Lock service');
    const client = new Lock(address, credentials);
    clients.push(client);
    return (method, request) =>
      new Promise((resolve, reject) => {
        const fn = (client as unknown as Record<string, Unary>)[method];
        fn?.call(client, request, { deadline: Date.now() + 10_000 }, (error, reply) =>
          error === null
            ? resolve(reply)
            : reject(new Error(`${method} via ${node}: ${error.code} ${error.details}`)),
        );
      });
  }

  it('two identities are never both told Acquired for one exclusive lock', async () => {
    const aliceNew = callerAt('alice', 'n1');
    const aliceOld = callerAt('alice', 'n2');
    const bobNew = callerAt('bob', 'n1');
    const open = (call: typeof aliceNew) =>
      call('OpenSession', { ttl_ms: '60000', client_name: 'upgrade', request_id: newRequestId() });
    const acquire = (call: typeof aliceNew, session: unknown) =>
      call('Acquire', {
        lock: 'x',
        session_id: session,
        mode: 'EXCLUSIVE',
        wait_ms: '0',
        request_id: newRequestId(),
        owner: 'review',
      });
    // n1 may not have heard from the leader yet when another node already leads.
    const openRetrying = async (call: typeof aliceNew): Promise<Reply> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await open(call);
        } catch (error) {
          if (attempt >= 50 || !String(error).includes(' 14 ')) throw error;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
    };
    const aliceSession = (await openRetrying(aliceNew)).session_id;
    const bobSession = (await open(bobNew)).session_id;
    // Alice's client reaches another node of the same cluster, as any client may.
    const aliceGot = await acquire(aliceOld, aliceSession);
    const bobGot = await acquire(bobNew, bobSession);
    // Observed on the branch: both true (alice token from n2, bob a higher one from n1).
    const told = `alice ${aliceGot.acquired} (token ${aliceGot.fencing_token}), bob ${bobGot.acquired} (token ${bobGot.fencing_token})`;
    expect([aliceGot.acquired, bobGot.acquired], told).not.toEqual([true, true]);
  }, 60_000);
});
