import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { tokenEntry } from '../../src/api/auth/tokens.ts';
import { GRPC_STATUS_BY_CODE } from '../../src/api/errors.ts';
import { bearerInterceptor } from '../../src/client/bearer.ts';
import type { TlsMaterial } from '../../src/config/index.ts';
import type { LockCommand } from '../../src/lock/index.ts';
import { encodeEntry } from '../../src/node/entry-codec.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import type { Transport } from '../../src/node/transport.ts';
import { type NodeId, nodeId, sessionId as toSessionId } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import { makeCerts, tlsSectionFor } from '../support/certs.ts';
import { freePort } from '../support/free-port.ts';
import {
  type CallOutcome,
  type FieldDescriptor,
  genericClient,
  HTTP2_PREFACE,
  randomBytes,
  randomString,
  randomUint64,
  randomValue,
  rawSocket,
  rawUnaryCall,
  rssKiB,
  type UnaryMethod,
  unaryMethods,
} from '../support/fuzz.ts';
import { startPeerTransport } from '../support/peer-transports.ts';
import { newRequestId, ProcessCluster, peerTransportFromEnv } from '../support/process-cluster.ts';

/**
 * Issue 15, item 6: a time-bounded fuzz of a live node with an auth section, once under
 * mutual TLS (identities from client certificates) and once with bearer tokens on
 * plaintext ports. Tenants call every unary method with raw bytes and with valid-shaped
 * requests: random session ids (their own, others', made up), lock names inside and
 * outside their prefixes, admin calls they may not make; callers with no credentials, a
 * wrong token or a malformed header call too. Meanwhile a peer that is not a member (n9,
 * which under mutual TLS holds a node certificate of the cluster's CA) forwards writes
 * with the right cluster id: sessions for the admin, grants under a prefix nobody may
 * lock, for sessions it has seen, garbage entries, and writes in the node's own name.
 *
 * The node must not crash, its memory stays bounded, every answer is a proper status
 * (an error from the table carries its dlm-error-code with the table's status), and at
 * the end no write outside a caller's rights is in force: read as the admin, no lock is
 * held under `forbidden/`, every lock a tenant holds is under its own prefix, no forged
 * session exists, and the forwards were refused and counted (not_a_member).
 * Seeded (DLM_FUZZ_SEED) for replay.
 */
const FUZZ_MS = 5_000;
const ROUNDS_MAX = 5_000;
const SEED = Number(process.env.DLM_FUZZ_SEED ?? 1506);
const CLUSTER_ID = 'c-authz-fuzz';
const N1 = nodeId('n1');
const N9 = nodeId('n9');
/** Nobody but `ops` (who writes nothing here) may lock under it. */
const FORBIDDEN = 'forbidden/';

const POLICY = {
  roles: {
    teamA: [{ prefix: 'a/', grant: ['read', 'lock'] }],
    teamB: [{ prefix: 'b/', grant: ['read', 'lock'] }],
    reader: [{ prefix: '', grant: ['read'] }],
    ops: [{ prefix: '', grant: ['read', 'lock', 'admin'] }],
  },
  identities: { alice: ['teamA'], bob: ['teamB'], reader: ['reader'], ops: ['ops'] },
  limits: { sessionsPerIdentityMax: 20, locksHeldPerIdentityMax: 20, waitersPerIdentityMax: 5 },
};
/** Where each fuzzing tenant may lock; `mallory` is authenticated but has no role. */
const LOCK_PREFIXES: Readonly<Record<string, string>> = { alice: 'a/', bob: 'b/' };
const TENANTS = ['alice', 'bob', 'reader', 'mallory'] as const;

/** A client that calls as one identity (or as none, or with bad credentials). */
interface Caller {
  readonly name: string;
  readonly client: grpc.Client;
  readonly metadata: () => grpc.Metadata;
  /** Its calls may fail in the transport (a plaintext client on a TLS port): no dlm code. */
  readonly refusedByTransport: boolean;
}

