import { readFileSync } from 'node:fs';
import { type ServiceError, status } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LOCK_LIMIT_CEILINGS } from '../../src/lock/index.ts';
import { newRequestId, ProcessCluster } from '../support/process-cluster.ts';

/**
 * The public API (proto/dlm.proto) end to end: every RPC of dlm.v1.Lock and
 * dlm.v1.Cluster, and every row of the error table (src/api/errors.ts) that a client
 * can cause from outside, through a grpc-js client generated from the .proto against
 * a 3-node cluster of real `dlm serve` processes (real LevelDB, real gRPC). Writes go
 * to followers on purpose, so forwarding to the leader is exercised throughout.
 *
 * One cluster serves the whole file; its config sets small limits so that the limit
 * rows can be reached: lock.waitersPerLockMax = 2 and runtime.clientCallsInFlightMax =
 * 8. Tests run in order and use distinct lock names; the last one kills two nodes.
 *
 * Error rows covered here, each with its status code and its `dlm-error-code` trailer:
 *   INVALID_ARGUMENT    invalidArgument (names the field; unknown enum value)
 *   NOT_FOUND           sessionNotFound (unknown session; session closed while waiting)
 *   FAILED_PRECONDITION notHolder, staleToken; FAILED_PRECONDITION (RemoveMember of a
 *                       non-member, AddMember of a voter)
 *   RESOURCE_EXHAUSTED  limitReached (waiters per lock); RESOURCE_EXHAUSTED (client
 *                       calls in flight)
 *   DEADLINE_EXCEEDED   a blocking Acquire past its call deadline (the client's own
 *                       deadline ends the call, so there is no trailer to check; the
 *                       test checks that the waiter is withdrawn)
 *   UNAVAILABLE         AddMember on a follower (with `dlm-leader-hint`); any write or
 *                       linearizable read on a node that knows no leader
 * NOT reachable from outside on demand, so NOT tested here; test/api/errors.test.ts
 * covers them in-process, with a stand-in node that fails the way it is told to:
 *   INTERNAL            only a bug or a node stopped by a failure produces it;
 *   DEADLINE_EXCEEDED   for a write that does not commit in time (proposalTimeoutMs);
 *   RESOURCE_EXHAUSTED  for the pending-proposals bound (pendingProposalsMax) and the
 *                       leader's uncommitted-entries bound: a healthy cluster commits
 *                       faster than one client can fill them.
 * Causes of rows tested above that are a matter of timing, not of the request, are left
 * to the in-process tests too: UNAVAILABLE from a node that is shutting down
 * (test/api/errors.test.ts), or from a leader change in the middle of a request.
 * The Watch stream that falls too far behind (RESOURCE_EXHAUSTED) needs a client that
 * stops reading; test/api/lock-api.test.ts covers it in-process.
 */
const WAITERS_PER_LOCK_MAX = 2;
const CALLS_IN_FLIGHT_MAX = 8;
const TTL_MS = '60000';

interface Header {
  readonly node_id: string;
  readonly leader_id: string;
  readonly term: string;
  readonly index: string;
}
interface Holder {
  readonly session_id: string;
  readonly owner: string;
  readonly fencing_token: string;
  readonly acquired_index: string;
  /** Set by Describe and ListLocks: how long the answering node has seen the grant held. */
  readonly held_ms: string;
}
interface Waiter {
  readonly session_id: string;
  readonly owner: string;
  readonly mode: string;
  readonly enqueued_index: string;
}
interface AcquireAnswer {
  readonly header: Header;
  readonly acquired: boolean;
  readonly fencing_token: string;
  readonly holders: readonly Holder[];
}
interface DescribeAnswer {
  readonly header: Header;
  readonly holders: readonly Holder[];
  readonly waiters: readonly Waiter[];
  readonly mode: string;
}
interface Member {
  readonly id: string;
  readonly peer_address: string;
  readonly client_address: string;
  readonly learner: boolean;
}
interface StatusAnswer {
  readonly header: Header;
  readonly node_id: string;
  readonly leader_id: string;
  readonly term: string;
  readonly commit_index: string;
  readonly applied_index: string;
  readonly members: readonly Member[];
}
interface WatchEvent {
  readonly header: Header;
  readonly type: string;
  readonly lock: string;
  readonly session_id: string;
  readonly fencing_token: string;
  readonly index: string;
}

/** What a failed call told the client: status, details and the dlm trailers. */
interface Failure {
  readonly code: number;
  readonly details: string;
  readonly errorCode: string | undefined;
  readonly leaderHint: string | undefined;
  readonly retryAfterMs: string | undefined;
}

let cluster: ProcessCluster;

beforeAll(async () => {
  cluster = await ProcessCluster.create(3, {
    lock: { waitersPerLockMax: WAITERS_PER_LOCK_MAX },
    runtime: { clientCallsInFlightMax: CALLS_IN_FLIGHT_MAX, backpressureRetryAfterMs: 250 },
  });
  cluster.startAll();
  await cluster.waitForLeader(15_000);
  await roles();
});

