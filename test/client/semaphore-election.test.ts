import { afterEach, describe, expect, it } from 'vitest';
import {
  DlmClient,
  KindMismatchError,
  type LeaderChange,
  LeadershipHandle,
  NotElectedError,
  PermitHandle,
  PermitsNotAcquiredError,
} from '../../src/client/index.ts';
import { BEHAVIOUR_SEMAPHORES_ELECTIONS } from '../../src/lock/index.ts';
import { ApiCluster, eventually, IDS, sleep } from '../api/harness.ts';

/**
 * The client's semaphores and elections (issue 17) against three nodes serving the real
 * API over gRPC: session.semaphore(name, limit).acquire() with a handle per grant, and
 * client.campaign / leader / observe with leadership handles.
 */
let cluster: ApiCluster | null = null;
const clients: DlmClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await cluster?.stop();
  cluster = null;
});

async function start(count: number): Promise<DlmClient[]> {
  const started = await ApiCluster.start();
  cluster = started;
  await eventually(() =>
    [...started.nodes.values()].every(
      (node) => node.locks.behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS,
    ),
  );
  const endpoints = IDS.map((id) => `127.0.0.1:${started.at(id).server.port}`);
  for (let k = 0; k < count; k++) clients.push(new DlmClient({ endpoints, attemptTimeoutMs: 500 }));
  return clients.slice();
}

describe('session.semaphore', () => {
  it('four clients on a semaphore of 2: never more than 2 hold a permit, each grant its own token, valid while held', async () => {
    const dlms = await start(4);
    const rounds = 6;
    let inUse = 0;
    let most = 0;
    const tokens: string[] = [];
    await Promise.all(
      dlms.map(async (dlm, k) => {
        const session = await dlm.openSession({ ttlMs: 10_000, clientName: `worker-${k}` });
        const semaphore = session.semaphore('pool/db', 2);
        for (let round = 0; round < rounds; round++) {
          const permit = await semaphore.acquire({ waitMs: 10_000, owner: `worker-${k}` });
          expect(permit).toBeInstanceOf(PermitHandle);
          expect(permit.permits).toBe(1);
          // Counted before the release is sent: a third grant while two are held would show.
          inUse++;
          most = Math.max(most, inUse);
          tokens.push(permit.token);
          expect((await dlm.validateFence('pool/db', permit.token)).valid).toBe(true);
          await sleep(5);
          inUse--;
          await permit.release();
          expect((await dlm.validateFence('pool/db', permit.token)).valid).toBe(false);
        }
        await session.close();
      }),
    );
    expect(most).toBeLessThanOrEqual(2);
    // With four workers contending, two did hold at once.
    expect(most).toBe(2);
    expect(tokens).toHaveLength(4 * rounds);
    expect(new Set(tokens).size).toBe(tokens.length);
  });

  it('a try that finds the permits taken is PermitsNotAcquiredError; a lock of that name is KindMismatchError, decisive', async () => {
    const [dlm] = (await start(1)) as [DlmClient];
    const a = await dlm.openSession({ ttlMs: 10_000 });
    const b = await dlm.openSession({ ttlMs: 10_000 });
    const held = await a.semaphore('pool/one', 2).acquire({ permits: 2, owner: 'alice' });
    expect(held.permits).toBe(2);
    const tried = await b
      .semaphore('pool/one', 2)
      .acquire()
      .catch((error: unknown) => error);
    expect(tried).toBeInstanceOf(PermitsNotAcquiredError);
    expect((tried as Error).message).toContain('alice');
    const asLock = await b.acquire('pool/one').catch((error: unknown) => error);
    expect(asLock).toBeInstanceOf(KindMismatchError);
    expect((asLock as KindMismatchError).outcomeUnknown).toBe(false);
    const otherLimit = await b
      .semaphore('pool/one', 3)
      .acquire()
      .catch((error: unknown) => error);
    expect(otherLimit).toBeInstanceOf(KindMismatchError);
    await expect(a.semaphore('pool/x', 2).acquire({ permits: 3 })).rejects.toThrow(
      'permits must be an integer within [1, 2]',
    );
    expect(await b.settled()).toEqual([]);
  });
});

