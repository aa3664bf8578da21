import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenEntry } from '../../src/api/auth/tokens.ts';
import { bearerInterceptor } from '../../src/client/bearer.ts';
import { Caller, expectRefused, serving, untilPlaced } from '../support/auth-caller.ts';
import { makeCerts, tlsSectionFor } from '../support/certs.ts';
import { newRequestId, ProcessCluster } from '../support/process-cluster.ts';

/**
 * Issue 15 on real processes: identities from client certificates (mutual TLS) and from
 * bearer tokens (plaintext), roles with per-prefix permissions, sessions owned by their
 * opener, and per-identity limits. Every refusal is checked for its gRPC status and its
 * dlm-error-code. Calls go to followers too, so a write forwarded to the leader is judged
 * as the caller's, by the identity the follower established.
 */

const POLICY = {
  roles: {
    teamA: [{ prefix: 'a/', grant: ['read', 'lock'] }],
    teamB: [{ prefix: 'b/', grant: ['read', 'lock'] }],
    reader: [{ prefix: '', grant: ['read'] }],
    ops: [{ prefix: '', grant: ['read', 'lock', 'admin'] }],
  },
  limits: { sessionsPerIdentityMax: 3, locksHeldPerIdentityMax: 2, waitersPerIdentityMax: 1 },
};

/** The `risk` field of the warning a node with an auth section and plaintext peers logs at start. */
const PLAINTEXT_PEERS_RISK = 'peers-plaintext-under-auth';

