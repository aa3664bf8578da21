import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiNode } from '../../src/api/context.ts';
import { type ApiErrorCode, GRPC_STATUS_BY_CODE } from '../../src/api/errors.ts';
import { LockStateMachine } from '../../src/lock/index.ts';
import { DlmError } from '../../src/node/errors.ts';
import type { NodeStatus } from '../../src/node/node.ts';
import { nodeId } from '../../src/util/ids.ts';
import {
  ApiCluster,
  type LogEntry,
  type NodeEndpoints,
  rpcError,
  serve,
  sleep,
  TRANSPORTS,
  type Transport,
} from './harness.ts';

/**
 * Each row of the error table (DESIGN §6), reached through a real gRPC client: the
 * state machine's refusals against a live cluster, the runtime's errors against a
 * cluster node where they occur naturally, and against a stand-in node where they
 * cannot be caused on demand. Every case runs twice: as unary calls, and as calls on a
 * Lock.Session stream, which must tell the caller exactly the same.
 */
describe('the error table', () => {
  it('maps every code as DESIGN §6 says', () => {
    const expected: Record<ApiErrorCode, status> = {
      invalidArgument: status.INVALID_ARGUMENT,
      sessionNotFound: status.NOT_FOUND,
      notHolder: status.FAILED_PRECONDITION,
      staleToken: status.FAILED_PRECONDITION,
      limitReached: status.RESOURCE_EXHAUSTED,
      modeMismatch: status.FAILED_PRECONDITION,
      grantEnded: status.FAILED_PRECONDITION,
      alreadyWaiting: status.FAILED_PRECONDITION,
      alreadyHolding: status.FAILED_PRECONDITION,
      deadlock: status.ABORTED,
      kindMismatch: status.FAILED_PRECONDITION,
      notSessionOwner: status.PERMISSION_DENIED,
      unauthenticated: status.UNAUTHENTICATED,
      permissionDenied: status.PERMISSION_DENIED,
      UNAVAILABLE: status.UNAVAILABLE,
      RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
      DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
      FAILED_PRECONDITION: status.FAILED_PRECONDITION,
      ABORTED: status.ABORTED,
      INTERNAL: status.INTERNAL,
    };
    expect(GRPC_STATUS_BY_CODE).toEqual(expected);
  });
});