describe('client.campaign, leader and observe', () => {
  it('three candidates: one leads at a time with a rising token; proclaim, resign and observe', async () => {
    const [watcher, ...candidates] = (await start(4)) as [DlmClient, ...DlmClient[]];
    const election = 'svc/primary';
    const stop = new AbortController();
    const changes: LeaderChange[] = [];
    const observing = (async () => {
      for await (const change of watcher.observe(election, { signal: stop.signal })) {
        changes.push(change);
      }
    })();
    await eventually(() => changes.length === 1);
    expect(changes[0]).toMatchObject({ type: 'current', leader: null });
    expect(await watcher.leader(election)).toBeNull();

    const [one, two, three] = candidates as [DlmClient, DlmClient, DlmClient];
    const first = await one.campaign(election, 'one:80', { owner: 'one', waitMs: 10_000 });
    expect(first).toBeInstanceOf(LeadershipHandle);
    expect(first.signal.aborted).toBe(false);
    const secondCampaign = two.campaign(election, 'two:80', { owner: 'two', waitMs: 10_000 });
    await eventually(async () => (await watcher.describe(election)).waiters.length === 1);
    const thirdCampaign = three.campaign(election, 'three:80', { owner: 'three', waitMs: 10_000 });
    await eventually(async () => (await watcher.describe(election)).waiters.length === 2);

    expect(await watcher.leader(election)).toMatchObject({
      owner: 'one',
      value: 'one:80',
      token: first.token,
    });
    await first.proclaim('one:81');
    expect(first.value).toBe('one:81');
    expect((await watcher.leader(election))?.value).toBe('one:81');

    await first.resign();
    const second = await secondCampaign;
    expect(Number(second.token)).toBeGreaterThan(Number(first.token));
    expect((await watcher.leader(election))?.owner).toBe('two');
    // The deposed leader's proclaim is refused: client.campaign's handle resigned by
    // closing its own session, so the cluster no longer knows that session at all.
    await expect(first.proclaim('zombie')).rejects.toMatchObject({
      errorCode: 'sessionNotFound',
      outcomeUnknown: false,
    });

    await second.resign();
    const third = await thirdCampaign;
    expect(Number(third.token)).toBeGreaterThan(Number(second.token));
    await third.resign();

    await eventually(() => changes.at(-1)?.type === 'vacant');
    stop.abort();
    await observing;
    expect(
      changes.map((change) => [
        change.type,
        change.leader?.value ?? null,
        change.leader?.token ?? null,
      ]),
    ).toEqual([
      ['current', null, null],
      ['elected', 'one:80', first.token],
      ['proclaimed', 'one:81', first.token],
      ['elected', 'two:80', second.token],
      ['elected', 'three:80', third.token],
      ['vacant', null, null],
    ]);
  });

  it('session.campaign with no wait is NotElectedError naming the leader; a lock is not an election', async () => {
    const [dlm] = (await start(1)) as [DlmClient];
    const a = await dlm.openSession({ ttlMs: 10_000 });
    const b = await dlm.openSession({ ttlMs: 10_000 });
    const leading = await a.campaign('svc/try', 'a-value', { owner: 'alice' });
    expect(leading.signal).toBe(a.signal);
    const refused = await b.campaign('svc/try', 'b-value').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(NotElectedError);
    expect((refused as NotElectedError).leader).toMatchObject({ owner: 'alice', value: 'a-value' });
    await b.acquire('svc/plain');
    await expect(a.campaign('svc/plain', 'v')).rejects.toBeInstanceOf(KindMismatchError);
    await expect(dlm.leader('svc/plain')).rejects.toBeInstanceOf(KindMismatchError);
    // Resigning through the session's handle leaves the session open.
    await leading.resign();
    expect(a.alive).toBe(true);
    expect(await dlm.leader('svc/try')).toBeNull();
  });
});
