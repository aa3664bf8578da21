import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { policyDigest } from '../../src/api/auth/policy.ts';
import { tokenEntry } from '../../src/api/auth/tokens.ts';
import { initCertificates } from '../../src/cli/certs.ts';
import { bearerInterceptor } from '../../src/client/bearer.ts';
import { DlmClient } from '../../src/client/index.ts';
import { loadClusterConfig } from '../../src/config/index.ts';
import { Caller, expectRefused, type Outcome } from '../support/auth-caller.ts';
import { makeCerts, servedSerial, type TestCerts } from '../support/certs.ts';
import { newRequestId, ProcessCluster } from '../support/process-cluster.ts';

/**
 * Issue 15 on real processes: SIGHUP reloads the access policy (the config's `auth`
 * section) with the certificates, under mutual TLS and a steady load, without failing a
 * request of an identity that keeps its rights; a new identity and a new token are
 * admitted, a revoked identity is refused on new calls, on a Session stream it opened
 * before, and on its Watch. A policy file that does not parse is refused and the old
 * policy stays in force.
 */
const ROLES = {
  team: [{ prefix: 'r/', grant: ['read', 'lock'] }],
};
const TOKEN = 'reload-token-0123456789';

let cluster: ProcessCluster;
let certs: TestCerts;
const callers = new Map<string, Caller>();
let digestBefore: string;
let digestAfter: string;

/** The config file every node reads, its `auth` section replaced. */
function writeAuth(auth: unknown): void {
  const config = JSON.parse(readFileSync(cluster.configPath, 'utf8')) as Record<string, unknown>;
  if (auth === undefined) delete config.auth;
  else config.auth = auth;
  writeFileSync(cluster.configPath, JSON.stringify(config));
}

async function fileDigest(): Promise<string> {
  const { auth } = await loadClusterConfig(cluster.configPath);
  if (auth === null) throw new Error('no auth section');
  return policyDigest(auth);
}

function who(name: string): Caller {
  const caller = callers.get(name);
  if (caller === undefined) throw new Error(`no caller ${name}`);
  return caller;
}

function hangUpAll(): void {
  for (const node of cluster.nodes) process.kill(cluster.pid(node.id) ?? 0, 'SIGHUP');
}

/** Each node's policy digest, as `dlm status` reads it (Cluster.Status). */
async function digests(): Promise<string[]> {
  const answers: string[] = [];
  for (const node of cluster.nodes) {
    const status = await who('steady').ok(node.id, 'Status', {}, 'Cluster');
    answers.push(String(status.policy_digest));
  }
  return answers;
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dlm-auth-reload-certs-'));
  certs = makeCerts(dir, {
    nodes: ['n1', 'n2', 'n3'],
    clients: ['client', 'steady', 'newbie', 'leaver'],
  });
  cluster = await ProcessCluster.create(3, {
    tls: certs.tlsSection,
    auth: { roles: ROLES, identities: { steady: ['team'], leaver: ['team'] } },
  });
  const credentials = (name: string) => {
    const own = certs.client(name);
    return grpc.credentials.createSsl(own.ca, own.key, own.cert);
  };
  // The harness's own certificate (CN "client") has no role: Status needs none.
  cluster.credentials = credentials('client');
  for (const name of ['steady', 'newbie', 'leaver']) {
    callers.set(name, new Caller(cluster, credentials(name)));
  }
  // The certificate of "client", but a bearer token, which wins over it once configured.
  callers.set(
    'token',
    new Caller(cluster, credentials('client'), { interceptors: [bearerInterceptor(TOKEN)] }),
  );
  cluster.startAll();
  await cluster.waitForLeader(20_000);
  digestBefore = await fileDigest();
}, 60_000);

afterAll(async () => {
  for (const caller of callers.values()) caller.close();
  await cluster?.stopAll();
  cluster?.remove();
  rmSync(certs.dir, { recursive: true, force: true });
});

