import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DeadlockError,
  DlmClient,
  DlmClientError,
  LockSetHandle,
  LockSetNotAcquiredError,
} from '../../src/client/index.ts';
import { BEHAVIOUR_MULTI_LOCK } from '../../src/lock/index.ts';
import { ApiCluster, eventually, IDS } from '../api/harness.ts';

/**
 * session.acquireAll (issue 17) against three nodes serving the real API over gRPC: a
 * set granted whole under one token and freed whole by its handle, two clients taking
 * overlapping sets in opposite orders many times without deadlock or overlap, and a
 * real wait-for cycle of three sessions refused as a decisive DeadlockError naming it.
 */
let cluster: ApiCluster | null = null;
const clients: DlmClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await cluster?.stop();
  cluster = null;
});

async function start(count = 1): Promise<DlmClient[]> {
  const started = await ApiCluster.start();
  cluster = started;
  await eventually(() =>
    [...started.nodes.values()].every((node) => node.locks.behaviour >= BEHAVIOUR_MULTI_LOCK),
  );
  const endpoints = IDS.map((id) => `127.0.0.1:${started.at(id).server.port}`);
  for (let k = 0; k < count; k++) clients.push(new DlmClient({ endpoints, attemptTimeoutMs: 500 }));
  return clients.slice();
}

describe('session.acquireAll', () => {
  it('takes the set with one token; a try of an overlapping set takes nothing; release frees the set', async () => {
    const [dlm] = (await start()) as [DlmClient];
    const a = await dlm.openSession({ ttlMs: 5_000, clientName: 'a' });
    const b = await dlm.openSession({ ttlMs: 5_000, clientName: 'b' });
    const set = await a.acquireAll([{ name: 'set/y' }, { name: 'set/x', mode: 'SHARED' }], {
      owner: 'alice',
    });
    expect(set).toBeInstanceOf(LockSetHandle);
    expect(set.locks).toEqual([
      { name: 'set/x', mode: 'shared' },
      { name: 'set/y', mode: 'exclusive' },
    ]);
    for (const name of ['set/x', 'set/y']) {
      expect((await dlm.describe(name)).holders.map((holder) => holder.token)).toEqual([set.token]);
    }
    // b asks for set/z (free) and set/y (held): it gets neither, and is told who holds set/y.
    const refused = await b
      .acquireAll([{ name: 'set/z' }, { name: 'set/y' }])
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(LockSetNotAcquiredError);
    expect((refused as Error).message).toContain('set/y held by alice');
    expect((await dlm.describe('set/z')).holders).toEqual([]);

    await set.release();
    for (const name of ['set/x', 'set/y']) expect((await dlm.describe(name)).holders).toEqual([]);
    const after = await b.acquireAll([{ name: 'set/z' }, { name: 'set/y' }]);
    expect(BigInt(after.token)).toBeGreaterThan(BigInt(set.token));
    await a.close();
    await b.close();
  });

  // DLM_OPPOSITE_ROUNDS=1000 runs the demonstration (1,000 rounds each).
  const rounds = Number(process.env.DLM_OPPOSITE_ROUNDS ?? 200);
  it(
    `two clients take overlapping sets in opposite orders ${rounds} times each: no deadlock, never together`,
    async () => {
      const [one, two] = (await start(2)) as [DlmClient, DlmClient];
      const sessions = [
        await one.openSession({ ttlMs: 5_000, clientName: 'one' }),
        await two.openSession({ ttlMs: 5_000, clientName: 'two' }),
      ];
      const orders = [
        ['order/a', 'order/b', 'order/c'],
        ['order/c', 'order/b', 'order/a'],
      ];
      let inside = 0;
      let overlaps = 0;
      const tokens: bigint[] = [];
      const worker = async (k: number): Promise<number> => {
        const session = sessions[k];
        const order = orders[k];
        if (session === undefined || order === undefined) throw new Error(`no worker ${k}`);
        for (let round = 0; round < rounds; round++) {
          const handle = await session.acquireAll(
            order.map((name) => ({ name })),
            { waitMs: 5_000 },
          );
          inside++;
          if (inside > 1) overlaps++;
          tokens.push(BigInt(handle.token));
          // Yield so the other client's request lands while this one holds the set.
          await new Promise((resolve) => setImmediate(resolve));
          inside--;
          await handle.release();
        }
        return rounds;
      };
      const done = await Promise.all([worker(0), worker(1)]);
      expect(done).toEqual([rounds, rounds]);
      expect(overlaps).toBe(0);
      // One token per grant of the set, rising from grant to grant.
      expect(tokens).toHaveLength(2 * rounds);
      for (let k = 1; k < tokens.length; k++) {
        expect((tokens[k] as bigint) > (tokens[k - 1] as bigint)).toBe(true);
      }
      for (const session of sessions) expect(await session.settled()).toEqual([]);
      console.log(
        `opposite orders: ${2 * rounds} set grants, 0 overlaps, tokens ${tokens[0]}..${tokens.at(-1)} rising`,
      );
    },
    60_000 + rounds * 200,
  );

  it('a real cycle of three sessions is refused as a decisive DeadlockError naming the cycle', async () => {
    const [dlm] = (await start()) as [DlmClient];
    const [s1, s2, s3] = [
      await dlm.openSession({ ttlMs: 5_000, clientName: 's1' }),
      await dlm.openSession({ ttlMs: 5_000, clientName: 's2' }),
      await dlm.openSession({ ttlMs: 5_000, clientName: 's3' }),
    ];
    await s1.acquire('ring/a');
    await s2.acquire('ring/b');
    await s3.acquire('ring/c');
    const w1 = s1.acquireAll([{ name: 'ring/b' }], { waitMs: 5_000 });
    const w2 = s2.acquireAll([{ name: 'ring/c' }], { waitMs: 5_000 });
    await eventually(async () => (await dlm.describe('ring/b')).waiters.length === 1);
    await eventually(async () => (await dlm.describe('ring/c')).waiters.length === 1);

    const error = await s3
      .acquireAll([{ name: 'ring/a' }], { waitMs: 5_000 })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DeadlockError);
    const deadlock = error as DeadlockError;
    expect(deadlock.decisive).toBe(true);
    expect(deadlock.outcomeUnknown).toBe(false);
    expect(deadlock.errorCode).toBe('deadlock');
    expect(deadlock.status).toBe(status.ABORTED);
    for (const session of [s1, s2, s3]) expect(deadlock.cycle).toContain(`session ${session.id}`);
    for (const name of ['ring/a', 'ring/b', 'ring/c']) expect(deadlock.cycle).toContain(name);
    expect(deadlock.message).toContain('"ring/a" would deadlock');
    console.log(`three-session cycle: ${deadlock.message}`);
    // Decisive: nothing to settle, and nothing was queued.
    expect(await s3.settled()).toEqual([]);
    expect((await dlm.describe('ring/a')).waiters).toEqual([]);

    // The single-lock acquire is refused the same way.
    const single = await s3.acquire('ring/a', { waitMs: 5_000 }).catch((caught: unknown) => caught);
    expect(single).toBeInstanceOf(DeadlockError);

    await s3.close();
    await (await w2).release();
    await s2.close();
    await (await w1).release();
    await s1.close();
  });
});

