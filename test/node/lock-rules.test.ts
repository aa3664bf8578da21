/**
 * The lock rules come from the log, not from each node's config (issue 10): nodes whose
 * configs disagree all apply the rules the first leader proposed, and keep them across
 * leader changes and restarts until an operator's SetRules changes them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LOCK_LIMITS, type LockLimits } from '../../src/lock/index.ts';
import { DlmError } from '../../src/node/errors.ts';
import { DlmNode } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ids, OPTIONS, until } from './cluster-harness.ts';

/** Each node's config: another lock-delay and minimum TTL apiece. */
const FILES: ReadonlyMap<NodeId, Partial<LockLimits>> = new Map(
  ids.map((id, i) => [id, { lockDelayMs: 100 * (i + 1), sessionTtlMsMin: 100 + i }]),
);

class Cluster {
  readonly network = new MemoryNetwork();
  readonly storages = new Map(
    ids.map((id) => [id, MemoryWritableStorage.bootstrap({ voters: ids, learners: [] })]),
  );
  readonly nodes = new Map<NodeId, DlmNode>();

  start(id: NodeId, seed: number): DlmNode {
    const storage = this.storages.get(id);
    if (storage === undefined) throw new Error(`no storage for ${id}`);
    const options = { ...OPTIONS, lock: FILES.get(id) ?? {} };
    const node = new DlmNode(id, storage, this.network.connect(id), options, undefined, seed);
    node.start();
    this.nodes.set(id, node);
    return node;
  }

  leader(): DlmNode | undefined {
    return [...this.nodes.values()].find((node) => node.status().role === 'leader');
  }

  allRules(): string[] {
    return [...this.nodes.values()].map((node) =>
      JSON.stringify([node.locks.rulesSetIndex, node.locks.rules]),
    );
  }

  async stop(id: NodeId): Promise<void> {
    await this.nodes.get(id)?.stop();
    this.nodes.delete(id);
  }
}

let cluster: Cluster;

afterEach(async () => {
  await Promise.all([...cluster.nodes.values()].map((node) => node.stop()));
});

function agreed(): boolean {
  const all = cluster.allRules();
  return cluster.nodes.size > 0 && all.every((rules) => rules === all[0]);
}

describe('lock rules agreed through the log', () => {
  it('every node applies the first leader’s config, and keeps it across leader changes and restarts', async () => {
    cluster = new Cluster();
    for (const [i, id] of ids.entries()) cluster.start(id, i + 1);
    await until(
      () => cluster.leader()?.locks.rulesSetIndex != null && agreed(),
      'rules set and agreed',
    );
    const first = cluster.leader();
    if (first === undefined) throw new Error('no leader');
    const setAt = first.locks.rulesSetIndex;
    const rules = { ...DEFAULT_LOCK_LIMITS, ...FILES.get(first.id) };
    for (const node of cluster.nodes.values()) expect(node.locks.rules).toEqual(rules);

    // A new leader with another config finds rules set and proposes nothing.
    await cluster.stop(first.id);
    await until(() => {
      const next = cluster.leader();
      return next !== undefined && next.status().appliedIndex > (setAt ?? 0);
    }, 'a new leader with an entry of its term applied');
    await new Promise((resolve) => setTimeout(resolve, 100));
    for (const node of cluster.nodes.values()) {
      expect(node.locks.rules).toEqual(rules);
      expect(node.locks.rulesSetIndex).toBe(setAt);
    }

    // The old leader comes back from its storage with the log's rules, not its file's.
    const back = cluster.start(first.id, 9);
    await until(() => back.locks.rulesSetIndex === setAt, 'the restarted node applied the rules');
    expect(back.locks.rules).toEqual(rules);
  });

  it('a leader takes no client write, its own or forwarded, until a SetRules applied; a SetRules it takes', async () => {
    cluster = new Cluster();
    for (const [i, id] of ids.entries()) {
      const node = cluster.start(id, i + 1);
      // No bootstrap proposal: the window before the first SetRules, held open.
      Reflect.set(node, 'proposeRulesIfUnset', () => false);
    }
    await until(() => cluster.leader() !== undefined, 'a leader');
    const leader = cluster.leader();
    const follower = [...cluster.nodes.values()].find((node) => node.status().role !== 'leader');
    if (leader === undefined || follower === undefined) throw new Error('no leader or follower');
    // Else the follower may refuse for not knowing a leader yet, not for the rules.
    await until(() => follower.status().leaderId === leader.id, 'the follower knows the leader');
    const open = {
      type: 'OpenSession',
      ttlMs: 5_000,
      clientName: 'c',
      requestId: 'early',
    } as const;
    for (const via of [leader, follower]) {
      const refused = await via.write(open).then(
        () => null,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(DlmError);
      expect(refused).toMatchObject({ code: 'UNAVAILABLE' });
      expect(String(refused)).toContain('lock rules not yet agreed');
    }
    const rules = { ...DEFAULT_LOCK_LIMITS, lockDelayMs: 5 };
    const set = await follower.write({ type: 'SetRules', rules, onlyIfUnset: false });
    expect(set.result).toEqual({ type: 'RulesSet', rules });
    // The refused writes reached no log: the session opened now is the only one.
    const opened = await follower.write(open);
    expect(opened.result.type).toBe('SessionOpened');
    expect(opened.index).toBeGreaterThan(set.index);
    expect(follower.locks.sessionIds()).toEqual([opened.index]);
  });

  it('an operator’s SetRules changes them on every node', async () => {
    cluster = new Cluster();
    for (const [i, id] of ids.entries()) cluster.start(id, i + 1);
    await until(() => cluster.leader()?.locks.rulesSetIndex != null, 'rules set');
    const follower = [...cluster.nodes.values()].find((node) => node.status().role !== 'leader');
    if (follower === undefined) throw new Error('no follower');
    const rules = { ...DEFAULT_LOCK_LIMITS, lockDelayMs: 4_000 };
    const applied = await follower.write({ type: 'SetRules', rules, onlyIfUnset: false });
    expect(applied.result).toEqual({ type: 'RulesSet', rules });
    await until(
      () => agreed() && follower.locks.rules.lockDelayMs === 4_000,
      'every node has the new rules',
    );
  });
});