describe('identities, roles and owned sessions under mutual TLS (real processes)', () => {
  let cluster: ProcessCluster;
  let certs: string;
  const callers: Record<string, Caller> = {};
  let leader: string;
  let follower: string;

  beforeAll(async () => {
    certs = mkdtempSync(join(tmpdir(), 'dlm-authz-certs-'));
    // A certificate per node, and one per identity (its CN), from dlm certs init's code.
    makeCerts(certs, {
      nodes: ['n1', 'n2', 'n3'],
      clients: ['client', 'alice', 'bob', 'reader', 'ops'],
    });
    const pem = (name: string) => readFileSync(join(certs, name));
    cluster = await ProcessCluster.create(3, {
      tls: tlsSectionFor(certs),
      auth: {
        ...POLICY,
        // The harness's own certificate (CN "client") waits for the leader with Status.
        identities: { alice: ['teamA'], bob: ['teamB'], reader: ['reader'], ops: ['ops'] },
      },
    });
    cluster.credentials = grpc.credentials.createSsl(
      pem('ca.pem'),
      pem('clients/client-key.pem'),
      pem('clients/client.pem'),
    );
    for (const name of ['alice', 'bob', 'reader', 'ops']) {
      const credentials = grpc.credentials.createSsl(
        pem('ca.pem'),
        pem(`clients/${name}-key.pem`),
        pem(`clients/${name}.pem`),
      );
      callers[name] = new Caller(cluster, credentials);
    }
    cluster.startAll();
    leader = await cluster.waitForLeader(20_000);
    follower = cluster.nodes.find((node) => node.id !== leader)?.id ?? '';
  }, 60_000);

  afterAll(async () => {
    for (const caller of Object.values(callers)) caller.close();
    await cluster?.stopAll();
    cluster?.remove();
    rmSync(certs, { recursive: true, force: true });
  });

  const who = (name: string): Caller => {
    const caller = callers[name];
    if (caller === undefined) throw new Error(`no caller ${name}`);
    return caller;
  };

  it('another identity cannot keep alive, release or close a session, nor acquire on it', async () => {
    const alice = who('alice');
    const bob = who('bob');
    // Through a follower: the write is forwarded, and still alice's.
    const sessionA = await alice.openSession(follower);
    const granted = await alice.acquire(follower, 'a/db', sessionA);
    expect(granted).toMatchObject({ ok: true, reply: { acquired: true } });
    const token = granted.ok ? String(granted.reply.fencing_token) : '';
    const sessionB = await bob.openSession(leader);

    for (const node of [leader, follower]) {
      expectRefused(
        await bob.call(node, 'KeepAlive', { session_id: sessionA }),
        grpc.status.PERMISSION_DENIED,
        'notSessionOwner',
      );
      // The batch form too: one foreign id refuses the whole batch.
      expectRefused(
        await bob.call(node, 'KeepAlive', { session_ids: [sessionB, sessionA] }),
        grpc.status.PERMISSION_DENIED,
        'notSessionOwner',
      );
      expectRefused(
        await bob.call(node, 'CloseSession', { session_id: sessionA, request_id: newRequestId() }),
        grpc.status.PERMISSION_DENIED,
        'notSessionOwner',
      );
      // On a name bob may lock, with alice's session.
      expectRefused(
        await bob.acquire(node, 'b/x', sessionA),
        grpc.status.PERMISSION_DENIED,
        'notSessionOwner',
      );
      expectRefused(
        await bob.call(node, 'Release', {
          lock: 'b/x',
          session_id: sessionA,
          fencing_token: token,
          request_id: newRequestId(),
        }),
        grpc.status.PERMISSION_DENIED,
        'notSessionOwner',
      );
      // Even an identity that may lock every name cannot release alice's grant.
      expectRefused(
        await who('ops').call(node, 'Release', {
          lock: 'a/db',
          session_id: sessionA,
          fencing_token: token,
          request_id: newRequestId(),
        }),
        grpc.status.PERMISSION_DENIED,
        'notSessionOwner',
      );
    }
    // Outside its prefixes, even with its own session.
    expectRefused(
      await bob.acquire(follower, 'a/db', sessionB),
      grpc.status.PERMISSION_DENIED,
      'permissionDenied',
    );
    // Alice's session and grant are untouched.
    expect(await alice.ok(leader, 'KeepAlive', { session_id: sessionA })).toMatchObject({
      ttl_ms: '60000',
    });
    const described = await alice.ok(follower, 'Describe', { lock: 'a/db' });
    expect(described.holders).toMatchObject([{ session_id: sessionA, fencing_token: token }]);
    await alice.ok(follower, 'Release', {
      lock: 'a/db',
      session_id: sessionA,
      fencing_token: token,
      request_id: newRequestId(),
    });
    await alice.ok(follower, 'CloseSession', { session_id: sessionA, request_id: newRequestId() });
    await bob.ok(leader, 'CloseSession', { session_id: sessionB, request_id: newRequestId() });
  });

  it('a read-only identity can read but cannot open sessions or acquire', async () => {
    const reader = who('reader');
    const alice = who('alice');
    const sessionA = await alice.openSession(leader);
    await alice.acquire(leader, 'a/shown', sessionA);
    expectRefused(
      await reader.call(follower, 'OpenSession', {
        ttl_ms: '60000',
        client_name: 'r',
        request_id: newRequestId(),
      }),
      grpc.status.PERMISSION_DENIED,
      'permissionDenied',
    );
    expectRefused(
      await reader.acquire(follower, 'a/shown', sessionA),
      grpc.status.PERMISSION_DENIED,
      'permissionDenied',
    );
    // Reading shows the holders' owners.
    const described = await reader.ok(follower, 'Describe', { lock: 'a/shown' });
    expect(described.holders).toMatchObject([{ owner: 'owner-of-a/shown' }]);
    expect(await reader.watch(follower, '')).toBe('streaming');
    // Alice may not read outside her prefix, nor watch every lock.
    expectRefused(
      await alice.call(follower, 'Describe', { lock: 'b/x' }),
      grpc.status.PERMISSION_DENIED,
      'permissionDenied',
    );
    expectRefused(
      await alice.call(follower, 'ValidateFence', { lock: 'b/x', fencing_token: '1' }),
      grpc.status.PERMISSION_DENIED,
      'permissionDenied',
    );
    expectRefused(
      await alice.watch(follower, ''),
      grpc.status.PERMISSION_DENIED,
      'permissionDenied',
    );
    expect(await alice.watch(follower, 'a/')).toBe('streaming');
    // Listing: locks under a prefix need read on the prefix; sessions list names under
    // any prefix, so they need read on every name.
    const listed = await alice.ok(follower, 'ListLocks', { prefix: 'a/' });
    expect((listed.locks as { lock: string }[]).map((each) => each.lock)).toContain('a/shown');
    for (const [method, request] of [
      ['ListLocks', { prefix: '' }],
      ['ListLocks', { prefix: 'b/' }],
      ['ListSessions', {}],
    ] as const) {
      expectRefused(
        await alice.call(follower, method, request),
        grpc.status.PERMISSION_DENIED,
        'permissionDenied',
      );
    }
    await reader.ok(follower, 'ListSessions', {});
    await alice.ok(leader, 'CloseSession', { session_id: sessionA, request_id: newRequestId() });
  });

  it('only admins change membership, transfer leadership or set the lock rules', async () => {
    const rules = (await who('ops').ok(leader, 'Status', {}, 'Cluster')).lock_rules;
    const calls: [string, object][] = [
      ['AddMember', { node_id: 'n9', peer_address: '127.0.0.1:1', client_address: '127.0.0.1:2' }],
      ['RemoveMember', { node_id: follower }],
      ['TransferLeadership', { target_node_id: follower }],
      ['SetLockRules', { rules }],
      ['RevokeLock', { lock: 'a/revoked', reason: 'test' }],
    ];
    for (const name of ['alice', 'reader']) {
      for (const [method, request] of calls) {
        expectRefused(
          await who(name).call(leader, method, request, 'Cluster'),
          grpc.status.PERMISSION_DENIED,
          'permissionDenied',
        );
      }
    }
    // An admin gets past the check: setting the rules in force again is harmless.
    await who('ops').ok(follower, 'SetLockRules', { rules }, 'Cluster');
    // Every node reports the same policy digest.
    const digests = new Set<unknown>();
    for (const node of cluster.nodes) {
      digests.add((await who('reader').ok(node.id, 'Status', {}, 'Cluster')).policy_digest);
    }
    expect(digests.size).toBe(1);
    expect([...digests][0]).toMatch(/^[0-9a-f]{12}$/);
  });

  it('peers on mutual TLS: no node warns that the auth section can be bypassed', () => {
    for (const node of cluster.nodes) {
      expect(readFileSync(cluster.logPath(node.id), 'utf8')).not.toContain(PLAINTEXT_PEERS_RISK);
    }
  });

  it('per-identity limits refuse RESOURCE_EXHAUSTED naming the limit, whatever node takes the call', async () => {
    const bob = who('bob');
    const sessions = [
      await bob.openSession(leader),
      await bob.openSession(follower),
      await bob.openSession(leader),
    ];
    const fourth = await bob.call(follower, 'OpenSession', {
      ttl_ms: '60000',
      client_name: 'authz',
      request_id: newRequestId(),
    });
    expectRefused(fourth, grpc.status.RESOURCE_EXHAUSTED, 'limitReached');
    expect(fourth.ok ? '' : fourth.message).toContain('sessionsPerIdentityMax (3)');
    // Another identity is not held to bob's count.
    const sessionA = await who('alice').openSession(follower);
    const [first = '', second = ''] = sessions;
    expect(await bob.acquire(leader, 'b/1', first)).toMatchObject({
      ok: true,
      reply: { acquired: true },
    });
    expect(await bob.acquire(follower, 'b/2', second)).toMatchObject({
      ok: true,
      reply: { acquired: true },
    });
    const third = await bob.acquire(follower, 'b/3', first);
    expectRefused(third, grpc.status.RESOURCE_EXHAUSTED, 'limitReached');
    expect(third.ok ? '' : third.message).toContain('locksHeldPerIdentityMax (2)');
    for (const session of sessions) {
      await bob.ok(leader, 'CloseSession', { session_id: session, request_id: newRequestId() });
    }
    await who('alice').ok(leader, 'CloseSession', {
      session_id: sessionA,
      request_id: newRequestId(),
    });
  });
});

