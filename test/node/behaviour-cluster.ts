/**
 * Real DlmNodes over the in-memory network, each started on a binary that applies lock
 * behaviour versions up to a given one: an older binary is stood in for by
 * `behaviourMax: 1` (BEHAVIOUR_BASE), which stamps no version on its messages, exactly as
 * a binary from before versions. Shared by the behaviour tests.
 */
import { BEHAVIOUR_LATEST, type LockResult } from '../../src/lock/index.ts';
import { DlmNode } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ids, OPTIONS, until } from './cluster-harness.ts';

export class BinariesCluster {
  readonly network = new MemoryNetwork();
  readonly storages = new Map<NodeId, MemoryWritableStorage>();
  readonly nodes = new Map<NodeId, DlmNode>();
  /** Each node's applied raises, by the index of the entry, in order. */
  readonly raisedAt = new Map<NodeId, number[]>();
  readonly failures = new Map<NodeId, Error>();
  private seed = 0;

  constructor(binaries: Record<string, number>) {
    for (const id of ids) {
      this.storages.set(id, MemoryWritableStorage.bootstrap({ voters: ids, learners: [] }));
      this.start(id, binaries[id] ?? BEHAVIOUR_LATEST);
    }
  }

  /** Starts (or restarts) `id` on its storage, on a binary that applies up to `behaviourMax`. */
  start(id: NodeId, behaviourMax: number): DlmNode {
    const storage = this.storages.get(id) as MemoryWritableStorage;
    const options = { ...OPTIONS, behaviourMax };
    const node = new DlmNode(
      id,
      storage,
      this.network.connect(id),
      options,
      undefined,
      ++this.seed,
    );
    node.subscribe((index, output) => {
      if (output.result.type !== 'BehaviourSet') return;
      this.raisedAt.set(id, [...(this.raisedAt.get(id) ?? []), index]);
    });
    node.observe({ failed: (error) => this.failures.set(id, error) });
    node.start();
    this.nodes.set(id, node);
    return node;
  }

  /** Starts `id` on an empty database, to be added to the cluster. */
  join(id: NodeId, behaviourMax: number): DlmNode {
    this.storages.set(id, MemoryWritableStorage.joining());
    return this.start(id, behaviourMax);
  }

  /** Whether the leader heard `id` since it started (it keeps what `id` said of its binary). */
  heardFrom(id: NodeId): boolean {
    return [...this.nodes.values()].some(
      (node) => node.status().role === 'leader' && node.behaviourHeardFrom(id) !== null,
    );
  }

  async restart(id: NodeId, behaviourMax: number): Promise<DlmNode> {
    await this.stop(id);
    return this.start(id, behaviourMax);
  }

  async stop(id: NodeId): Promise<void> {
    await this.nodes.get(id)?.stop();
    this.nodes.delete(id);
  }

  async leader(): Promise<DlmNode> {
    let found: DlmNode | undefined;
    await until(() => {
      const leaders = [...this.nodes.values()].filter((node) => node.status().role === 'leader');
      found = leaders.length === 1 ? leaders[0] : undefined;
      return found !== undefined && found.locks.rulesSetIndex !== null;
    }, 'a leader with lock rules set');
    return found as DlmNode;
  }

  behaviours(): Record<string, number> {
    return Object.fromEntries([...this.nodes].map(([id, node]) => [id, node.locks.behaviour]));
  }

  async write(requestId: string): Promise<LockResult> {
    const leader = await this.leader();
    const { result } = await leader.write({
      type: 'OpenSession',
      ttlMs: 60_000,
      clientName: 'c',
      requestId,
    });
    return result;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((node) => node.stop()));
    this.nodes.clear();
  }
}