describe('SIGHUP reloads the access policy', () => {
  it('under load, with the certificates: the steady identity never fails, new rights apply at once, revoked ones are refused', async () => {
    const leader = await cluster.waitForLeader(10_000);
    await until(
      async () => (await digests()).every((digest) => digest === digestBefore),
      'every node serves the first policy',
    );
    // Before: newbie has no role, the token is unknown (tokens are off: the certificate
    // of "client", which has no role, speaks), leaver may lock.
    const newbieSession = await who('newbie').call(leader, 'OpenSession', {
      ttl_ms: '60000',
      client_name: 'newbie',
      request_id: newRequestId(),
    });
    expectRefused(newbieSession, grpc.status.PERMISSION_DENIED, 'permissionDenied');
    const leaverSession = await who('leaver').openSession(leader);
    expect(await who('leaver').acquire(leader, 'r/leaver', leaverSession)).toMatchObject({
      ok: true,
      reply: { acquired: true },
    });
    // A stream and a watch the leaver opened under the old policy.
    const leaverStream = who('leaver').sessionStream(leader);
    const kept = await leaverStream.call({ keep_alive: { session_id: leaverSession } });
    expect(kept.keep_alive).toMatchObject({ ttl_ms: '60000' });
    const leaverWatch = who('leaver').openWatch(leader, 'r/');
    await leaverWatch.streaming;

    const steady = new DlmClient({
      endpoints: cluster.nodes.map((node) => node.clientAddress),
      credentials: grpc.credentials.createSsl(
        certs.ca,
        certs.client('steady').key,
        certs.client('steady').cert,
      ),
    });
    const failures: string[] = [];
    let done = 0;
    let stop = false;
    // Four workers, each a session acquiring and releasing its own lock; bounded: at most
    // 5,000 round trips each, and they stop once the checks after the reload are over.
    const worker = async (w: number): Promise<void> => {
      const session = await steady.openSession({ ttlMs: 10_000, clientName: `steady-${w}` });
      try {
        for (let i = 0; i < 5_000 && !stop; i++) {
          try {
            const handle = await session.acquire(`r/steady-${w}`, { waitMs: 0 });
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
    try {
      await new Promise((resolve) => setTimeout(resolve, 700));
      const serialBefore = await servedSerial(
        cluster.nodes[0]?.clientAddress ?? '',
        certs.client(),
      );
      // New node certificates from the same CA, and a new policy: newbie and a token
      // granted, leaver gone. Then SIGHUP to every node.
      initCertificates({
        outDir: certs.dir,
        nodes: ['n1', 'n2', 'n3'].map((id) => ({ id, sans: ['IP:127.0.0.1', 'DNS:localhost'] })),
        clients: [],
        days: 30,
      });
      writeAuth({
        tokens: [await tokenEntry('deployer', TOKEN, 'sha256')],
        roles: ROLES,
        identities: { steady: ['team'], newbie: ['team'], deployer: ['team'] },
      });
      digestAfter = await fileDigest();
      expect(digestAfter).not.toBe(digestBefore);
      const doneBeforeReload = done;
      hangUpAll();
      await until(
        async () => (await digests()).every((digest) => digest === digestAfter),
        'every node serves the new policy',
      );
      const serialNow = new X509Certificate(readFileSync(join(certs.dir, 'nodes', 'n1.pem')))
        .serialNumber;
      await until(
        async () =>
          (await servedSerial(cluster.nodes[0]?.clientAddress ?? '', certs.client())) === serialNow,
        'n1 serves its new certificate',
      );
      expect(serialNow).not.toBe(serialBefore);

      for (const { id } of cluster.nodes) {
        const session = await who('newbie').openSession(id);
        expect(await who('newbie').acquire(id, `r/newbie-${id}`, session), id).toMatchObject({
          ok: true,
          reply: { acquired: true },
        });
        const tokenSession = await who('token').openSession(id);
        expect(await who('token').acquire(id, `r/token-${id}`, tokenSession), id).toMatchObject({
          ok: true,
          reply: { acquired: true },
        });
        expectRefused(
          await who('leaver').acquire(id, `r/leaver-${id}`, leaverSession),
          grpc.status.PERMISSION_DENIED,
          'permissionDenied',
        );
      }
      // The stream opened before the reload is judged by the new policy too.
      const streamed = await leaverStream.call({ keep_alive: { session_id: leaverSession } });
      expect(streamed.error).toMatchObject({
        code: grpc.status.PERMISSION_DENIED,
        error_code: 'permissionDenied',
      });
      // The watch ends at the next event under its prefix (the steady load makes many).
      const watchEnd = await Promise.race([
        leaverWatch.ended,
        new Promise((resolve) => setTimeout(() => resolve('still streaming after 5 s'), 5_000)),
      ]);
      expectRefused(watchEnd as Outcome, grpc.status.PERMISSION_DENIED, 'permissionDenied');
      // The steady load goes on through and past the reload.
      await until(async () => done > doneBeforeReload + 20, 'the steady load goes on');
    } finally {
      stop = true;
      await load;
      leaverStream.end();
      leaverWatch.cancel();
      steady.close();
    }
    console.log(`policy reload under load: ${done} lock round trips, ${failures.length} failed`);
    expect({ failures, someDone: done > 20 }).toEqual({ failures: [], someDone: true });
    // What the leaver held before stays held (until its session expires or an admin
    // revokes it): a reload changes who may call, not what the log holds.
    const described = await who('steady').ok(leader, 'Describe', { lock: 'r/leaver' });
    expect(described.holders).toMatchObject([{ session_id: leaverSession }]);

    const status = await cluster.dlm(['status', '--config', cluster.configPath], 20_000);
    expect(status.code, status.stderr).toBe(0);
    // The policy digest, then the behaviour version (in force/highest).
    expect(status.stdout.match(new RegExp(` ${digestAfter} +\\d+/\\d+ *$`, 'gm'))).toHaveLength(3);
    expect(status.stdout).not.toContain(digestBefore);
    for (const { id } of cluster.nodes) {
      const reloaded = cluster
        .logLines(id)
        .find((line) => line.msg === 'reloaded on SIGHUP' && line.what === 'access policy');
      expect(reloaded?.outcome, id).toMatchObject({
        policyDigest: digestAfter,
        previousPolicyDigest: digestBefore,
      });
      expect(readFileSync(cluster.logPath(id), 'utf8')).not.toContain(TOKEN);
      expect(cluster.isRunning(id)).toBe(true);
    }
  }, 120_000);

  it('refuses a policy file that does not parse, naming the field, and keeps the old one', async () => {
    const leader = await cluster.waitForLeader(10_000);
    writeAuth({
      roles: ROLES,
      identities: { steady: ['team'], newbie: ['no-such-role'], leaver: ['team'] },
    });
    hangUpAll();
    const refused = (id: string) =>
      cluster
        .logLines(id)
        .find(
          (line) =>
            typeof line.msg === 'string' && line.msg.includes('could not reload access policy'),
        );
    for (const { id } of cluster.nodes) {
      await until(async () => refused(id) !== undefined, `${id} refuses the file`);
      const { err } = refused(id) as { err?: { message?: string } };
      expect(err?.message, id).toContain(
        'auth.identities.newbie[0]: expected a role of auth.roles, got "no-such-role"',
      );
    }
    expect(await digests()).toEqual([digestAfter, digestAfter, digestAfter]);
    // The old policy, not the file's: newbie still locks, leaver is still refused.
    const session = await who('newbie').openSession(leader);
    expect(await who('newbie').acquire(leader, 'r/newbie-again', session)).toMatchObject({
      ok: true,
      reply: { acquired: true },
    });
    const leaverOpen = await who('leaver').call(leader, 'OpenSession', {
      ttl_ms: '60000',
      client_name: 'leaver',
      request_id: newRequestId(),
    });
    expectRefused(leaverOpen, grpc.status.PERMISSION_DENIED, 'permissionDenied');

    // Removing the section is refused too: whether there is one is fixed at start.
    writeAuth(undefined);
    process.kill(cluster.pid(leader) ?? 0, 'SIGHUP');
    await until(
      async () =>
        cluster
          .logLines(leader)
          .some((line) =>
            String((line.err as { message?: string } | undefined)?.message).includes(
              'removing it needs a restart',
            ),
          ),
      'the leader refuses a file without an auth section',
    );
    expect((await digests())[cluster.nodes.findIndex((node) => node.id === leader)]).toBe(
      digestAfter,
    );
  }, 60_000);

  it('a token that a reload removes stops working on a Session stream opened with it', async () => {
    const leader = await cluster.waitForLeader(10_000);
    const session = await who('token').openSession(leader);
    const stream = who('token').sessionStream(leader);
    try {
      const before = await stream.call({ keep_alive: { session_id: session } });
      expect(before.keep_alive).toMatchObject({ ttl_ms: '60000' });
      // The identity keeps its role; only its token goes. (Another token stays: with
      // none configured a node ignores the header, and the certificate would speak.)
      writeAuth({
        tokens: [await tokenEntry('steady', 'another-token-0123456789', 'sha256')],
        roles: ROLES,
        identities: { steady: ['team'], newbie: ['team'], deployer: ['team'] },
      });
      const digest = await fileDigest();
      hangUpAll();
      await until(
        async () => (await digests()).every((each) => each === digest),
        'every node serves the policy without the token',
      );
      const after = await stream.call({ keep_alive: { session_id: session } });
      expect(after.error).toMatchObject({
        code: grpc.status.UNAUTHENTICATED,
        error_code: 'unauthenticated',
      });
    } finally {
      stream.end();
    }
  }, 60_000);
});