/** A status that comes from gRPC or the client, not the table (docs/errors.md). */
function codelessAllowed(outcome: CallOutcome, caller: Caller): boolean {
  switch (outcome.code) {
    case grpc.status.CANCELLED:
    case grpc.status.DEADLINE_EXCEEDED:
      return true;
    case grpc.status.UNAVAILABLE:
      return caller.refusedByTransport;
    case grpc.status.RESOURCE_EXHAUSTED:
      return /larger than max/.test(outcome.details);
    default:
      return false;
  }
}

/** Each test's processes, forger and files, stopped before the next test starts. */
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Setup {
  readonly cluster: ProcessCluster;
  readonly callers: readonly Caller[];
  /** The peer that is not a member, with what it needs to connect under the mode. */
  readonly forgerTls: TlsMaterial | null;
}

async function mutualTls(): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'dlm-authz-fuzz-certs-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  // n9's certificate is a node certificate of the CA, for an id that was never added.
  const certs = makeCerts(dir, { nodes: ['n1', 'n9'], clients: ['client', 'ops', ...TENANTS] });
  const cluster = await ProcessCluster.create(1, {
    clusterId: CLUSTER_ID,
    tls: tlsSectionFor(dir),
    auth: POLICY,
  });
  const ssl = (name: string) => {
    const { ca, key, cert } = certs.client(name);
    return grpc.credentials.createSsl(ca, key, cert);
  };
  cluster.credentials = ssl('ops');
  const address = cluster.nodes[0]?.clientAddress ?? '';
  const none = () => new grpc.Metadata();
  const callers: Caller[] = TENANTS.map((name) => ({
    name,
    client: genericClient(address, ssl(name)),
    metadata: none,
    refusedByTransport: false,
  }));
  callers.push({
    name: 'plaintext',
    client: genericClient(address, grpc.credentials.createInsecure()),
    metadata: none,
    refusedByTransport: true,
  });
  return { cluster, callers, forgerTls: certs.node('n9') };
}

async function bearerTokens(): Promise<Setup> {
  const token = (name: string) => `${name}-token-0123456789abcdef`;
  const cluster = await ProcessCluster.create(1, {
    clusterId: CLUSTER_ID,
    auth: {
      ...POLICY,
      tokens: await Promise.all(
        ['ops', ...TENANTS].map((name) => tokenEntry(name, token(name), 'sha256')),
      ),
    },
  });
  const bearer = (header: string) => () => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', header);
    return metadata;
  };
  cluster.clientOptions = { interceptors: [bearerInterceptor(token('ops'))] };
  const address = cluster.nodes[0]?.clientAddress ?? '';
  const client = genericClient(address, grpc.credentials.createInsecure());
  const callers: Caller[] = TENANTS.map((name) => ({
    name,
    client,
    metadata: bearer(`Bearer ${token(name)}`),
    refusedByTransport: false,
  }));
  for (const [name, metadata] of [
    ['nobody', () => new grpc.Metadata()],
    ['wrong token', bearer(`Bearer ${token('alice')}x`)],
    ['not bearer', bearer(`Basic ${token('alice')}`)],
  ] as const) {
    callers.push({ name, client, metadata, refusedByTransport: false });
  }
  return { cluster, callers, forgerTls: null };
}

/** What the fuzz learned as it went: sessions opened and by whom, tokens granted. */
interface Seen {
  readonly sessions: Map<string, string>;
  readonly tokens: string[];
}

