/**
 * The lock behaviour version in a rolling upgrade (src/node/behaviour.ts): real DlmNodes
 * over the in-memory network. An older binary is stood in for by `behaviourMax: 1`
 * (BEHAVIOUR_BASE): such a node stamps no version on its messages, exactly as a binary
 * from before versions, and applies only the base rules.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_BASE,
  BEHAVIOUR_LATEST,
  BEHAVIOUR_MULTI_LOCK,
  BEHAVIOUR_SEMAPHORES_ELECTIONS,
  BehaviourUnsupportedError,
} from '../../src/lock/index.ts';
import { decodeLockSnapshot } from '../../src/node/entry-codec.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import type { DlmNode } from '../../src/node/node.ts';
import type { MemoryWritableStorage } from '../../src/storage/index.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import { BinariesCluster } from './behaviour-cluster.ts';
import { ids, OPTIONS, sleep, until } from './cluster-harness.ts';

const ELECTION_TIMEOUT_MS = (OPTIONS.raft.electionTimeoutTicks ?? 0) * OPTIONS.tickIntervalMs;
/** Long enough that a leader that would raise has had every chance. */
const SETTLE_MS = 20 * ELECTION_TIMEOUT_MS;

const OLD = BEHAVIOUR_BASE;
const NEW = BEHAVIOUR_LATEST;

let cluster: BinariesCluster | null = null;

afterEach(async () => {
  await cluster?.stopAll();
  cluster = null;
});

const [, n2, n3] = ids as [NodeId, NodeId, NodeId];
const n4 = nodeId('n4');

