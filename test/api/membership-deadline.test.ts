import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ApiNode } from '../../src/api/context.ts';
import { MONOTONIC_DEADLINE_KEY } from '../../src/api/deadline.ts';
import { CLUSTER_SERVICE_NAME, clientDefinition } from '../../src/api/proto.ts';
import type { MembershipCallOptions, NodeStatus } from '../../src/node/node.ts';
import { nodeId } from '../../src/util/ids.ts';
import { type NodeEndpoints, serve } from './harness.ts';

/**
 * A membership call's time budget is the client's deadline measured on a monotonic
 * clock. grpc-js hands the handler only a wall-clock deadline; a step of the wall clock
 * (NTP, an operator) between grpc-js reading it and the handler reading it again must
 * not give the call 0 ms or hours.
 */
const HOUR_MS = 3_600_000;
const N1 = nodeId('n1');

let endpoints: NodeEndpoints | null = null;

afterEach(async () => {
  vi.restoreAllMocks();
  endpoints?.cluster.close();
  await endpoints?.server.close(0);
  endpoints = null;
});

const status: NodeStatus = {
  id: N1,
  role: 'leader',
  term: 1,
  leaderId: N1,
  commitIndex: 1,
  appliedIndex: 1,
  voters: [N1],
  learners: [],
};

/** A stand-in node that records the options of each TransferLeadership call. */
function recordingNode(seen: MembershipCallOptions[]): ApiNode {
  return {
    id: N1,
    locks: {} as ApiNode['locks'],
    write: async () => {
      throw new Error('not used');
    },
    read: async () => {
      throw new Error('not used');
    },
    subscribe: () => () => {},
    onRestored: () => () => {},
    observe: () => {},
    status: () => status,
    transferLeadership: async (_target, options = {}) => {
      seen.push(options);
      return N1;
    },
  };
}

/**
 * Steps the wall clock by `stepMs` as seen from the Cluster service's own code only, as
 * if the clock moved just after grpc-js had turned the call's timeout into a deadline.
 */
function stepWallClockInClusterService(stepMs: number): void {
  const realNow = Date.now.bind(Date);
  vi.spyOn(Date, 'now').mockImplementation(() => {
    const inService = new Error().stack?.includes('cluster-service') ?? false;
    return realNow() + (inService ? stepMs : 0);
  });
}

describe('membership call budget', () => {
  for (const [what, stepMs] of [
    ['back by an hour', -HOUR_MS],
    ['forward by an hour', HOUR_MS],
  ] as const) {
    it(`is the client's deadline, not hours or 0 ms, when the wall clock steps ${what}`, async () => {
      const seen: MembershipCallOptions[] = [];
      endpoints = await serve(recordingNode(seen), []);
      stepWallClockInClusterService(stepMs);
      await endpoints.cluster.call('TransferLeadership', {}, { deadlineMs: 5_000 });
      const timeoutMs = seen[0]?.timeoutMs;
      // The handler keeps a margin (at most 200 ms) for its own error to get through.
      expect(timeoutMs).toBeGreaterThan(4_000);
      expect(timeoutMs).toBeLessThanOrEqual(5_000);
    });
  }

  it('without a deadline the node default applies', async () => {
    const seen: MembershipCallOptions[] = [];
    endpoints = await serve(recordingNode(seen), []);
    await endpoints.cluster.call('TransferLeadership', {});
    expect(seen).toEqual([{}]);
  });

  it('ignores a monotonic deadline a client sends itself (here, with no gRPC deadline)', async () => {
    const seen: MembershipCallOptions[] = [];
    endpoints = await serve(recordingNode(seen), []);
    const metadata = new grpc.Metadata();
    metadata.set(MONOTONIC_DEADLINE_KEY, String(performance.now() + HOUR_MS));
    const method = clientDefinition(CLUSTER_SERVICE_NAME).TransferLeadership;
    if (method === undefined) throw new Error('no TransferLeadership');
    await new Promise((resolve, reject) => {
      endpoints?.cluster.raw.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        {},
        metadata,
        {},
        (error, response) => (error ? reject(error) : resolve(response)),
      );
    });
    expect(seen).toEqual([{}]);
  });
});
