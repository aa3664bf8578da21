/**
 * Review of issue 17's node change (review-api): on a new cluster the leader proposes
 * its file's rules without the optional ones, raises the behaviour version, and then
 * adds them with a second SetRules (node.ts completeFileRules). That second SetRules is
 * documented to leave alone "an operator's SetLockRules since": it checks that the rules
 * *applied* are still the ones it proposed, and then proposes `onlyIfUnset: false`.
 *
 * Interleaving (FAILS on main): the raise applies on the leader; an operator's SetRules
 * (dlm rules apply / SetLockRules) reaches the leader before its next tick and is
 * appended, not yet applied. The tick's completeFileRules still sees the applied rules
 * equal to what it proposed, so it proposes the file's whole rules after the operator's
 * entry. The operator is answered "applied" for its rules; one entry later the file's
 * rules silently replace them, and every write from then on applies under rules the
 * operator replaced (here locksPerAcquireMax 3 instead of the operator's 7).
 * A fix: check against the rules in the log (pending SetRules included), or make the
 * completion conditional in the state machine (apply only if the rules in force are
 * still the ones proposed).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { LockLimits } from '../../src/lock/index.ts';
import { DlmNode } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { ids, OPTIONS, until } from '../node/cluster-harness.ts';

const FILE: Partial<LockLimits> = { locksPerAcquireMax: 3, semaphoreLimitMax: 4 };

let nodes: DlmNode[] = [];

afterEach(async () => {
  await Promise.all(nodes.map((node) => node.stop()));
  nodes = [];
});

describe('a new cluster completing its file rules', () => {
  it('leaves alone an operator SetRules that was appended before the completion was proposed', async () => {
    const network = new MemoryNetwork();
    nodes = ids.map((id, i) => {
      const storage = MemoryWritableStorage.bootstrap({ voters: ids, learners: [] });
      return new DlmNode(
        id,
        storage,
        network.connect(id),
        { ...OPTIONS, lock: FILE },
        undefined,
        i + 1,
      );
    });
    let operator: Promise<unknown> | null = null;
    let operatorRules: LockLimits | null = null;
    for (const node of nodes) {
      node.subscribe((_index, output) => {
        if (operator !== null || output.result.type !== 'BehaviourSet') return;
        if (node.status().role !== 'leader') return;
        // The raise has just applied on the leader: the operator's rules arrive now,
        // after the raise, before the leader's next tick.
        operatorRules = { ...node.locks.rules, locksPerAcquireMax: 7, semaphoreLimitMax: 9 };
        const rules = operatorRules;
        operator = new Promise<void>((resolve) => queueMicrotask(resolve)).then(() => {
          // Its entry is appended on the leader but replicates only after a few ticks
          // (a slow link, a follower's slow disk): not applied when the leader ticks.
          network.hold(() => true);
          const written = node.write({ type: 'SetRules', rules, onlyIfUnset: false });
          setTimeout(() => network.releaseHeld(), 40);
          return written;
        });
      });
    }
    for (const node of nodes) node.start();
    await until(() => operator !== null, 'the raise applied on the leader');
    const answered = (await (operator as unknown as Promise<unknown>)) as {
      result: { type: string };
    };
    // The operator is told its rules are in force.
    expect(answered.result.type).not.toBe('Rejected');
    const leader = nodes.find((node) => node.status().role === 'leader') as DlmNode;
    expect(operatorRules).not.toBeNull();
    // Long enough for any completion the leader was going to propose.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // FAILS on main: 3 and 4 (the file's, proposed after the operator's SetRules). The
    // log reads: 3 RulesSet (base, file), 4 BehaviourSet, 5 RulesSet (operator's,
    // acknowledged), 6 RulesSet (the completion, onlyIfUnset false).
    expect(leader.locks.rules.locksPerAcquireMax).toBe(7);
    expect(leader.locks.rules.semaphoreLimitMax).toBe(9);
  });
});