/** A valid-shaped value: names in and out of the caller's prefixes, ids it may or may not own. */
function shapedValue(prng: Prng, field: FieldDescriptor, caller: string, seen: Seen): unknown {
  // Half the time its own sessions and names, so that it gets grants to check.
  const all = [...seen.sessions.keys()];
  const own = all.filter((id) => seen.sessions.get(id) === caller);
  const sessionId = () => {
    const ids = own.length > 0 && prng.chance(0.5) ? own : all;
    return ids.length > 0 && prng.chance(0.9) ? prng.pick(ids) : randomUint64(prng);
  };
  const k = prng.intBetween(0, 20);
  switch (field.name) {
    case 'lock': {
      if (prng.chance(0.05)) return randomString(prng);
      const ownPrefix = LOCK_PREFIXES[caller];
      const prefix =
        ownPrefix !== undefined && prng.chance(0.5)
          ? ownPrefix
          : prng.pick(['a/', 'b/', 'c/', FORBIDDEN, '']);
      return prefix + (prng.chance(0.9) ? `l${k}` : '');
    }
    case 'prefix':
      return prng.pick(['', 'a/', 'b/', FORBIDDEN, 'a']);
    case 'session_id':
      return sessionId();
    case 'session_ids':
      return Array.from({ length: prng.intBetween(1, 3) }, sessionId);
    case 'client_name':
      // Tagged: the end check knows whose session it is.
      return `fz:${caller}:${k}`;
    case 'ttl_ms':
      return prng.pick(['60000', '10000', '0', randomUint64(prng)]);
    case 'wait_ms':
      return prng.pick(['0', '0', '0', '30']);
    case 'fencing_token':
      return seen.tokens.length > 0 && prng.chance(0.7)
        ? prng.pick(seen.tokens)
        : randomUint64(prng);
    case 'request_id':
      return newRequestId();
    case 'owner':
    case 'reason':
      return prng.chance(0.9) ? `o${k}` : randomString(prng);
    case 'max_hold_ms':
    case 'lock_delay_ms':
    case 'after_session_id':
      return '0';
    case 'limit':
      return prng.intBetween(0, 5);
    case 'after':
      return '';
    case 'node_id':
    case 'target_node_id':
      return prng.pick(['n1', 'n9']);
    case 'peer_address':
    case 'client_address':
      return '127.0.0.1:1';
    default:
      return randomValue(prng, field);
  }
}

/** Forwarded writes from n9, with the cluster's id, none of which may be applied. */
function forgeries(prng: Prng, seen: Seen, round: number): PeerMessage[] {
  const forward = (from: NodeId, data: Uint8Array): PeerMessage => ({
    kind: 'forward',
    from,
    to: N1,
    proposalId: `${from}/forged/${round}`,
    data,
    clusterId: CLUSTER_ID,
  });
  const entry = (command: LockCommand) => encodeEntry({ proposalId: null, command });
  const owned = [...seen.sessions.entries()];
  const [sessionId, owner] = owned.length > 0 ? prng.pick(owned) : ['1', 'alice'];
  return [
    // A session for the admin, in n9's name and in the node's own.
    forward(
      N9,
      entry({
        type: 'OpenSession',
        ttlMs: 60_000,
        clientName: `forged-${round}`,
        requestId: `forged-${round}`,
        identity: 'ops',
      }),
    ),
    forward(
      N1,
      entry({
        type: 'OpenSession',
        ttlMs: 60_000,
        clientName: `forged-self-${round}`,
        requestId: `forged-self-${round}`,
        identity: 'ops',
      }),
    ),
    // A grant nobody may have, for a real session, claiming its owner's identity.
    forward(
      N9,
      entry({
        type: 'Acquire',
        lock: `${FORBIDDEN}${round % 7}`,
        sessionId: toSessionId(Number(sessionId)),
        mode: 'exclusive',
        waitMs: 0,
        requestId: `forged-acquire-${round}`,
        owner: 'forged',
        maxHoldMs: 0,
        lockDelayMs: 0,
        identity: owner,
      }),
    ),
    forward(N9, randomBytes(prng, 64)),
  ];
}

async function startForger(address: string, tls: TlsMaterial | null): Promise<Transport> {
  const forger = await startPeerTransport(
    (peerTransportFromEnv().peerTransport as 'tcp' | 'grpc' | undefined) ?? 'tcp',
    {
      id: N9,
      listenAddress: `127.0.0.1:${await freePort()}`,
      peers: new Map([[N1, address]]),
      queueMessagesMax: 10_000,
      batchMessagesMax: 64,
      reconnectDelayMsMin: 20,
      reconnectDelayMsMax: 200,
    },
    tls,
  );
  cleanups.push(() => forger.close());
  return forger;
}

/** dlm_auth_failures_total{reason} as the node's metrics endpoint says. */
async function authFailures(metricsAddress: string, reason: string): Promise<number> {
  const body = await (await fetch(`http://${metricsAddress}/metrics`)).text();
  const line = new RegExp(`^dlm_auth_failures_total\\{reason="${reason}"[^}]*\\} (\\d+)$`, 'm');
  return Number(line.exec(body)?.[1] ?? 0);
}

