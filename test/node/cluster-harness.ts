import type { LockCommand, LockResult } from '../../src/lock/index.ts';
import { DlmError } from '../../src/node/errors.ts';
import { DlmNode, type NodeRuntimeOptions } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';

/** A 3-node cluster in one process: real timers, in-memory network and storage. */
export const OPTIONS: NodeRuntimeOptions = {
  tickIntervalMs: 10,
  raft: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 1 },
  lock: { sessionTtlMsMin: 100 },
  pendingProposalsMax: 100,
  proposalTimeoutMs: 2_000,
  snapshotEntriesThreshold: 20,
  compactionRetainEntries: 5,
  shutdownTransferMs: 500,
};

export const ids = [nodeId('n1'), nodeId('n2'), nodeId('n3')];

export class TestCluster {
  readonly network = new MemoryNetwork();
  readonly storages = new Map<NodeId, MemoryWritableStorage>();
  readonly nodes = new Map<NodeId, DlmNode>();
  private requests = 0;

  constructor(
    private readonly options: NodeRuntimeOptions = OPTIONS,
    /** Called with each node before it starts, as serve.ts attaches its console. */
    private readonly beforeStart: (node: DlmNode) => void = () => {},
  ) {
    for (const [position, id] of ids.entries()) {
      this.storages.set(id, MemoryWritableStorage.bootstrap({ voters: ids, learners: [] }));
      this.start(id, position + 1);
    }
  }

  start(id: NodeId, seed: number): DlmNode {
    const storage = this.storages.get(id);
    if (storage === undefined) throw new Error(`no storage for ${id}`);
    const node = new DlmNode(id, storage, this.network.connect(id), this.options, undefined, seed);
    this.beforeStart(node);
    node.start();
    this.nodes.set(id, node);
    return node;
  }

  node(id: NodeId): DlmNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`${id} is not running`);
    return node;
  }

  async leader(): Promise<DlmNode> {
    for (let attempt = 0; attempt < 300; attempt++) {
      const leaders = [...this.nodes.values()].filter((node) => node.status().role === 'leader');
      // And the lock rules agreed (OPTIONS.lock, through the log), which tests rely on.
      const leader = leaders.length === 1 ? leaders[0] : undefined;
      if (leader !== undefined && leader.locks.rulesSetIndex !== null) return leader;
      await sleep(10);
    }
    throw new Error('no leader within 3 s');
  }

  async follower(): Promise<DlmNode> {
    const leader = await this.leader();
    const follower = [...this.nodes.values()].find((node) => node !== leader);
    if (follower === undefined) throw new Error('no follower');
    return follower;
  }

  requestId(): string {
    return `req-${++this.requests}`;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((node) => node.stop()));
    this.nodes.clear();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every 10 ms until it holds; past `timeoutMs` the error names `what`. */
export async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(10);
  }
}

/** Retries a write on UNAVAILABLE as a client would, with the same request id. */
export async function writeVia(
  pick: () => Promise<DlmNode>,
  command: LockCommand,
): Promise<LockResult> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      return (await (await pick()).write(command)).result;
    } catch (error) {
      if (!(error instanceof DlmError) || error.code === 'INTERNAL') throw error;
      await sleep(20);
    }
  }
  throw new Error(`write ${command.type} did not succeed`);
}
