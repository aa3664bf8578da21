import { afterEach, describe, expect, it } from 'vitest';
import { ApiError } from '../../src/api/errors.ts';
import { parseKeepAlive } from '../../src/api/validate.ts';
import { LOCK_LIMIT_CEILINGS } from '../../src/lock/index.ts';
import { DlmError } from '../../src/node/errors.ts';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { GrpcTransport } from '../../src/transport/grpc.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import { freePort } from '../support/free-port.ts';

/**
 * REVIEW (keepalive-batch): KeepAliveRequest.session_ids has no bound before the log
 * (keepAliveBatchMax is checked only at apply, and its ceiling is MAX_SAFE_INTEGER), so
 * one request under the API's 4 MiB receive limit becomes one log entry larger than a
 * peer's 4 MiB receive limit (msgpack spends 9 bytes on an id a varint holds in 6). The
 * entry cannot replicate: the write never commits and the writes behind it wait.
 * Expected: refused before the log (INVALID_ARGUMENT past the ceiling of
 * keepAliveBatchMax), and a batch at that ceiling applies (refused by the rule) while
 * the cluster keeps committing. Same peer setup as test/node/grpc-cluster.test.ts.
 */
const OPTIONS: NodeRuntimeOptions = {
  tickIntervalMs: 10,
  raft: { electionTimeoutTicks: 15, heartbeatIntervalTicks: 1 },
  lock: { sessionTtlMsMin: 100 },
  pendingProposalsMax: 1000,
  proposalTimeoutMs: 3_000,
  snapshotEntriesThreshold: 50,
  compactionRetainEntries: 10,
  shutdownTransferMs: 500,
};

const ids = [nodeId('n1'), nodeId('n2'), nodeId('n3')];
let nodes: DlmNode[] = [];

afterEach(async () => {
  await Promise.all(nodes.map((node) => node.stop()));
  nodes = [];
});

async function startCluster(): Promise<DlmNode[]> {
  const ports = await Promise.all(ids.map(() => freePort()));
  const peers = new Map<NodeId, string>(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const transports = await Promise.all(
    ids.map((id) =>
      GrpcTransport.start({
        id,
        listenAddress: peers.get(id) ?? '',
        peers,
        queueMessagesMax: 10_000,
        batchMessagesMax: 256,
        reconnectDelayMsMin: 20,
        reconnectDelayMsMax: 500,
      }),
    ),
  );
  return ids.map((id, i) => {
    const storage = MemoryWritableStorage.bootstrap({ voters: ids, learners: [] });
    const transport = transports[i];
    if (transport === undefined) throw new Error('transport missing');
    const node = new DlmNode(id, storage, transport, OPTIONS, undefined, i + 1);
    node.start();
    return node;
  });
}

async function openSession(cluster: DlmNode[], requestId: string, budgetMs: number) {
  const until = Date.now() + budgetMs;
  let last: unknown = null;
  while (Date.now() < until) {
    const leader = cluster.find((node) => node.status().role === 'leader');
    if (leader !== undefined) {
      try {
        return await leader.write(
          { type: 'OpenSession', ttlMs: 5_000, clientName: 'review', requestId },
          {},
        );
      } catch (error) {
        if (!(error instanceof DlmError)) throw error;
        last = error;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no OpenSession committed within ${budgetMs} ms: ${String(last)}`);
}

describe('REVIEW keepalive-batch: a KeepAlive batch the API admits', () => {
  it('a 500k-id session_ids request (3 MB on the wire) is refused by the API before the log', () => {
    const raw = {
      session_id: '0',
      session_ids: Array.from({ length: 500_000 }, (_, i) => String(2 ** 40 + i)),
    };
    let refused: unknown = null;
    try {
      parseKeepAlive(raw);
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).code).toBe('invalidArgument');
    expect((refused as ApiError).message).toContain(
      `KeepAliveRequest.session_ids: holds 500000 ids, the ceiling is ${LOCK_LIMIT_CEILINGS.keepAliveBatchMax}`,
    );
  });

  it('a batch at the ceiling is settled and the cluster keeps committing', async () => {
    nodes = await startCluster();
    await openSession(nodes, 'warm-up', 5_000);
    // The largest batch the API passes on: its entry must replicate like any other.
    const ceiling = LOCK_LIMIT_CEILINGS.keepAliveBatchMax;
    const { sessionIds } = parseKeepAlive({
      session_id: '0',
      session_ids: Array.from({ length: ceiling }, (_, i) => String(2 ** 40 + i)),
    });
    expect(sessionIds).toHaveLength(ceiling);
    const leader = nodes.find((node) => node.status().role === 'leader');
    if (leader === undefined) throw new Error('no leader');
    const started = Date.now();
    const outcome = await leader.write({ type: 'KeepAlive', sessionIds }, {}).then(
      (applied) => `applied: ${applied.result.type}`,
      (error: unknown) => `failed: ${String(error)}`,
    );
    // The state machine refuses it (past keepAliveBatchMax 1000) promptly.
    expect(outcome).toBe('applied: Rejected');
    expect(Date.now() - started).toBeLessThan(3_000);
    // And the cluster still commits an ordinary write right away.
    await openSession(nodes, 'after', 2_000);
  }, 30_000);

  it('control: a 1001-id batch (small entry) is applied and refused by keepAliveBatchMax', async () => {
    nodes = await startCluster();
    await openSession(nodes, 'warm-up', 5_000);
    const { sessionIds } = parseKeepAlive({
      session_id: '0',
      session_ids: Array.from({ length: 1_001 }, (_, i) => String(2 ** 40 + i)),
    });
    const leader = nodes.find((node) => node.status().role === 'leader');
    if (leader === undefined) throw new Error('no leader');
    const applied = await leader.write({ type: 'KeepAlive', sessionIds }, {});
    expect(applied.result.type).toBe('Rejected');
  }, 30_000);
});
