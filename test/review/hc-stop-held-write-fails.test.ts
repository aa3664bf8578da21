import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DlmNode } from '../../src/node/node.ts';
import { LevelStorage } from '../../src/storage/level-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { nodeId } from '../../src/util/ids.ts';
import { OPTIONS, TestCluster, until } from '../node/cluster-harness.ts';

/**
 * Review of 5ae8b73 (HeldCommit): stopOnce now writes the held commit index after the
 * Ready loop has ended, outside the loop's try/catch. Every other write failure stops
 * the node through stopOnFailure and stop() still closes everything; this one rejects
 * stop() half-way: pending reads and writes are never failed (the tick that expires
 * them is already cleared), the transport stays open, and LevelDB stays open (its LOCK
 * held), so the same data directory cannot be opened again in this process.
 */
const N1 = nodeId('n1');
let dir: string | null = null;
let cluster: TestCluster | null = null;
afterEach(async () => {
  cluster?.network.heal();
  await Promise.all(
    [...(cluster?.nodes.values() ?? [])].map((node) => node.stop().catch(() => {})),
  );
  cluster = null;
  if (dir !== null) await rm(dir, { recursive: true, force: true });
  dir = null;
});

// biome-ignore lint/suspicious/noExplicitAny: reaching into the node and the store
type Internals = any;

describe('review 5ae8b73: a failed held-commit write at a clean stop', () => {
  it('stop() still closes the storage when the held commit index cannot be written', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hc-stop-'));
    const path = join(dir, 'n1');
    const storage = await LevelStorage.open(path, { bootstrap: { voters: [N1], learners: [] } });
    // The disk starts failing (EIO, ENOSPC) once armed: every LevelDB batch is refused.
    let armed = false;
    // Every write reaches LevelDB through the database's `_batch` (writeBatch).
    const db = (storage as Internals).db;
    const write = db._batch.bind(db);
    db._batch = (...args: unknown[]) =>
      armed ? Promise.reject(new Error('IO error: simulated EIO')) : write(...args);
    let closed = false;
    const close = storage.close.bind(storage);
    storage.close = async () => {
      closed = true;
      return close();
    };
    const node = new DlmNode(N1, storage, new MemoryNetwork().connect(N1), OPTIONS, undefined, 1);
    node.start();
    await until(
      () => node.status().role === 'leader' && node.locks.rulesSetIndex !== null,
      'n1 leads with the rules set',
    );
    await node.write({ type: 'OpenSession', ttlMs: 60_000, clientName: 'c', requestId: 'r1' });
    // The commit index that answered the write is held (written within a tick of quiet).
    expect((node as Internals).heldCommit.held).not.toBeNull();
    armed = true;
    const outcome = await node.stop().then(
      () => 'resolved',
      (error: Error) => `rejected: ${error.message}`,
    );
    // A restart in this process (what a supervisor or a test does) opens the directory again.
    const reopened = await LevelStorage.open(path).then(
      async (again) => {
        await again.close();
        return 'opened';
      },
      (error: Error) => `refused: ${error.message}`,
    );
    // Before 5ae8b73 stop() wrote nothing after the loop and always got this far.
    expect({ outcome, storageClosed: closed, reopened }).toEqual({
      outcome: 'resolved',
      storageClosed: true,
      reopened: 'opened',
    });
  }, 20_000);

  it('a write pending at a follower whose held-commit write fails at stop still fails', async () => {
    const c = new TestCluster();
    cluster = c;
    const leader = await c.leader();
    const follower = await c.follower();
    const storage = c.storages.get(follower.id);
    if (storage === undefined) throw new Error('no storage');
    let armed = false;
    const persist = storage.persist.bind(storage);
    storage.persist = async (batch) => {
      if (armed) throw new Error('IO error: simulated EIO');
      return persist(batch);
    };
    // The moment the follower applies a write it learned committed, its commit index is
    // held (for a tick); stop it then, with a write of its own on the way.
    let stopped: Promise<string> | null = null;
    let pending: Promise<string> | null = null;
    const target = { index: Number.POSITIVE_INFINITY };
    follower.subscribe((index) => {
      if (index < target.index || stopped !== null) return;
      stopped = new Promise((resolve) => setImmediate(resolve)).then(() => {
        const held = (follower as Internals).heldCommit.held !== null;
        // Its forward will never reach the leader: only the proposal timeout ends it.
        c.network.cut(follower.id, leader.id);
        pending = follower
          .write({ type: 'OpenSession', ttlMs: 60_000, clientName: 'p', requestId: 'pending' })
          .then(
            () => 'answered',
            (error: Error) => `failed: ${error.message}`,
          );
        armed = true;
        return follower.stop().then(
          () => `resolved (held ${held})`,
          (error: Error) => `rejected (held ${held}): ${error.message}`,
        );
      });
    });
    const { index } = await leader.write({
      type: 'OpenSession',
      ttlMs: 60_000,
      clientName: 'c',
      requestId: 'r1',
    });
    target.index = index;
    await until(() => stopped !== null, 'the follower applied the write');
    const stop = await (stopped as unknown as Promise<string>);
    // OPTIONS.proposalTimeoutMs is 2 s: a running node fails the write within it.
    const write = await Promise.race([
      pending as unknown as Promise<string>,
      new Promise<string>((resolve) => setTimeout(() => resolve('still pending after 5 s'), 5_000)),
    ]);
    expect({ stop, write }).toEqual({
      stop: 'resolved (held true)',
      write: expect.stringMatching(/^failed: /),
    });
  }, 20_000);
});