describe('the lock behaviour version in a rolling upgrade', () => {
  it('a cluster born on the new binary starts raised, before any lock command', async () => {
    cluster = new BinariesCluster({});
    const leader = await cluster.leader();
    const rulesIndex = leader.locks.rulesSetIndex as number;
    await until(() => cluster?.raisedAt.size === 3, 'every node applied the raise');
    for (const id of ids) {
      // One raise, right after the rules, so no lock command applied by the base rules.
      expect(cluster.raisedAt.get(id)).toEqual([rulesIndex + 1]);
    }
    expect(cluster.behaviours()).toEqual({ n1: NEW, n2: NEW, n3: NEW });
    expect(await cluster.write('a')).toMatchObject({ type: 'SessionOpened' });
    // Only the leader raises, on its members' word: no caller may propose a version.
    await expect(leader.write({ type: 'SetBehaviour', version: NEW + 1 })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
    });
  });

  it('waits for every member to run the new binary, then raises', async () => {
    cluster = new BinariesCluster({ n3: OLD });
    await cluster.leader();
    expect(await cluster.write('before')).toMatchObject({ type: 'SessionOpened' });
    await sleep(SETTLE_MS);
    expect(cluster.behaviours()).toEqual({ n1: OLD, n2: OLD, n3: OLD });
    expect(cluster.failures).toEqual(new Map());
    const metrics = new NodeMetrics(cluster.nodes.get(n2) as DlmNode);
    const before = (await metrics.render()).body;
    expect(before).toMatch(/^dlm_lock_behaviour_version\{node="n2"\} 1$/m);
    expect(before).toMatch(new RegExp(`^dlm_lock_behaviour_max\\{node="n2"\\} ${NEW}$`, 'm'));

    await cluster.restart(n3, NEW);
    await until(
      () => Object.values(cluster?.behaviours() ?? {}).every((version) => version === NEW),
      'the raise applied everywhere',
    );
    expect(cluster.failures).toEqual(new Map());
    expect(await cluster.write('after')).toMatchObject({ type: 'SessionOpened' });
    const after = (await metrics.render()).body;
    expect(after).toMatch(new RegExp(`^dlm_lock_behaviour_version\\{node="n2"\\} ${NEW}$`, 'm'));
  });

  it('does not count a claim made before a member restarted on an older binary', async () => {
    cluster = new BinariesCluster({ n3: OLD });
    const leader = await cluster.leader();
    // A new-binary follower that has told the leader it applies the new version.
    const [claimed] = ids.filter((id) => id !== leader.id && id !== n3) as [NodeId];
    await sleep(SETTLE_MS / 4);
    expect(leader.behaviourHeardFrom(claimed)).toBe(NEW);
    await cluster.stop(claimed);
    // Down longer than an election timeout, its claim is no longer fresh and must not
    // stand in for it: n3's upgrade alone does not raise. (Within that window it would:
    // then what its older binary says next holds it back, see behaviour.ts.)
    await sleep(2 * ELECTION_TIMEOUT_MS);
    await cluster.restart(n3, NEW);
    await sleep(SETTLE_MS);
    expect(leader.locks.behaviour).toBe(OLD);
    // Back on an older binary: it stamps nothing, so it applies the base.
    cluster.start(claimed, OLD);
    await sleep(SETTLE_MS);
    expect(cluster.behaviours()).toEqual({ n1: OLD, n2: OLD, n3: OLD });
    expect(cluster.failures).toEqual(new Map());

    await cluster.restart(claimed, NEW);
    await until(
      () => Object.values(cluster?.behaviours() ?? {}).every((version) => version === NEW),
      'the raise applied everywhere once every member is upgraded',
    );
  });

  it('snapshots at once after the raise, so an older binary refuses the data', async () => {
    cluster = new BinariesCluster({});
    await cluster.leader();
    await until(() => cluster?.raisedAt.size === 3, 'every node applied the raise');
    const storage = cluster.storages.get(n2) as MemoryWritableStorage;
    // Far below snapshotEntriesThreshold (20) entries: taken for the raise.
    await until(() => storage.snapshot().data.byteLength > 0, 'n2 snapshotted');
    // Format 4 below BEHAVIOUR_MULTI_LOCK, 5 from it, 6 from BEHAVIOUR_SEMAPHORES_ELECTIONS.
    const format = NEW >= BEHAVIOUR_SEMAPHORES_ELECTIONS ? 6 : NEW >= BEHAVIOUR_MULTI_LOCK ? 5 : 4;
    expect(decodeLockSnapshot(storage.snapshot().data)).toMatchObject({
      version: format,
      behaviour: NEW,
    });
    await cluster.stop(n2);
    expect(() => cluster?.start(n2, OLD)).toThrow(BehaviourUnsupportedError);
    expect(() => cluster?.start(n2, OLD)).toThrow(
      `raises the lock behaviour version to ${NEW}, but this binary applies versions up to ${OLD}`,
    );
  });

  it('refuses to add a node that announced an older binary', async () => {
    cluster = new BinariesCluster({});
    const leader = await cluster.leader();
    await until(() => leader.locks.behaviour === NEW, 'raised');
    const joiner = cluster.join(n4, OLD);
    // A joining node announces its address to the members it is told of (serve.ts).
    joiner.learnAddresses([...ids, n4].map((id) => ({ id, peerAddress: '', clientAddress: '' })));
    await until(() => cluster?.heardFrom(n4) === true, 'the leader heard n4');
    const added = leader.addMember({ id: n4, peerAddress: '', clientAddress: '' });
    await expect(added).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    await expect(added).rejects.toThrow(
      `n4 runs a binary that applies lock behaviour versions up to ${OLD}, but the cluster applies version ${NEW}`,
    );
    expect(leader.status().learners).toEqual([]);
    expect(joiner.status().appliedIndex).toBe(0);
  });

  it('a new member on an older binary, added unheard, gets nothing it would apply', async () => {
    cluster = new BinariesCluster({});
    const leader = await cluster.leader();
    await until(() => leader.locks.behaviour === NEW, 'raised');
    const storage = cluster.storages.get(leader.id) as MemoryWritableStorage;
    await until(() => storage.snapshot().data.byteLength > 0, 'the leader snapshotted the raise');
    const joiner = cluster.join(n4, OLD);
    const added = leader.addMember(
      { id: n4, peerAddress: '', clientAddress: '' },
      { timeoutMs: SETTLE_MS },
    );
    // Its first answer (to the leader's probe, before any snapshot) said what it runs:
    // it stays a learner that gets no entries, and is not promoted.
    await expect(added).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    await expect(added).rejects.toThrow(`applies lock behaviour versions up to ${OLD}`);
    expect(leader.status().learners).toEqual([n4]);
    expect(joiner.locks.lastAppliedIndex).toBe(0);
    // Held back, not sent the snapshot (on which it would have stopped, naming the version).
    expect(cluster.failures).toEqual(new Map());
  });
});
