/**
 * Review of 9a87035 (a new cluster's leader completes its first rules with
 * SetRules{onlyIfSetAt}; "below 5 no completion is proposed").
 *
 * The completion exists for the optional rules a new cluster's first SetRules must leave
 * out at the base version. locksPerAcquireMax and deadlockCheckStepsMax are rules from
 * version 4 (docs/operations.md, "Optional rules"). A new cluster one of whose members
 * runs a binary that applies up to version 4 is raised to 4, and docs/operations.md
 * still says: "its first leader proposes its file's rules without them, raises the
 * behaviour version, and once the raise has applied adds them with a second SetRules
 * ... On a cluster not yet raised to their version they are left out". The cluster *is*
 * raised to their version, yet since 9a87035 no completion is proposed below 5
 * (node.ts completeFileRules: `!guarded` drops fileRulesLeft), so the file's
 * `lock.locksPerAcquireMax: 3` is never in force: an AcquireAll of 16 locks is accepted
 * on a cluster whose every node's file says 3, and nothing but the rules report
 * (a log line) says so. Before 9a87035 the completion went in at 4.
 *
 * (The guard itself cannot be honoured below 5, as older binaries ignore the field; the
 * trade-off is legitimate, but then the docs and the comment in proposeRulesIfUnset,
 * "completeFileRules adds them once the raise that follows has applied", are untrue for
 * a cluster raised to 4.) FAILED on f20455b.
 *
 * Resolution: the trade-off is kept (the guard that protects an operator's SetRules needs
 * version 5), and the docs and comments now say so: a new cluster raised only to 4 keeps
 * its file's version-4 rules at their defaults until `dlm rules apply`. The test holds
 * the code to that documented behaviour, so a change to either is seen.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BEHAVIOUR_MULTI_LOCK, type LockLimits } from '../../src/lock/index.ts';
import { DlmNode } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { ids, OPTIONS, until } from '../node/cluster-harness.ts';

const FILE: Partial<LockLimits> = { locksPerAcquireMax: 3 };

let nodes: DlmNode[] = [];

afterEach(async () => {
  await Promise.all(nodes.map((node) => node.stop()));
  nodes = [];
});

describe('9a87035: a new cluster raised to version 4 (one member on a binary up to 4)', () => {
  it("leaves its file's version-4 rules at their defaults, as documented (no guarded completion below 5)", async () => {
    const network = new MemoryNetwork();
    nodes = ids.map((id, i) => {
      const storage = MemoryWritableStorage.bootstrap({ voters: ids, learners: [] });
      const behaviourMax = i === 2 ? BEHAVIOUR_MULTI_LOCK : undefined;
      return new DlmNode(
        id,
        storage,
        network.connect(id),
        { ...OPTIONS, lock: FILE, ...(behaviourMax === undefined ? {} : { behaviourMax }) },
        undefined,
        i + 1,
      );
    });
    for (const node of nodes) node.start();
    await until(
      () => nodes.every((node) => node.locks.behaviour === BEHAVIOUR_MULTI_LOCK),
      'the cluster raised to version 4',
    );
    // Long enough for any completion the leader was going to propose.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(nodes.every((node) => node.locks.behaviour === BEHAVIOUR_MULTI_LOCK)).toBe(true);
    // Unset (the default, 16, applies) until `dlm rules apply`, as docs/operations.md says.
    for (const node of nodes) expect(node.locks.rules.locksPerAcquireMax).toBeUndefined();
  });
});