describe('session.acquireAll of unknown outcome', () => {
  it('a set given up mid-wait is settled: whatever it got is given back, and another session then takes the set', async () => {
    const [dlm] = (await start()) as [DlmClient];
    const holder = await dlm.openSession({ ttlMs: 5_000, clientName: 'holder' });
    const asker = await dlm.openSession({ ttlMs: 5_000, clientName: 'asker' });
    const held = await holder.acquire('settle/b');
    const giveUp = new AbortController();
    const waiting = asker
      .acquireAll([{ name: 'settle/a' }, { name: 'settle/b' }], {
        waitMs: 5_000,
        signal: giveUp.signal,
      })
      .catch((error: unknown) => error);
    await eventually(async () => (await dlm.describe('settle/b')).waiters.length === 1);
    // Freed and cancelled together: the grant may land before the cancel reaches the node.
    await held.release();
    giveUp.abort();
    const error = await waiting;
    if (error instanceof LockSetHandle) {
      // The grant won the race and was delivered: the handle holds it.
      await error.release();
    } else {
      expect(error).toBeInstanceOf(DlmClientError);
      expect((error as DlmClientError).outcomeUnknown).toBe(true);
      const outcomes = await asker.settled();
      expect(outcomes).toHaveLength(1);
      expect(outcomes[0]).toMatchObject({ lock: 'settle/a' });
      expect(['released', 'notHeld']).toContain(outcomes[0]?.result);
    }
    for (const name of ['settle/a', 'settle/b']) {
      await eventually(async () => {
        const described = await dlm.describe(name);
        return described.holders.length === 0 && described.waiters.length === 0;
      });
    }
    // Nothing of the set is left with the asker: another session takes both at once.
    const after = await holder.acquireAll([{ name: 'settle/a' }, { name: 'settle/b' }]);
    expect(BigInt(after.token)).toBeGreaterThan(BigInt(held.token));
  });
});

describe('DlmClientError.decisive', () => {
  it('is true for ABORTED with dlm-error-code deadlock, and for no other ABORTED', () => {
    const deadlock = new DlmClientError('x', status.ABORTED, 'deadlock', null, null);
    expect(deadlock.decisive).toBe(true);
    expect(deadlock.notApplied).toBe(true);
    expect(new DlmClientError('x', status.ABORTED, 'ABORTED', null, null).decisive).toBe(false);
    expect(new DlmClientError('x', status.ABORTED, null, null, null).decisive).toBe(false);
  });
});
