import { afterEach, describe, expect, it } from 'vitest';
import { DlmNode } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { nodeId } from '../../src/util/ids.ts';
import { OPTIONS, sleep, until } from './cluster-harness.ts';

/**
 * Review of the write-path branch: a single-node cluster. Its leader has no follower to
 * commit on, so it must not commit, apply or answer a write before its own write of the
 * entry returns. (Passes: recorded as what held.)
 */
let node: DlmNode | null = null;
afterEach(async () => {
  await node?.stop();
  node = null;
});

describe('review: a lone voter waits for its own write', () => {
  it('answers a write only once its own write of the entry is durable', async () => {
    const id = nodeId('solo');
    const storage = MemoryWritableStorage.bootstrap({ voters: [id], learners: [] });
    const n = new DlmNode(id, storage, new MemoryNetwork().connect(id), OPTIONS, undefined, 7);
    node = n;
    n.start();
    // Leader, and its file's lock rules applied: before that it refuses client writes.
    const rulesSet = (): boolean =>
      (Reflect.get(n, 'locks') as { rulesSetIndex: bigint | null }).rulesSetIndex !== null;
    await until(() => n.status().role === 'leader' && rulesSet(), 'lone leader with rules');
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let holding = true;
    const persist = storage.persist.bind(storage);
    storage.persist = async (batch) => {
      if (holding && (batch.entries?.length ?? 0) > 0) await held;
      await persist(batch);
    };
    const before = n.status().commitIndex;
    let answered = false;
    const write = n
      .write({ type: 'OpenSession', ttlMs: 5_000, clientName: 'x', requestId: 'r1' })
      .then((applied) => {
        answered = true;
        return applied;
      });
    try {
      await sleep(300); // 30 ticks, several heartbeats and election timeouts
      expect(n.status().commitIndex).toBe(before);
      expect(n.status().appliedIndex).toBe(before);
      expect(answered).toBe(false);
    } finally {
      holding = false;
      release();
    }
    expect((await write).result).toMatchObject({ type: 'SessionOpened' });
    expect(n.status().commitIndex).toBeGreaterThan(before);
  });
});