/** Every page of a listing, as the admin. */
async function listAll(
  cluster: ProcessCluster,
  method: 'ListLocks' | 'ListSessions',
): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  const cursor: Record<string, unknown> = {};
  for (let page = 0; page < 100; page++) {
    const reply = await cluster.callNode('n1', method, { limit: 1000, ...cursor });
    items.push(...((reply[method === 'ListLocks' ? 'locks' : 'sessions'] as []) ?? []));
    if (reply.truncated !== true) return items;
    if (method === 'ListLocks') cursor.after = reply.last;
    else cursor.after_session_id = reply.last_session_id;
  }
  throw new Error(`${method}: more than 100 pages`);
}

describe.each([
  ['mutual TLS and a policy', mutualTls],
  ['bearer tokens and a policy', bearerTokens],
] as const)('fuzz against a live node with %s', (mode, setUp) => {
  it(`tenants, strangers and a non-member peer for ${FUZZ_MS / 1000} s: no crash, bounded memory, proper statuses, nothing applied outside a caller's rights`, async () => {
    const { cluster, callers, forgerTls } = await setUp();
    cleanups.push(async () => {
      for (const caller of callers) caller.client.close();
      await cluster.stopAll();
      cluster.remove();
    });
    cluster.startAll();
    await cluster.waitForLeader(20_000);
    const node = cluster.nodes[0];
    const pid = cluster.pid('n1');
    if (node === undefined || pid === undefined) throw new Error('no n1');
    const forger = await startForger(node.peerAddress, forgerTls);
    const rssBeforeKiB = rssKiB(pid);
    let rssPeakKiB = rssBeforeKiB;
    const prng = new Prng(SEED);
    const methods = unaryMethods();
    const seen: Seen = { sessions: new Map(), tokens: [] };
    const codes = new Map<string, number>();
    const bad: string[] = [];
    let forged = 0;

    const note = (caller: Caller, method: UnaryMethod, how: string, outcome: CallOutcome) => {
      const key = grpc.status[outcome.code] ?? String(outcome.code);
      codes.set(key, (codes.get(key) ?? 0) + 1);
      const what = `${caller.name} ${method.name} ${how}: ${key} '${outcome.errorCode}' ${outcome.details.slice(0, 200)}`;
      if (outcome.code === grpc.status.OK) return;
      if (outcome.code === grpc.status.INTERNAL || outcome.code === grpc.status.UNKNOWN) {
        bad.push(what);
      } else if (outcome.errorCode === '') {
        if (!codelessAllowed(outcome, caller)) bad.push(`no dlm-error-code: ${what}`);
      } else if (GRPC_STATUS_BY_CODE[outcome.errorCode as never] !== outcome.code) {
        bad.push(`status not the table's: ${what}`);
      }
    };
    const learn = (caller: Caller, method: UnaryMethod, reply: Buffer | null) => {
      if (reply === null) return;
      const decoded = method.deserialize(reply);
      if (method.name === 'OpenSession') seen.sessions.set(String(decoded.session_id), caller.name);
      if (method.name === 'Acquire' && decoded.acquired === true) {
        seen.tokens.push(String(decoded.fencing_token));
      }
    };
    // Writes that make grants come up more often than the rest: their rights are checked.
    const writes = methods.filter((method) => ['OpenSession', 'Acquire'].includes(method.name));
    const fuzzCall = async (caller: Caller) => {
      const method = prng.pick(prng.chance(0.3) ? writes : methods);
      let body: Buffer;
      let how = 'raw';
      if (prng.chance(0.15)) body = randomBytes(prng, 300);
      else {
        how = prng.chance(0.2) ? 'random' : 'shaped';
        const request: Record<string, unknown> = {};
        for (const field of method.fields) {
          if (how === 'shaped') request[field.name] = shapedValue(prng, field, caller.name, seen);
          else if (prng.chance(0.8)) request[field.name] = randomValue(prng, field);
        }
        try {
          body = method.serialize(request);
        } catch {
          return;
        }
      }
      const outcome = await rawUnaryCall(
        caller.client,
        method.path,
        body,
        caller.metadata(),
        5_000,
      );
      note(caller, method, how, outcome);
      if (how === 'shaped') learn(caller, method, outcome.reply);
    };

    const started = Date.now();
    let rounds = 0;
    while (Date.now() - started < FUZZ_MS && rounds < ROUNDS_MAX) {
      rounds++;
      const work: Promise<void>[] = [];
      for (let i = 0; i < 8; i++) work.push(fuzzCall(prng.pick(callers)));
      if (rounds % 8 === 0) {
        const target = prng.chance(0.5) ? node.clientAddress : node.peerAddress;
        const preface = prng.chance(0.5) ? HTTP2_PREFACE : Buffer.alloc(0);
        work.push(rawSocket(target, Buffer.concat([preface, randomBytes(prng, 2_000)])));
      }
      for (const message of forgeries(prng, seen, rounds)) {
        forger.send(message);
        forged++;
      }
      await Promise.all(work);
      if (rounds % 20 === 0) rssPeakKiB = Math.max(rssPeakKiB, rssKiB(pid));
    }
    const total = [...codes.values()].reduce((sum, count) => sum + count, 0);
    // The forwards reach the node (checked last: what they did matters first).
    let refused = 0;
    for (let deadline = Date.now() + 5_000; refused === 0 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      refused = await authFailures(node.metricsAddress, 'not_a_member');
    }
    console.log(
      `authz fuzz (${mode}) seed ${SEED}: ${rounds} rounds, ${total} calls, ${forged} forged forwards (${refused} refused not_a_member) in ${Date.now() - started} ms; codes ${JSON.stringify(Object.fromEntries(codes))}; sessions opened ${seen.sessions.size}, grants ${seen.tokens.length}; node RSS ${rssBeforeKiB} KiB before, peak ${rssPeakKiB} KiB`,
    );

    expect(cluster.isRunning('n1')).toBe(true);
    expect(bad).toEqual([]);
    // The tenants got work done, so the rights checks below looked at something.
    expect(codes.get('OK') ?? 0).toBeGreaterThan(0);
    expect(seen.tokens.length).toBeGreaterThan(0);
    expect(rssPeakKiB - rssBeforeKiB).toBeLessThan(150 * 1024);

    const sessions = await listAll(cluster, 'ListSessions');
    const ownerOf = new Map(sessions.map((s) => [String(s.session_id), String(s.client_name)]));
    expect([...ownerOf.values()].filter((name) => name.startsWith('forged'))).toEqual([]);
    // Only tenants with `lock` somewhere could open a session.
    for (const name of ownerOf.values()) {
      const [tag, caller] = name.split(':');
      if (tag === 'fz') expect(Object.keys(LOCK_PREFIXES)).toContain(caller);
    }
    const outside: string[] = [];
    for (const lock of await listAll(cluster, 'ListLocks')) {
      const name = String(lock.lock);
      for (const holder of [...(lock.holders as []), ...(lock.waiters as [])] as {
        session_id: string;
      }[]) {
        const clientName = ownerOf.get(String(holder.session_id)) ?? '';
        const caller = clientName.startsWith('fz:') ? (clientName.split(':')[1] ?? '') : '';
        const prefix = LOCK_PREFIXES[caller];
        if (name.startsWith(FORBIDDEN) || (caller !== '' && !name.startsWith(prefix ?? '\0'))) {
          outside.push(`${name} held or awaited by session ${holder.session_id} (${clientName})`);
        }
      }
    }
    expect(outside).toEqual([]);

    const log = readFileSync(cluster.logPath('n1'), 'utf8');
    // Nothing logged as an error (an exception in a handler) or fatal.
    expect(log.split('\n').filter((line) => /"level":(50|60)/.test(line))).toEqual([]);
    // Refused there, counted and logged, not lost on the way.
    expect(refused).toBeGreaterThan(0);
    expect(log).toMatch(/"reason":"not_a_member".*refused an authentication/);
  }, 120_000);
});
