/**
 * The optional lock rules of a config file (lock.locksPerAcquireMax,
 * lock.deadlockCheckStepsMax, lock.semaphoreLimitMax, ...: issue 17) reach the log on a
 * new cluster. They are rules only from lock behaviour version 4 or 5, and a new
 * cluster's first SetRules applies at the base version (the raise follows it), which
 * refuses a SetRules carrying one whole: so the leader proposes its file's rules without
 * them, and adds them with a second SetRules once the raise has applied. Proposed whole
 * at once, they were refused, and no rules, so no client write, were ever in force.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BEHAVIOUR_LATEST, type LockLimits } from '../../src/lock/index.ts';
import { DlmNode } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { sessionId } from '../../src/util/ids.ts';
import { ids, OPTIONS, until } from './cluster-harness.ts';

const FILE: Partial<LockLimits> = {
  locksPerAcquireMax: 3,
  deadlockCheckStepsMax: 500,
  semaphoreLimitMax: 4,
  electionValueBytesMax: 8,
};

let nodes: DlmNode[] = [];

afterEach(async () => {
  await Promise.all(nodes.map((node) => node.stop()));
  nodes = [];
});

describe('optional lock rules from the config file', () => {
  it('are in force on a new cluster, and the state machine applies them', async () => {
    const network = new MemoryNetwork();
    nodes = ids.map((id, i) => {
      const storage = MemoryWritableStorage.bootstrap({ voters: ids, learners: [] });
      const node = new DlmNode(
        id,
        storage,
        network.connect(id),
        { ...OPTIONS, lock: FILE },
        undefined,
        i + 1,
      );
      node.start();
      return node;
    });
    const leader = (): DlmNode | undefined =>
      nodes.find((node) => node.status().role === 'leader' && node.locks.rulesSetIndex !== null);
    const whole = (node: DlmNode): boolean =>
      Object.entries(FILE).every(
        ([field, value]) => node.locks.rules[field as keyof LockLimits] === value,
      );
    await until(() => leader() !== undefined && nodes.every(whole), 'the file rules whole');
    const node = leader() as DlmNode;
    expect(node.locks.behaviour).toBe(BEHAVIOUR_LATEST);
    expect(node.locks.rules).toMatchObject(FILE);

    const opened = await node.write({
      type: 'OpenSession',
      ttlMs: 10_000,
      clientName: 'optional-rules',
      requestId: 'open-1',
    });
    if (opened.result.type !== 'SessionOpened') throw new Error(opened.result.type);
    const session = sessionId(opened.result.sessionId);
    const locks = ['a', 'b', 'c', 'd'].map((lock) => ({ lock, mode: 'exclusive' as const }));
    const { result } = await node.write({
      type: 'AcquireAll',
      locks,
      sessionId: session,
      waitMs: 0,
      requestId: 'set-1',
      owner: '',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
    // Four locks, over the file's locksPerAcquireMax of 3 (the default is 16).
    expect(result).toMatchObject({ type: 'Rejected', field: 'locks' });
    expect(JSON.stringify(result)).toContain('3');
    const asked = { sessionId: session, waitMs: 0, owner: '', maxHoldMs: 0, lockDelayMs: 0 };
    // A limit of 5, over the file's semaphoreLimitMax of 4 (the default is 100,000).
    const semaphore = await node.write({
      type: 'AcquirePermits',
      lock: 'pool',
      permits: 1,
      limit: 5,
      requestId: 'permits-1',
      ...asked,
    });
    expect(semaphore.result).toMatchObject({ type: 'Rejected', field: 'limit' });
    // A value of 9 bytes, over the file's electionValueBytesMax of 8 (the default is 4,096).
    const campaign = await node.write({
      type: 'Campaign',
      lock: 'primary',
      value: '123456789',
      requestId: 'campaign-1',
      ...asked,
    });
    expect(campaign.result).toMatchObject({ type: 'Rejected', field: 'value' });
  });
});