describe.each(TRANSPORTS)('errors from a live cluster (%s)', (transport: Transport) => {
  let cluster: ApiCluster;
  beforeAll(async () => {
    cluster = await ApiCluster.start();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  async function acquire(name: string, session: string, extra: object = {}) {
    const leader = await cluster.leaderId();
    return cluster.via(leader, transport).call('Acquire', {
      lock: name,
      session_id: session,
      request_id: cluster.requestId(),
      ...extra,
    });
  }

  it('INVALID_ARGUMENT names the field, before anything is proposed, for what no rules allow', async () => {
    const leader = await cluster.leaderId();
    const client = cluster.via(leader, transport);
    // A write first: once it applied, so has the leader's no-op, which could otherwise
    // apply during the checks below and look like a proposal they made.
    await cluster.openSession(leader);
    const appliedBefore = cluster.nodes.get(leader)?.status().appliedIndex;
    const cases: [string, object, string][] = [
      [
        'Acquire',
        { lock: '', session_id: '1', request_id: '1' },
        'AcquireRequest.lock: must not be empty',
      ],
      [
        'Acquire',
        { lock: 'x', session_id: '0', request_id: '1' },
        'AcquireRequest.session_id: must not be 0',
      ],
      [
        'Acquire',
        { lock: 'x', session_id: '1', request_id: '0' },
        'AcquireRequest.request_id: must not be empty',
      ],
      [
        'KeepAlive',
        { session_id: '18446744073709551615' },
        'KeepAliveRequest.session_id: 18446744073709551615 is above 2^53 - 1',
      ],
      [
        'Release',
        { lock: 'x', session_id: '1', fencing_token: '9007199254740992', request_id: '1' },
        'ReleaseRequest.fencing_token: 9007199254740992 is above',
      ],
      [
        'ValidateFence',
        { lock: 'x', fencing_token: '0' },
        'ValidateFenceRequest.fencing_token: must not be 0',
      ],
      ['Describe', { lock: '' }, 'DescribeRequest.lock: must not be empty'],
    ];
    for (const [method, request, message] of cases) {
      const error = await rpcError(client.call(method, request));
      expect(error.code, `${method} ${JSON.stringify(request)}`).toBe(status.INVALID_ARGUMENT);
      expect(error.details).toContain(message);
      expect(error.trailer('dlm-error-code')).toBe('invalidArgument');
    }
    expect(cluster.nodes.get(leader)?.status().appliedIndex).toBe(appliedBefore);
  });

  // The rules in force are checked when the entry applies, after the lookup of a retry's
  // first outcome (see validate.ts): such a refusal costs an entry, and names the field
  // of the request all the same.
  it('INVALID_ARGUMENT names the field and the limit for what the rules in force refuse', async () => {
    const leader = await cluster.leaderId();
    const client = cluster.at(leader).lock;
    const session = await cluster.openSession(leader);
    const cases: [string, object, string][] = [
      [
        'Acquire',
        { lock: 'x'.repeat(257), session_id: session, request_id: cluster.requestId() },
        'AcquireRequest.lock: is 257 bytes, the limit is 256 (lockNameBytesMax)',
      ],
      [
        'Acquire',
        { lock: 'x', session_id: session, request_id: cluster.requestId(), wait_ms: '3600001' },
        'AcquireRequest.wait_ms: must be within [0, 3600000] (waitMsMax), got 3600001',
      ],
      [
        'Acquire',
        {
          lock: 'x',
          session_id: session,
          request_id: cluster.requestId(),
          owner: 'o'.repeat(1025),
        },
        'AcquireRequest.owner: is 1025 bytes, the limit is 1024 (ownerBytesMax)',
      ],
      [
        'OpenSession',
        { ttl_ms: '50', request_id: cluster.requestId() },
        'OpenSessionRequest.ttl_ms: must be within [100, 300000], got 50',
      ],
    ];
    for (const [method, request, message] of cases) {
      const error = await rpcError(client.call(method, request));
      expect(error.code, `${method} ${JSON.stringify(request)}`).toBe(status.INVALID_ARGUMENT);
      expect(error.details).toBe(message);
      expect(error.trailer('dlm-error-code')).toBe('invalidArgument');
    }
  });

  it('INVALID_ARGUMENT for an unknown enum value and for bytes that do not decode', async () => {
    const leader = await cluster.leaderId();
    const client = cluster.via(leader, transport);
    // AcquireRequest{lock: "x", session_id: 1, mode: 7, request_id: 1}
    const mode7 = Buffer.from([0x0a, 0x01, 0x78, 0x10, 0x01, 0x18, 0x07, 0x28, 0x01]);
    const unknownMode = await rpcError(client.callBytes('Acquire', mode7));
    expect(unknownMode.code).toBe(status.INVALID_ARGUMENT);
    expect(unknownMode.details).toBe('AcquireRequest.mode: unknown value 7');
    // A length prefix that runs past the end of the message.
    const truncated = await rpcError(client.callBytes('Acquire', Buffer.from([0x0a, 0x7f, 0x61])));
    expect(truncated.code).toBe(status.INVALID_ARGUMENT);
    expect(truncated.details).toBe('AcquireRequest.lock: runs past the end of the message');
    // session_id sent as a string: protobufjs alone would read the length as the id.
    const wrongType = await rpcError(client.callBytes('Acquire', Buffer.from([0x12, 0x01, 0x31])));
    expect(wrongType.code).toBe(status.INVALID_ARGUMENT);
    expect(wrongType.details).toBe('AcquireRequest.session_id: has wire type 2, expected 0');
    const notUtf8 = await rpcError(client.callBytes('Acquire', Buffer.from([0x0a, 0x01, 0xff])));
    expect(notUtf8.details).toBe('AcquireRequest.lock: is not valid UTF-8');
  });

  it('NOT_FOUND for an unknown session', async () => {
    const leader = await cluster.leaderId();
    const error = await rpcError(
      cluster.via(leader, transport).call('KeepAlive', { session_id: '999999' }),
    );
    expect(error.code).toBe(status.NOT_FOUND);
    expect(error.trailer('dlm-error-code')).toBe('sessionNotFound');
    const acquireError = await rpcError(acquire('nf/1', '999999'));
    expect(acquireError.code).toBe(status.NOT_FOUND);
  });

  it('FAILED_PRECONDITION for a release by a non-holder', async () => {
    const leader = await cluster.leaderId();
    const session = await cluster.openSession(leader);
    const error = await rpcError(
      cluster.via(leader, transport).call('Release', {
        lock: 'fp/1',
        session_id: session,
        fencing_token: '1',
        request_id: cluster.requestId(),
      }),
    );
    expect(error.code).toBe(status.FAILED_PRECONDITION);
    expect(error.trailer('dlm-error-code')).toBe('notHolder');
  });

  it('FAILED_PRECONDITION kindMismatch for a name asked as another kind than it is (issue 17)', async () => {
    const leader = await cluster.leaderId();
    const [semaphore, other] = [
      await cluster.openSession(leader),
      await cluster.openSession(leader),
    ];
    // AcquirePermits is a unary RPC only; the Acquire that is refused goes by `transport`.
    const taken = await cluster.at(leader).lock.call('AcquirePermits', {
      name: 'kind/1',
      permits: '1',
      limit: '2',
      session_id: semaphore,
      request_id: cluster.requestId(),
    });
    expect(taken.acquired).toBe(true);
    const error = await rpcError(acquire('kind/1', other));
    expect(error.code).toBe(status.FAILED_PRECONDITION);
    expect(error.trailer('dlm-error-code')).toBe('kindMismatch');
    expect(error.details).toContain('semaphore');
  });

  it('RESOURCE_EXHAUSTED when a lock limit is reached (waiters per lock)', async () => {
    const leader = await cluster.leaderId();
    const sessions = await Promise.all([0, 1, 2, 3].map(() => cluster.openSession(leader)));
    const [holder, ...waiters] = sessions as [string, ...string[]];
    await acquire('limit/1', holder);
    const waits = waiters
      .slice(0, 2)
      .map((session) => acquire('limit/1', session, { wait_ms: '500' }));
    await sleep(100);
    const error = await rpcError(acquire('limit/1', waiters[2] ?? '', { wait_ms: '500' }));
    expect(error.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(error.trailer('dlm-error-code')).toBe('limitReached');
    // Every answer names the trace the node logged it under.
    expect(error.trailer('dlm-trace-id')).toMatch(/^[0-9a-f]{32}$/);
    // A limit of the config is not backpressure: no hint to retry soon.
    expect(error.trailer('dlm-retry-after-ms')).toBeUndefined();
    await Promise.all(waits);
  });

  it('RESOURCE_EXHAUSTED at once when the calls in flight reach their bound', async () => {
    const leader = await cluster.leaderId();
    const node = cluster.nodes.get(leader);
    if (node === undefined) throw new Error('no leader node');
    const narrow = await serve(node, cluster.logs, { clientCallsInFlightMax: 1 });
    try {
      const a = await cluster.openSession(leader);
      const b = await cluster.openSession(leader);
      await acquire('gate/1', a);
      const client = transport === 'unary' ? narrow.lock : narrow.session;
      const waiting = client.call('Acquire', {
        lock: 'gate/1',
        session_id: b,
        request_id: cluster.requestId(),
        wait_ms: '400',
      });
      await sleep(100);
      const error = await rpcError(client.call('KeepAlive', { session_id: a }));
      expect(error.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(error.trailer('dlm-error-code')).toBe('RESOURCE_EXHAUSTED');
      expect(error.trailer('dlm-retry-after-ms')).toBe('100');
      // Status reads local state only and is not bounded: the operator's view stays.
      expect((await narrow.cluster.call('Status', {})).node_id).toBe(leader);
      expect((await waiting).acquired).toBe(false);
      // The gate reopens once the waiting call has ended.
      expect((await client.call('KeepAlive', { session_id: a })).ttl_ms).toBe('10000');
    } finally {
      narrow.lock.close();
      narrow.session.close();
      await narrow.server.close(100);
    }
  });

  it('UNAVAILABLE with the leader hint in trailing metadata when the node is shutting down', async () => {
    const leader = await cluster.leaderId();
    const follower = await cluster.followerId();
    const node = cluster.nodes.get(follower);
    if (node === undefined) throw new Error('no follower node');
    await node.stop();
    const error = await rpcError(
      cluster.via(follower, transport).call('OpenSession', {
        ttl_ms: '1000',
        request_id: cluster.requestId(),
      }),
    );
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(error.trailer('dlm-error-code')).toBe('UNAVAILABLE');
    expect(error.trailer('dlm-leader-hint')).toBe(leader);
    // Status still answers on the stopped node: it reads only the node's own view.
    const answer = await cluster.at(follower).cluster.call('Status', {});
    expect(answer.node_id).toBe(follower);
  });
});

/** A node that fails every call the way it is told to; for errors a real node gives only by chance. */
function failingNode(error: Error): ApiNode {
  const locks = new LockStateMachine();
  const view: NodeStatus = {
    id: nodeId('stub'),
    role: 'follower',
    term: 7,
    leaderId: nodeId('n9'),
    commitIndex: 0,
    appliedIndex: 0,
    voters: [nodeId('stub')],
    learners: [],
  };
  return {
    id: nodeId('stub'),
    locks,
    write: () => Promise.reject(error),
    read: () => Promise.reject(error),
    subscribe: () => () => true,
    onRestored: () => () => true,
    observe: () => {},
    status: () => view,
  };
}

describe.each(TRANSPORTS)('errors from a failing node (%s)', (transport: Transport) => {
  const endpoints: NodeEndpoints[] = [];
  afterAll(async () => {
    for (const each of endpoints) {
      each.lock.close();
      each.session.close();
      await each.server.close(100);
    }
  });

  async function callWith(error: Error, logs: LogEntry[]) {
    const served = await serve(failingNode(error), logs);
    endpoints.push(served);
    const client = transport === 'unary' ? served.lock : served.session;
    return rpcError(client.call('OpenSession', { ttl_ms: '5000', request_id: '1' }));
  }

  it('DEADLINE_EXCEEDED when a write does not commit in time', async () => {
    const error = await callWith(
      new DlmError('DEADLINE_EXCEEDED', 'write did not apply in time'),
      [],
    );
    expect(error.code).toBe(status.DEADLINE_EXCEEDED);
    expect(error.trailer('dlm-error-code')).toBe('DEADLINE_EXCEEDED');
  });

  it('RESOURCE_EXHAUSTED when the node has too many writes pending', async () => {
    const error = await callWith(
      new DlmError('RESOURCE_EXHAUSTED', '100 writes are already pending'),
      [],
    );
    expect(error.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(error.trailer('dlm-retry-after-ms')).toBe('100');
  });

  it('UNAVAILABLE carries the hint the error names, else the leader the node knows', async () => {
    const named = await callWith(new DlmError('UNAVAILABLE', 'refused', nodeId('n5')), []);
    expect(named.trailer('dlm-leader-hint')).toBe('n5');
    const known = await callWith(new DlmError('UNAVAILABLE', 'no leader here'), []);
    expect(known.trailer('dlm-leader-hint')).toBe('n9');
  });

  it('INTERNAL for anything unexpected, logged, without leaking its message', async () => {
    const logs: LogEntry[] = [];
    const error = await callWith(new TypeError('secret internals exploded'), logs);
    expect(error.code).toBe(status.INTERNAL);
    expect(error.details).not.toContain('secret');
    expect(error.trailer('dlm-error-code')).toBe('INTERNAL');
    const errors = logs.filter((entry) => entry.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ fields: { method: 'OpenSession' } });
    expect(String(errors[0]?.fields?.error)).toContain('secret internals exploded');
  });

  it('INTERNAL from the node (it stopped on a failure) is logged too', async () => {
    const logs: LogEntry[] = [];
    const error = await callWith(new DlmError('INTERNAL', 'n1 stopped: disk on fire'), logs);
    expect(error.code).toBe(status.INTERNAL);
    expect(logs.filter((entry) => entry.level === 'error')).toHaveLength(1);
  });
});