afterAll(async () => {
  await cluster?.stopAll();
  cluster?.remove();
});

/**
 * Sessions a test closes when it ends however it ends, which ends their waiting
 * Acquires: a failed test must not leave calls in flight that fail the next ones.
 */
const sessionsToClose: string[] = [];

afterEach(async () => {
  const sessions = sessionsToClose.splice(0);
  const running = cluster.nodes.find((node) => cluster.isRunning(node.id));
  if (running === undefined) return;
  for (const session_id of sessions) {
    // Already closed (sessionNotFound) when the test went through: nothing to do.
    await rpc(running.id, 'CloseSession', { session_id, request_id: newRequestId() }).catch(
      () => {},
    );
  }
});

/**
 * One call to one node, within `deadlineMs` in all. An UNAVAILABLE that did not come
 * from dlm (no `dlm-error-code`: the channel failed fast while connecting, which grpc-js
 * does despite waitForReady) is retried with the same request, which request ids make
 * safe; every answer of the server itself, errors included, is returned as is.
 */
async function rpc<T>(
  id: string,
  method: string,
  request: object,
  deadlineMs = 10_000,
  service = 'Lock',
): Promise<T> {
  const giveUpAtMs = Date.now() + deadlineMs;
  for (;;) {
    try {
      const leftMs = Math.max(giveUpAtMs - Date.now(), 1);
      return (await cluster.call(id, method, request, leftMs, service)) as unknown as T;
    } catch (error) {
      const { code, metadata } = error as ServiceError;
      const fromDlm = (metadata?.get('dlm-error-code').length ?? 0) > 0;
      if (code !== status.UNAVAILABLE || fromDlm || Date.now() >= giveUpAtMs) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

async function failure(call: Promise<unknown>): Promise<Failure> {
  const outcome = await call.then(
    (answer) => ({ ok: true as const, answer }),
    (error: ServiceError) => ({ ok: false as const, error }),
  );
  if (outcome.ok) throw new Error(`expected an error, got ${JSON.stringify(outcome.answer)}`);
  const { error } = outcome;
  const trailer = (key: string): string | undefined => {
    const value = error.metadata?.get(key)[0];
    return value === undefined ? undefined : String(value);
  };
  return {
    code: error.code,
    details: error.details,
    errorCode: trailer('dlm-error-code'),
    retryAfterMs: trailer('dlm-retry-after-ms'),
    leaderHint: trailer('dlm-leader-hint'),
  };
}

async function eventually(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error; // A node still starting, say: try again until the deadline.
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting until ${what}; last error: ${String(lastError)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The leader and its two followers, once every running node agrees on the leader. */
async function roles(): Promise<{ leader: string; followers: [string, string] }> {
  for (const { id } of cluster.nodes) {
    if (!cluster.isRunning(id)) {
      const log = readFileSync(cluster.logPath(id), 'utf8').slice(-2_000);
      throw new Error(`${id} is not running; the end of its log:\n${log}`);
    }
  }
  // Asked again each round: leadership can still move after waitForLeader on a loaded
  // machine, and waiting for every node to follow a deposed leader never ends.
  let leader = await cluster.waitForLeader(15_000);
  await eventually(async () => {
    const views = await Promise.all(
      cluster.nodes.map((node) => rpc<StatusAnswer>(node.id, 'Status', {}, 2_000, 'Cluster')),
    );
    leader = views[0]?.leader_id ?? '';
    return leader !== '' && views.every((view) => view.leader_id === leader);
  }, 'every node follows one leader');
  const [a, b] = cluster.nodes.map((node) => node.id).filter((id) => id !== leader);
  if (a === undefined || b === undefined) throw new Error('expected two followers');
  return { leader, followers: [a, b] };
}

async function openSession(via: string, ttlMs = TTL_MS): Promise<string> {
  const opened = await rpc<{ session_id: string }>(via, 'OpenSession', {
    ttl_ms: ttlMs,
    client_name: 'api-test',
    request_id: newRequestId(),
  });
  return opened.session_id;
}

function acquire(
  via: string,
  lock: string,
  session: string,
  extra: object = {},
  deadlineMs = 10_000,
): Promise<AcquireAnswer> {
  return rpc<AcquireAnswer>(
    via,
    'Acquire',
    {
      lock,
      session_id: session,
      mode: 'EXCLUSIVE',
      wait_ms: '0',
      request_id: newRequestId(),
      owner: `owner-of-${session}`,
      ...extra,
    },
    deadlineMs,
  );
}

function release(via: string, lock: string, session: string, token: string) {
  return rpc<{ header: Header; released: boolean }>(via, 'Release', {
    lock,
    session_id: session,
    fencing_token: token,
    request_id: newRequestId(),
  });
}

function describeLock(via: string, lock: string, stale = false): Promise<DescribeAnswer> {
  return rpc<DescribeAnswer>(via, 'Describe', { lock, stale });
}

const sessionsOf = (list: readonly { session_id: string }[]): string[] =>
  list.map((each) => each.session_id);

describe('Lock service', () => {
  it('OpenSession, KeepAlive and CloseSession through a follower; a retried OpenSession returns the first session', async () => {
    const { leader, followers } = await roles();
    const [follower] = followers;
    const request = { ttl_ms: TTL_MS, client_name: 'retry', request_id: newRequestId() };
    const opened = await rpc<{ header: Header; session_id: string; ttl_ms: string }>(
      follower,
      'OpenSession',
      request,
    );
    expect(opened.ttl_ms).toBe(TTL_MS);
    expect(opened.header).toMatchObject({ node_id: follower, leader_id: leader });
    // The session id is the index of its log entry.
    expect(opened.header.index).toBe(opened.session_id);
    expect(Number(opened.header.term)).toBeGreaterThan(0);

    // The same request_id, on another node: the first outcome, not a second session.
    const retried = await rpc<{ session_id: string }>(leader, 'OpenSession', request);
    expect(retried.session_id).toBe(opened.session_id);
    const other = await rpc<{ session_id: string }>(follower, 'OpenSession', {
      ...request,
      request_id: newRequestId(),
    });
    expect(other.session_id).not.toBe(opened.session_id);

    const kept = await rpc<{ header: Header; ttl_ms: string }>(follower, 'KeepAlive', {
      session_id: opened.session_id,
    });
    expect(kept.ttl_ms).toBe(TTL_MS);
    expect(kept.header.node_id).toBe(follower);
    expect(Number(kept.header.index)).toBeGreaterThan(Number(opened.session_id));

    // Closing a session releases what it holds.
    const held = await acquire(follower, 'session/held', opened.session_id);
    expect(held.acquired).toBe(true);
    const closed = await rpc<{ header: Header }>(follower, 'CloseSession', {
      session_id: opened.session_id,
      request_id: newRequestId(),
    });
    expect(closed.header.node_id).toBe(follower);
    expect(Number(closed.header.index)).toBeGreaterThan(Number(held.fencing_token));
    expect((await describeLock(follower, 'session/held')).holders).toEqual([]);
    const gone = await failure(rpc(follower, 'KeepAlive', { session_id: opened.session_id }));
    expect(gone).toMatchObject({ code: status.NOT_FOUND, errorCode: 'sessionNotFound' });
  });

  it('Acquire grants with a fencing token; a try-lock on a held lock answers acquired = false; shared grants coexist', async () => {
    const { leader, followers } = await roles();
    const [follower, other] = followers;
    const a = await openSession(follower);
    const b = await openSession(other);
    const granted = await acquire(follower, 'acquire/1', a);
    expect(granted.acquired).toBe(true);
    expect(granted.header.node_id).toBe(follower);
    // The token is the index of the entry that made the grant.
    expect(granted.fencing_token).toBe(granted.header.index);
    expect(granted.holders).toEqual([
      {
        session_id: a,
        owner: `owner-of-${a}`,
        fencing_token: granted.fencing_token,
        acquired_index: granted.fencing_token,
        // Set by Describe and ListLocks only.
        held_ms: '0',
        // A lock's grant: no permits (a semaphore's), no value (an election's).
        permits: '0',
        value: '',
      },
    ]);
    // Acquiring again returns the grant the session already has.
    const again = await acquire(leader, 'acquire/1', a);
    expect(again).toMatchObject({ acquired: true, fencing_token: granted.fencing_token });

    const refused = await acquire(other, 'acquire/1', b);
    expect(refused.acquired).toBe(false);
    expect(refused.fencing_token).toBe('0');
    expect(refused.holders).toEqual(granted.holders);

    const first = await acquire(follower, 'shared/1', a, { mode: 'SHARED' });
    const second = await acquire(other, 'shared/1', b, { mode: 'SHARED' });
    expect(first.acquired).toBe(true);
    expect(second.acquired).toBe(true);
    expect(Number(second.fencing_token)).toBeGreaterThan(Number(first.fencing_token));
    expect(sessionsOf(second.holders)).toEqual([a, b]);
    const c = await openSession(leader);
    const exclusive = await acquire(leader, 'shared/1', c);
    expect(exclusive.acquired).toBe(false);
    expect(sessionsOf(exclusive.holders)).toEqual([a, b]);
    const described = await describeLock(other, 'shared/1');
    expect(described.mode).toBe('SHARED');
    expect(sessionsOf(described.holders)).toEqual([a, b]);
  });

  it('a blocking Acquire is granted on Release with a higher token; a wait that runs out answers acquired = false', async () => {
    const { leader, followers } = await roles();
    const [follower, other] = followers;
    const a = await openSession(leader);
    const b = await openSession(follower);
    const first = await acquire(leader, 'block/1', a);
    expect(first.acquired).toBe(true);
    const waiting = acquire(follower, 'block/1', b, { wait_ms: '30000' }, 30_000);
    waiting.catch(() => {}); // Awaited below; this only keeps a failed test's rejection handled.
    await eventually(
      async () => (await describeLock(other, 'block/1')).waiters.length === 1,
      'the waiter is queued',
    );
    const queued = await describeLock(other, 'block/1');
    expect(queued.waiters[0]).toMatchObject({
      session_id: b,
      owner: `owner-of-${b}`,
      mode: 'EXCLUSIVE',
    });
    const released = await release(other, 'block/1', a, first.fencing_token);
    expect(released.released).toBe(true);
    const granted = await waiting;
    expect(granted.acquired).toBe(true);
    expect(Number(granted.fencing_token)).toBeGreaterThan(Number(first.fencing_token));
    // The grant was made by the Release entry; it answers the earlier Acquire entry.
    expect(granted.fencing_token).toBe(released.header.index);
    expect(sessionsOf(granted.holders)).toEqual([b]);
    expect(granted.holders[0]?.acquired_index).toBe(queued.waiters[0]?.enqueued_index);
    expect(Number(granted.holders[0]?.acquired_index)).toBeLessThan(Number(granted.fencing_token));

    // Now b holds it: a's wait of 500 ms runs out, an answer rather than an error.
    const startedMs = Date.now();
    const timedOut = await acquire(other, 'block/1', a, { wait_ms: '500' });
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(400);
    expect(timedOut.acquired).toBe(false);
    expect(timedOut.fencing_token).toBe('0');
    expect(sessionsOf(timedOut.holders)).toEqual([b]);
    await eventually(
      async () => (await describeLock(leader, 'block/1')).waiters.length === 0,
      'the expired wait leaves the queue',
    );
  });

  it('Release frees the lock, and ValidateFence tells a live token from an old one', async () => {
    const { followers } = await roles();
    const [follower, other] = followers;
    const a = await openSession(follower);
    const first = await acquire(follower, 'fence/1', a);
    const valid = await rpc<{ header: Header; valid: boolean; current_token: string }>(
      other,
      'ValidateFence',
      { lock: 'fence/1', fencing_token: first.fencing_token },
    );
    expect(valid).toMatchObject({ valid: true, current_token: first.fencing_token });
    expect(valid.header.node_id).toBe(other);

    const released = await release(follower, 'fence/1', a, first.fencing_token);
    expect(released.released).toBe(true);
    const second = await acquire(follower, 'fence/1', a);
    expect(Number(second.fencing_token)).toBeGreaterThan(Number(first.fencing_token));
    const old = await rpc<{ valid: boolean; current_token: string }>(other, 'ValidateFence', {
      lock: 'fence/1',
      fencing_token: first.fencing_token,
    });
    expect(old).toMatchObject({ valid: false, current_token: second.fencing_token });
    await release(other, 'fence/1', a, second.fencing_token);
    const free = await rpc<{ valid: boolean; current_token: string }>(follower, 'ValidateFence', {
      lock: 'fence/1',
      fencing_token: second.fencing_token,
    });
    expect(free).toMatchObject({ valid: false, current_token: '0' });
    expect(await describeLock(other, 'fence/1')).toMatchObject({ holders: [], waiters: [] });
  });

  it('Describe right after a grant shows the holder on every node, followers included (linearizable reads)', async () => {
    for (const { id: via } of cluster.nodes) {
      const session = await openSession(via);
      const name = `linear/${via}`;
      const granted = await acquire(via, name, session);
      expect(granted.acquired).toBe(true);
      // At once, with no waiting, from every node: two of them did not take the write.
      const reads = await Promise.all(cluster.nodes.map((node) => describeLock(node.id, name)));
      for (const [position, read] of reads.entries()) {
        const at = cluster.nodes[position]?.id;
        expect(read.header.node_id, `${name} read at ${at}`).toBe(at);
        expect(Number(read.header.index)).toBeGreaterThanOrEqual(Number(granted.fencing_token));
        expect(withoutHeld(read.holders), `${name} read at ${at}`).toEqual(
          withoutHeld(granted.holders),
        );
        expect(read.mode).toBe('EXCLUSIVE');
      }
    }
  });

  it('Watch streams the grant, release and expire events of its prefix only, until cancelled', async () => {
    const { leader, followers } = await roles();
    const [watched] = followers;
    const stream = cluster.stream(watched, 'Watch', { prefix: 'watched/' });
    await stream.ready;
    const a = await openSession(leader);
    const first = await acquire(leader, 'watched/1', a);
    const outside = await acquire(leader, 'unwatched/1', a);
    const sibling = await acquire(leader, 'watchedX', a);
    expect([outside.acquired, sibling.acquired]).toEqual([true, true]);
    const released = await release(leader, 'watched/1', a, first.fencing_token);
    // A session with the shortest lease, never kept alive: its grant expires.
    const short = await openSession(leader, '1000');
    const doomed = await acquire(leader, 'watched/2', short);
    await eventually(() => stream.messages.length >= 4, 'four watch events arrived');
    // Anything else would have come before the expiry, which is applied last.
    const events = stream.messages as unknown as WatchEvent[];
    expect(
      events.map(({ type, lock, session_id, fencing_token, index }) => ({
        type,
        lock,
        session_id,
        fencing_token,
        index,
      })),
    ).toEqual([
      {
        type: 'GRANT',
        lock: 'watched/1',
        session_id: a,
        fencing_token: first.fencing_token,
        index: first.fencing_token,
      },
      {
        type: 'RELEASE',
        lock: 'watched/1',
        session_id: a,
        fencing_token: first.fencing_token,
        index: released.header.index,
      },
      {
        type: 'GRANT',
        lock: 'watched/2',
        session_id: short,
        fencing_token: doomed.fencing_token,
        index: doomed.fencing_token,
      },
      {
        type: 'EXPIRE',
        lock: 'watched/2',
        session_id: short,
        fencing_token: doomed.fencing_token,
        index: events[3]?.index,
      },
    ]);
    expect(Number(events[3]?.index)).toBeGreaterThan(Number(doomed.fencing_token));
    for (const event of events) expect(event.header.node_id).toBe(watched);
    stream.cancel();
    expect((await stream.ended).code).toBe(status.CANCELLED);
  });
});

describe('errors a client can cause', () => {
  it('INVALID_ARGUMENT names the offending field', async () => {
    const { leader, followers } = await roles();
    const [follower] = followers;
    const session = await openSession(leader);
    const cases: [string, string, object, string][] = [
      [
        'Lock',
        'Acquire',
        { lock: '', session_id: session, request_id: newRequestId() },
        'AcquireRequest.lock: must not be empty',
      ],
      [
        'Lock',
        'Acquire',
        { lock: 'x'.repeat(257), session_id: session, request_id: newRequestId() },
        'AcquireRequest.lock: is 257 bytes',
      ],
      [
        'Lock',
        'Acquire',
        { lock: 'bad/mode', session_id: session, mode: 7, request_id: newRequestId() },
        'AcquireRequest.mode: unknown value 7',
      ],
      [
        'Lock',
        'Acquire',
        { lock: 'bad/request-id', session_id: session, request_id: '0' },
        'AcquireRequest.request_id',
      ],
      [
        'Lock',
        'Acquire',
        { lock: 'bad/wait', session_id: session, request_id: newRequestId(), wait_ms: '3600001' },
        'AcquireRequest.wait_ms: must be within',
      ],
      [
        'Lock',
        'OpenSession',
        { ttl_ms: '50', request_id: newRequestId() },
        'OpenSessionRequest.ttl_ms: must be within [1000, 300000], got 50',
      ],
      [
        'Lock',
        'Release',
        { lock: 'x', session_id: '0', fencing_token: '1', request_id: newRequestId() },
        'ReleaseRequest.session_id: must not be 0',
      ],
      [
        'Lock',
        'ValidateFence',
        { lock: 'x', fencing_token: '0' },
        'ValidateFenceRequest.fencing_token: must not be 0',
      ],
      ['Lock', 'Describe', { lock: '' }, 'DescribeRequest.lock: must not be empty'],
      [
        'Cluster',
        'AddMember',
        { node_id: 'bad id!', peer_address: '127.0.0.1:1', client_address: '127.0.0.1:2' },
        'AddMemberRequest.node_id: must match',
      ],
    ];
    for (const via of [leader, follower]) {
      for (const [service, method, request, message] of cases) {
        const error = await failure(rpc(via, method, request, 10_000, service));
        const what = `${method} ${JSON.stringify(request).slice(0, 80)} at ${via}`;
        expect(error.code, what).toBe(status.INVALID_ARGUMENT);
        expect(error.details, what).toContain(message);
        expect(error.errorCode, what).toBe('invalidArgument');
      }
    }
    // Nothing of it was applied: the locks named are free.
    expect((await describeLock(leader, 'bad/mode')).holders).toEqual([]);
    expect((await describeLock(leader, 'bad/request-id')).holders).toEqual([]);

    // A Watch with a prefix past what any lock name can be ends with the same error.
    const ceiling = LOCK_LIMIT_CEILINGS.lockNameBytesMax;
    const watch = cluster.stream(follower, 'Watch', { prefix: 'p'.repeat(ceiling + 1) });
    const ended = await watch.ended;
    expect(ended.code).toBe(status.INVALID_ARGUMENT);
    expect(ended.details).toContain(`WatchRequest.prefix: is ${ceiling + 1} bytes`);
    expect(ended.metadata.get('dlm-error-code')).toEqual(['invalidArgument']);
  });

  it('NOT_FOUND (sessionNotFound) for an unknown session, on every Lock write', async () => {
    const { followers } = await roles();
    const [follower] = followers;
    const unknown = '999999';
    const calls: [string, object][] = [
      ['KeepAlive', { session_id: unknown }],
      ['CloseSession', { session_id: unknown, request_id: newRequestId() }],
      [
        'Acquire',
        { lock: 'nf/1', session_id: unknown, request_id: newRequestId(), mode: 'EXCLUSIVE' },
      ],
      [
        'Release',
        { lock: 'nf/1', session_id: unknown, fencing_token: '5', request_id: newRequestId() },
      ],
    ];
    for (const [method, request] of calls) {
      const error = await failure(rpc(follower, method, request));
      expect(error, method).toMatchObject({
        code: status.NOT_FOUND,
        errorCode: 'sessionNotFound',
      });
    }
  });

  it('FAILED_PRECONDITION for a Release by a non-holder (notHolder) and with a stale token (staleToken)', async () => {
    const { leader, followers } = await roles();
    const [follower] = followers;
    const a = await openSession(leader);
    const b = await openSession(leader);
    const first = await acquire(leader, 'precondition/1', a);
    await release(leader, 'precondition/1', a, first.fencing_token);
    const second = await acquire(leader, 'precondition/1', a);

    const notHolder = await failure(
      rpc(follower, 'Release', {
        lock: 'precondition/1',
        session_id: b,
        fencing_token: second.fencing_token,
        request_id: newRequestId(),
      }),
    );
    expect(notHolder).toMatchObject({
      code: status.FAILED_PRECONDITION,
      errorCode: 'notHolder',
    });
    const stale = await failure(
      rpc(follower, 'Release', {
        lock: 'precondition/1',
        session_id: a,
        fencing_token: first.fencing_token,
        request_id: newRequestId(),
      }),
    );
    expect(stale).toMatchObject({ code: status.FAILED_PRECONDITION, errorCode: 'staleToken' });
    // Neither refusal touched the grant.
    const fence = await rpc<{ valid: boolean }>(follower, 'ValidateFence', {
      lock: 'precondition/1',
      fencing_token: second.fencing_token,
    });
    expect(fence.valid).toBe(true);
  });

  it(`RESOURCE_EXHAUSTED (limitReached) past ${WAITERS_PER_LOCK_MAX} waiters on one lock; a session closed while waiting gets NOT_FOUND`, async () => {
    const { leader, followers } = await roles();
    const [follower, other] = followers;
    const [a, b, c, d] = await Promise.all([1, 2, 3, 4].map(() => openSession(leader)));
    if (a === undefined || b === undefined || c === undefined || d === undefined) {
      throw new Error('expected four sessions');
    }
    sessionsToClose.push(b, c, d);
    const held = await acquire(leader, 'limit/1', a);
    const waitB = acquire(follower, 'limit/1', b, { wait_ms: '30000' }, 30_000);
    waitB.catch(() => {}); // Awaited below; this only keeps a failed test's rejection handled.
    await eventually(
      async () => (await describeLock(leader, 'limit/1')).waiters.length === 1,
      'b waits',
    );
    const waitC = acquire(other, 'limit/1', c, { wait_ms: '30000' }, 30_000);
    const outcomeC = waitC.then(
      () => null,
      (error: ServiceError) => error,
    );
    await eventually(
      async () => (await describeLock(leader, 'limit/1')).waiters.length === 2,
      'c waits',
    );
    const refused = await failure(acquire(follower, 'limit/1', d, { wait_ms: '30000' }));
    expect(refused).toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      errorCode: 'limitReached',
      retryAfterMs: undefined,
    });
    expect(refused.details).toContain('waitersPerLockMax');
    // A try-lock does not queue, so it is not refused: it answers as usual.
    expect((await acquire(follower, 'limit/1', d)).acquired).toBe(false);
    expect(sessionsOf((await describeLock(follower, 'limit/1')).waiters)).toEqual([b, c]);

    await release(leader, 'limit/1', a, held.fencing_token);
    expect(await waitB).toMatchObject({ acquired: true });
    await rpc(leader, 'CloseSession', { session_id: c, request_id: newRequestId() });
    const ended = await outcomeC;
    expect(ended?.code).toBe(status.NOT_FOUND);
    expect(ended?.metadata.get('dlm-error-code')).toEqual(['sessionNotFound']);
    expect(await describeLock(follower, 'limit/1')).toMatchObject({ waiters: [] });
  });

  it(`RESOURCE_EXHAUSTED at once when ${CALLS_IN_FLIGHT_MAX} client calls are in flight on a node; it reopens once they end`, async () => {
    const { leader, followers } = await roles();
    // The node the Watch tests streamed from: a cancelled or refused stream must have
    // given its slot back, or one of the Acquires below would be refused.
    const busy = followers[0];
    const holder = await openSession(leader);
    const waiter = await openSession(leader);
    sessionsToClose.push(waiter);
    const names = Array.from({ length: CALLS_IN_FLIGHT_MAX }, (_, i) => `gate/${i}`);
    const grants = [];
    for (const name of names) grants.push(await acquire(leader, name, holder));
    const waits = names.map((name) =>
      acquire(busy, name, waiter, { wait_ms: '60000' }, 30_000).catch(
        (error: ServiceError) => error,
      ),
    );
    await eventually(async () => {
      const described = await Promise.all(names.map((name) => describeLock(leader, name)));
      return described.every((each) => each.waiters.length === 1);
    }, `${CALLS_IN_FLIGHT_MAX} Acquires wait at ${busy}`);

    const refused = await failure(rpc(busy, 'KeepAlive', { session_id: holder }));
    expect(refused).toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      errorCode: 'RESOURCE_EXHAUSTED',
      retryAfterMs: '250',
    });
    expect(refused.details).toContain(`${CALLS_IN_FLIGHT_MAX} client calls are already in flight`);
    // The bound is per node: the others still serve.
    const kept = await rpc<{ ttl_ms: string }>(leader, 'KeepAlive', { session_id: holder });
    expect(kept.ttl_ms).toBe(TTL_MS);

    for (const [i, name] of names.entries()) {
      await release(leader, name, holder, grants[i]?.fencing_token ?? '');
    }
    const answers = await Promise.all(waits);
    expect(answers.map((answer) => 'acquired' in answer && answer.acquired)).toEqual(
      names.map(() => true),
    );
    const reopened = await rpc<{ ttl_ms: string }>(busy, 'KeepAlive', { session_id: holder });
    expect(reopened.ttl_ms).toBe(TTL_MS);
  });

  it('DEADLINE_EXCEEDED for a blocking Acquire whose call deadline passes, and its waiter is withdrawn', async () => {
    const { leader, followers } = await roles();
    const [follower] = followers;
    const a = await openSession(leader);
    // A long lease: only the withdrawal, not an expiry, can remove the waiter in time.
    const b = await openSession(follower, '120000');
    const held = await acquire(leader, 'deadline/1', a);
    const abandoned = failure(acquire(follower, 'deadline/1', b, { wait_ms: '600000' }, 1_500));
    await eventually(
      async () => sessionsOf((await describeLock(leader, 'deadline/1')).waiters).includes(b),
      'the waiter is queued',
    );
    const error = await abandoned;
    expect(error.code).toBe(status.DEADLINE_EXCEEDED);
    await eventually(
      async () => (await describeLock(leader, 'deadline/1')).waiters.length === 0,
      'the waiter is withdrawn',
      10_000,
    );
    expect(sessionsOf((await describeLock(follower, 'deadline/1')).holders)).toEqual([a]);
    // Once free, the lock goes to nobody: the withdrawn waiter is really gone.
    await release(leader, 'deadline/1', a, held.fencing_token);
    expect(await describeLock(follower, 'deadline/1')).toMatchObject({
      holders: [],
      waiters: [],
    });
  });
});

describe('Cluster service', () => {
  it('Status answers on every node with the same leader and 3 voters with their addresses; Health says SERVING', async () => {
    const { leader } = await roles();
    const expected = cluster.nodes
      .map((node) => ({
        id: node.id,
        peer_address: node.peerAddress,
        client_address: node.clientAddress,
        learner: false,
      }))
      .sort((x, y) => x.id.localeCompare(y.id));
    for (const { id } of cluster.nodes) {
      const answer = await rpc<StatusAnswer>(id, 'Status', {}, 5_000, 'Cluster');
      expect(answer.node_id).toBe(id);
      expect(answer.leader_id).toBe(leader);
      expect(answer.header).toMatchObject({ node_id: id, leader_id: leader });
      expect(Number(answer.term)).toBeGreaterThan(0);
      expect(Number(answer.applied_index)).toBeGreaterThan(0);
      expect(Number(answer.applied_index)).toBeLessThanOrEqual(Number(answer.commit_index));
      expect([...answer.members].sort((x, y) => x.id.localeCompare(y.id))).toEqual(expected);
      await eventually(
        async () =>
          (await rpc<{ status: string }>(id, 'Check', { service: '' }, 5_000, 'Health')).status ===
          'SERVING',
        `${id} is SERVING`,
      );
    }
  });

  it('AddMember and RemoveMember refusals: UNAVAILABLE with the leader hint on a follower, FAILED_PRECONDITION on the leader', async () => {
    const { leader, followers } = await roles();
    const [follower] = followers;
    const stranger = {
      node_id: 'n9',
      peer_address: '127.0.0.1:1',
      client_address: '127.0.0.1:2',
    };
    for (const [method, request] of [
      ['AddMember', stranger],
      ['RemoveMember', { node_id: 'n9' }],
      ['TransferLeadership', { target_node_id: leader }],
    ] as const) {
      const redirected = await failure(rpc(follower, method, request, 10_000, 'Cluster'));
      expect(redirected, `${method} at ${follower}`).toMatchObject({
        code: status.UNAVAILABLE,
        errorCode: 'UNAVAILABLE',
        leaderHint: leader,
      });
    }
    const notAMember = await failure(
      rpc(leader, 'RemoveMember', { node_id: 'n9' }, 10_000, 'Cluster'),
    );
    expect(notAMember).toMatchObject({
      code: status.FAILED_PRECONDITION,
      errorCode: 'FAILED_PRECONDITION',
    });
    expect(notAMember.details).toContain('n9 is not a member');
    // Adding a voter again at its own address is idempotent (a retried call succeeds);
    // at another address it is refused.
    const member = cluster.nodes.find((node) => node.id === follower);
    const again = await rpc<StatusAnswer>(
      leader,
      'AddMember',
      {
        node_id: follower,
        peer_address: member?.peerAddress,
        client_address: member?.clientAddress,
      },
      10_000,
      'Cluster',
    );
    expect(again.members.map((each) => each.id).sort()).toEqual(
      cluster.nodes.map((node) => node.id).sort(),
    );
    const moved = await failure(
      rpc(
        leader,
        'AddMember',
        { node_id: follower, peer_address: '127.0.0.1:1', client_address: member?.clientAddress },
        10_000,
        'Cluster',
      ),
    );
    expect(moved).toMatchObject({
      code: status.FAILED_PRECONDITION,
      errorCode: 'FAILED_PRECONDITION',
    });
    expect(moved.details).toContain('already a voter');
    // Nothing changed: still the same 3 voters, no learner.
    const view = await rpc<StatusAnswer>(leader, 'Status', {}, 5_000, 'Cluster');
    expect(view.members.map((member) => `${member.id}:${member.learner}`).sort()).toEqual(
      cluster.nodes.map((node) => `${node.id}:false`).sort(),
    );
  });

  it('TransferLeadership hands leadership to the named follower, and every Status shows it', async () => {
    const { leader, followers } = await roles();
    const target = followers[1];
    const answer = await rpc<{ header: Header; leader_id: string }>(
      leader,
      'TransferLeadership',
      { target_node_id: target },
      15_000,
      'Cluster',
    );
    expect(answer.leader_id).toBe(target);
    expect(answer.header.node_id).toBe(leader);
    await eventually(async () => {
      const views = await Promise.all(
        cluster.nodes.map((node) => rpc<StatusAnswer>(node.id, 'Status', {}, 2_000, 'Cluster')),
      );
      return views.every((view) => view.leader_id === target);
    }, `every node follows ${target}`);
    // The new leader serves writes, and the old one forwards them.
    const session = await openSession(leader);
    const granted = await acquire(leader, 'after-transfer/1', session);
    expect(granted).toMatchObject({ acquired: true });
    expect(granted.header.leader_id).toBe(target);
  });
});

describe('without a leader', () => {
  it('the survivor of 3 answers writes and linearizable reads UNAVAILABLE, Status with an empty leader_id, stale reads from its state', async () => {
    const { leader, followers } = await roles();
    const [survivor, victim] = followers;
    const session = await openSession(survivor);
    const granted = await acquire(survivor, 'last/1', session);
    expect(granted.acquired).toBe(true);
    // The survivor has applied the grant once a linearizable read there shows it.
    expect(withoutHeld((await describeLock(survivor, 'last/1')).holders)).toEqual(
      withoutHeld(granted.holders),
    );
    await cluster.kill(leader);
    await cluster.kill(victim);
    await eventually(
      async () =>
        (await rpc<StatusAnswer>(survivor, 'Status', {}, 2_000, 'Cluster')).leader_id === '',
      `${survivor} knows no leader`,
    );
    const view = await rpc<StatusAnswer>(survivor, 'Status', {}, 5_000, 'Cluster');
    expect(view).toMatchObject({ node_id: survivor, leader_id: '' });
    expect(view.header.leader_id).toBe('');
    expect(view.members).toHaveLength(3);

    const writes: [string, object][] = [
      ['OpenSession', { ttl_ms: TTL_MS, request_id: newRequestId() }],
      ['KeepAlive', { session_id: session }],
      [
        'Acquire',
        { lock: 'last/2', session_id: session, mode: 'EXCLUSIVE', request_id: newRequestId() },
      ],
      [
        'Release',
        {
          lock: 'last/1',
          session_id: session,
          fencing_token: granted.fencing_token,
          request_id: newRequestId(),
        },
      ],
      ['CloseSession', { session_id: session, request_id: newRequestId() }],
      ['Describe', { lock: 'last/1' }],
      ['ValidateFence', { lock: 'last/1', fencing_token: granted.fencing_token }],
    ];
    for (const [method, request] of writes) {
      const error = await failure(rpc(survivor, method, request, 10_000));
      expect(error, method).toMatchObject({ code: status.UNAVAILABLE, errorCode: 'UNAVAILABLE' });
      // No leader known, so no hint to give.
      expect(error.leaderHint, method).toBeUndefined();
    }
    const stale = await describeLock(survivor, 'last/1', true);
    expect(withoutHeld(stale.holders)).toEqual(withoutHeld(granted.holders));
    expect(stale.header).toMatchObject({ node_id: survivor, leader_id: '' });
  });
});

/** Holders as a grant made them: Describe adds held_ms, which Acquire leaves 0. */
function withoutHeld(holders: readonly Holder[]): Omit<Holder, 'held_ms'>[] {
  return holders.map(({ held_ms: _, ...rest }) => rest);
}