describe('bearer tokens on a plaintext cluster (real processes)', () => {
  let cluster: ProcessCluster;
  const tokens = {
    alice: 'alice-token-0123456789',
    bob: 'bob-token-0123456789',
    ops: 'ops-token-0123456789',
  };

  beforeAll(async () => {
    cluster = await ProcessCluster.create(3, {
      auth: {
        ...POLICY,
        tokens: [
          await tokenEntry('alice', tokens.alice, 'sha256'),
          await tokenEntry('bob', tokens.bob, 'scrypt'),
          await tokenEntry('ops', tokens.ops, 'sha256'),
        ],
        identities: { alice: ['teamA'], bob: ['teamB'], ops: ['ops'] },
      },
    });
    cluster.clientOptions = { interceptors: [bearerInterceptor(tokens.ops)] };
    // Per-request log lines are at debug: they are checked below, for identities and
    // for tokens in clear.
    cluster.env = { DLM_LOG_LEVEL: 'debug' };
    cluster.startAll();
    await cluster.waitForLeader(20_000);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stopAll();
    cluster?.remove();
  });

  it("admits known tokens, refuses none or a wrong one, and keeps sessions their owner's", async () => {
    const insecure = grpc.credentials.createInsecure();
    const alice = new Caller(cluster, insecure, {
      interceptors: [bearerInterceptor(tokens.alice)],
    });
    const bob = new Caller(cluster, insecure, { interceptors: [bearerInterceptor(tokens.bob)] });
    const nobody = new Caller(cluster, insecure);
    const forger = new Caller(cluster, insecure, {
      interceptors: [bearerInterceptor('alice-token-guess')],
    });
    try {
      const leader = await cluster.waitForLeader(10_000);
      const follower = cluster.nodes.find((node) => node.id !== leader)?.id ?? '';
      // waitForLeader asks the nodes in turn: the follower may still be starting, and
      // would answer UNAVAILABLE where the checks below expect an auth refusal.
      await serving(alice, follower);
      const open = { ttl_ms: '60000', client_name: 't', request_id: newRequestId() };
      expectRefused(
        await nobody.call(follower, 'OpenSession', open),
        grpc.status.UNAUTHENTICATED,
        'unauthenticated',
      );
      expectRefused(
        await forger.call(follower, 'OpenSession', open),
        grpc.status.UNAUTHENTICATED,
        'unauthenticated',
      );
      expectRefused(
        await nobody.call(follower, 'Status', {}, 'Cluster'),
        grpc.status.UNAUTHENTICATED,
        'unauthenticated',
      );
      const sessionA = await alice.openSession(follower);
      // Retried on UNAVAILABLE with the same request id (untilPlaced).
      const acquireA = {
        lock: 'a/t',
        session_id: sessionA,
        mode: 'EXCLUSIVE',
        wait_ms: '0',
        request_id: newRequestId(),
        owner: 'owner-of-a/t',
      };
      const granted = await untilPlaced(() => alice.call(follower, 'Acquire', acquireA));
      expect(granted, 'alice acquires a/t through a follower').toMatchObject({ ok: true });
      const token = granted.ok ? String(granted.reply.fencing_token) : 'none';
      const bobRelease = {
        lock: 'a/t',
        session_id: sessionA,
        fencing_token: token,
        request_id: newRequestId(),
      };
      expectRefused(
        await untilPlaced(() => bob.call(leader, 'Release', bobRelease)),
        grpc.status.PERMISSION_DENIED,
        'permissionDenied',
      );
      expectRefused(
        await bob.call(follower, 'KeepAlive', { session_id: sessionA }),
        grpc.status.PERMISSION_DENIED,
        'notSessionOwner',
      );
      expectRefused(
        await bob.acquire(follower, 'b/t', sessionA),
        grpc.status.PERMISSION_DENIED,
        'notSessionOwner',
      );
      expectRefused(
        await bob.call(follower, 'TransferLeadership', { target_node_id: follower }, 'Cluster'),
        grpc.status.PERMISSION_DENIED,
        'permissionDenied',
      );
      // On a Lock.Session stream (what the TypeScript client uses), the same answers.
      const streamed = await bob.sessionCall(follower, { keep_alive: { session_id: sessionA } });
      expect(streamed.error).toMatchObject({
        code: grpc.status.PERMISSION_DENIED,
        error_code: 'notSessionOwner',
      });
      const anonymous = await nobody.sessionCall(follower, { describe: { lock: 'a/t' } });
      expect(anonymous.error).toMatchObject({
        code: grpc.status.UNAUTHENTICATED,
        error_code: 'unauthenticated',
      });
      const own = await alice.sessionCall(follower, { keep_alive: { session_id: sessionA } });
      expect(own.keep_alive).toMatchObject({ ttl_ms: '60000' });
      await alice.ok(follower, 'Release', {
        lock: 'a/t',
        session_id: sessionA,
        fencing_token: token,
        request_id: newRequestId(),
      });

      // The console (the metrics address authenticates nobody) shows no owner and no
      // client name under auth: those are for identities with `read` on the lock.
      const consoleSession = await alice.ok(follower, 'OpenSession', {
        ttl_ms: '60000',
        client_name: 'console-secret-client',
        request_id: newRequestId(),
      });
      expect(
        await alice.acquire(follower, 'a/console-secret', String(consoleSession.session_id)),
      ).toMatchObject({ ok: true });
      const address = cluster.nodes.find((node) => node.id === follower)?.metricsAddress;
      const frameText = await (await fetch(`http://${address}/console/view.json`)).text();
      const frame = JSON.parse(frameText) as {
        view: { namesHidden: boolean; locks: { rows: { lock: string }[] } };
      };
      expect(frame.view.namesHidden).toBe(true);
      expect(frame.view.locks.rows.map((row) => row.lock)).toContain('a/console-secret');
      expect(frameText).not.toContain('owner-of-a/console-secret');
      expect(frameText).not.toContain('console-secret-client');

      // The CLI sends DLM_TOKEN, and `dlm status` shows every node's policy digest.
      process.env.DLM_TOKEN = tokens.alice;
      try {
        const status = await cluster.dlm(['status', '--config', cluster.configPath], 20_000);
        expect(status.code, status.stderr).toBe(0);
        // The rules digest and the policy digest, then the behaviour version (in force/highest).
        expect(status.stdout).toMatch(/[0-9a-f]{12} +[0-9a-f]{12} +\d+\/\d+ *$/m);
        expect(status.stderr).not.toContain('different access policies');
      } finally {
        delete process.env.DLM_TOKEN;
      }
      // No node logged a token in clear. Each warned at start that, its peers being
      // plaintext, whoever reaches the peer port can bypass the policy, and said the fix.
      for (const node of cluster.nodes) {
        const log = readFileSync(cluster.logPath(node.id), 'utf8');
        for (const secret of Object.values(tokens)) expect(log).not.toContain(secret);
        expect(log).not.toContain('alice-token-guess');
        const warning = log.split('\n').find((line) => line.includes(PLAINTEXT_PEERS_RISK));
        expect(warning, `${node.id} warns of plaintext peers`).toBeDefined();
        expect(JSON.parse(warning ?? '{}')).toMatchObject({ level: 40 });
        expect(warning).toMatch(/bypass every permission.*add a tls section/);
      }
    } finally {
      for (const caller of [alice, bob, nobody, forger]) caller.close();
    }
  });

  it('counts each refused authentication by reason, and warns once per reason and host every 10 s however many', async () => {
    const node = await cluster.waitForLeader(10_000);
    const metricsAddress = cluster.nodes.find((each) => each.id === node)?.metricsAddress;
    const failures = async (): Promise<Record<string, number>> => {
      const body = await (await fetch(`http://${metricsAddress}/metrics`)).text();
      const counts: Record<string, number> = {};
      for (const match of body.matchAll(
        /^dlm_auth_failures_total\{[^}]*reason="(\w+)"[^}]*\} (\S+)$/gm,
      )) {
        counts[match[1] ?? ''] = Number(match[2]);
      }
      return counts;
    };
    const warnings = (): Record<string, unknown>[] =>
      cluster
        .logLines(node)
        .filter((line) => line.msg === 'refused an authentication' && line.port === 'client');
    const before = await failures();
    const warnedBefore = warnings().length;
    // Each kind from a new connection every time (a new client port), as a scanner would.
    const FLOOD = 15;
    const insecure = grpc.credentials.createInsecure();
    const fresh = { 'grpc.use_local_subchannel_pool': 1 };
    for (let i = 0; i < FLOOD; i++) {
      const kinds = [
        new Caller(cluster, insecure, fresh),
        new Caller(cluster, insecure, {
          ...fresh,
          interceptors: [bearerInterceptor(`guess-${i}`)],
        }),
        new Caller(cluster, insecure, { ...fresh, interceptors: [bearerInterceptor('two words')] }),
      ];
      for (const caller of kinds) {
        expectRefused(
          await caller.call(node, 'Status', {}, 'Cluster'),
          grpc.status.UNAUTHENTICATED,
          'unauthenticated',
        );
        caller.close();
      }
    }
    const after = await failures();
    for (const reason of ['no_credentials', 'unknown_token', 'malformed_authorization']) {
      expect((after[reason] ?? 0) - (before[reason] ?? 0), reason).toBe(FLOOD);
    }
    expect(after).toMatchObject({ identity_too_long: 0, tls_handshake: 0 });
    // At most one line per reason in the flood (none if the test before warned of it in
    // the last 10 s), each naming the reason and the address, never the token.
    const flood = warnings().slice(warnedBefore);
    const byReason = new Map<unknown, number>();
    for (const line of flood) byReason.set(line.reason, (byReason.get(line.reason) ?? 0) + 1);
    for (const [reason, count] of byReason) expect(count, String(reason)).toBe(1);
    expect(new Set(warnings().map((line) => line.reason))).toEqual(
      new Set(['no_credentials', 'unknown_token', 'malformed_authorization']),
    );
    expect(warnings()[0]?.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    const log = readFileSync(cluster.logPath(node), 'utf8');
    expect(log).not.toContain('guess-');
    expect(log).not.toContain('two words');
  });

  it("names the caller's identity on each request's log line, unary or on a Session stream", async () => {
    const node = await cluster.waitForLeader(10_000);
    const alice = new Caller(cluster, grpc.credentials.createInsecure(), {
      interceptors: [bearerInterceptor(tokens.alice)],
    });
    try {
      const requestId = newRequestId();
      const opened = await alice.ok(node, 'OpenSession', {
        ttl_ms: '60000',
        client_name: 'logged',
        request_id: requestId,
      });
      const streamed = await alice.sessionCall(node, {
        keep_alive: { session_id: String(opened.session_id) },
      });
      expect(streamed.keep_alive).toMatchObject({ ttl_ms: '60000' });
      const refused = await new Caller(cluster, grpc.credentials.createInsecure()).call(
        node,
        'Describe',
        { lock: 'a/x' },
      );
      expectRefused(refused, grpc.status.UNAUTHENTICATED, 'unauthenticated');
      await alice.ok(node, 'CloseSession', {
        session_id: String(opened.session_id),
        request_id: newRequestId(),
      });
      const calls = cluster.logLines(node).filter((line) => line.msg === 'call');
      expect(calls.find((line) => line.requestId === requestId)).toMatchObject({
        method: 'OpenSession',
        identity: 'alice',
        code: grpc.status.OK,
      });
      // On the stream: the same line, with the stream's identity.
      expect(
        calls.filter((line) => line.method === 'KeepAlive' && line.identity === 'alice'),
      ).not.toHaveLength(0);
      // A call that established no identity has none on its line.
      const unauthenticated = calls.filter((line) => line.code === grpc.status.UNAUTHENTICATED);
      expect(unauthenticated).not.toHaveLength(0);
      for (const line of unauthenticated) expect(line).not.toHaveProperty('identity');
      expect(readFileSync(cluster.logPath(node), 'utf8')).not.toContain(tokens.alice);
    } finally {
      alice.close();
    }
  });
});
