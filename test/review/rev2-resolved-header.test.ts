/**
 * Review 2 of the resolve-from-snapshot path (10362f3). A follower's Acquire is placed
 * and committed by the leader, but the follower never receives the entry (the leader's
 * AppendEntries to it are held back); it catches up by an InstallSnapshot, and
 * ProposalRegistry.restored() answers the still-waiting caller from the snapshot, with
 * `index` = the attempt's own entry.
 *
 * Property checked (the runtime checker's, acquireProblem): an Acquired answer names an
 * index at which the session held the lock with the told token. Every other path
 * answers at the grant's own index or later, so header.index >= fencing_token.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { plainLockSnapshot } from '../../src/lock/index.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, IDS, sleep } from '../api/harness.ts';

let cluster: ApiCluster | null = null;
afterEach(async () => {
  cluster?.network.releaseHeld();
  await cluster?.stop();
  cluster = null;
});

async function start(): Promise<{ c: ApiCluster; leader: NodeId; follower: NodeId }> {
  const c = await ApiCluster.start(
    {},
    { snapshotEntriesThreshold: 20, compactionRetainEntries: 2 },
  );
  cluster = c;
  return { c, leader: await c.leaderId(), follower: await c.followerId() };
}

/** Holds back the leader's AppendEntries to `follower`; heartbeats, forward replies and snapshots pass. */
function starve(c: ApiCluster, leader: NodeId, follower: NodeId): void {
  c.network.hold(
    (message: PeerMessage) =>
      message.kind === 'raft' &&
      message.message.type === 'AppendEntries' &&
      message.message.from === leader &&
      message.message.to === follower,
  );
}

async function churn(c: ApiCluster, leader: NodeId, session: string): Promise<void> {
  for (let i = 0; i < 30; i++) await c.at(leader).lock.call('KeepAlive', { session_id: session });
}

describe('rev2: a Queued write granted inside the snapshot', () => {
  it('is answered Acquired at an index where its session held the lock', async () => {
    const { c, leader, follower } = await start();
    const holder = await c.openSession(leader, 60_000);
    const waiter = await c.openSession(leader, 60_000);
    const held = await c.at(leader).lock.call('Acquire', {
      lock: 'r2/q',
      session_id: holder,
      request_id: c.requestId(),
    });
    await sleep(100); // the follower has everything so far
    starve(c, leader, follower);
    const waiting = c
      .at(follower)
      .lock.call(
        'Acquire',
        { lock: 'r2/q', session_id: waiter, request_id: c.requestId(), wait_ms: '30000' },
        { deadlineMs: 8_000 },
      );
    await eventually(async () => {
      const described = await c.at(leader).lock.call('Describe', { lock: 'r2/q' });
      return described.waiters.length === 1;
    });
    await sleep(100); // forwardAccepted reached the follower: the write is placed there
    // Cut it off for good (held appends are never delivered), so it must catch up by snapshot.
    c.network.isolate(
      follower,
      IDS.filter((id) => id !== follower),
    );
    c.network.hold(() => false);
    await c.at(leader).lock.call('Release', {
      lock: 'r2/q',
      session_id: holder,
      fencing_token: held.fencing_token,
      request_id: c.requestId(),
    });
    await churn(c, leader, holder);
    c.network.heal();

    const answer = await waiting;
    expect(answer.acquired).toBe(true);
    const token = Number(answer.fencing_token);
    const index = Number((answer.header as { index: string }).index);
    // The grant is the Release's entry; the header names the Acquire's own entry, where
    // the session was still waiting behind the holder.
    expect(index, `told Acquired token ${token} at index ${index}`).toBeGreaterThanOrEqual(token);
  }, 20_000);
});

/**
 * The same at the registry: what restored() resolves a Queued write with, whose wait the
 * snapshot shows granted. acquire.ts answers `{ index, result }` as is (answerAtOnce:
 * header(node, index), fencing_token result.token).
 */
describe('rev2: restored() at the registry (no timing)', () => {
  it('resolves a write granted after its own entry at an index where it was still queued', async () => {
    const { LockStateMachine, BEHAVIOUR_ATTEMPT_PROPOSALS } = await import(
      '../../src/lock/index.ts'
    );
    const { ProposalRegistry } = await import('../../src/node/proposals.ts');
    const { logIndex, nodeId } = await import('../../src/util/ids.ts');
    const full = new LockStateMachine();
    const lagging = new LockStateMachine();
    const registry = new ProposalRegistry(nodeId('n3'), 'boot', 100, 60_000);
    let index = 0;
    const apply = (proposalId: string | null, command: Parameters<typeof full.apply>[1]) =>
      full.apply(logIndex(++index), command, proposalId);
    apply(null, { type: 'SetBehaviour', version: BEHAVIOUR_ATTEMPT_PROPOSALS });
    const open = (requestId: string) => {
      apply(`n1/x/${requestId}`, {
        type: 'OpenSession',
        ttlMs: 10_000,
        clientName: 'c',
        requestId,
      });
      return index as never;
    };
    const holder = open('o1');
    const waiter = open('o2');
    const acquire = (session: never, requestId: string, waitMs: number) => ({
      type: 'Acquire' as const,
      lock: 'x',
      sessionId: session,
      mode: 'exclusive' as const,
      waitMs,
      requestId,
      owner: 'o',
      maxHoldMs: 0,
      lockDelayMs: 0,
    });
    const held = apply('n1/x/h', acquire(holder, 'h', 0));
    const command = acquire(waiter, 'w', 60_000);
    let told: { index: number; result: { type: string; token?: number } } | null = null;
    const { proposalId, applied } = registry.add(0, 60_000, { listener: () => {}, command });
    void applied.then((a) => {
      told = a as never;
    });
    apply(proposalId, command); // Queued, at `first`
    const first = index;
    registry.placed(proposalId, logIndex(first));
    const token = held.result.type === 'Acquired' ? held.result.token : -1;
    apply('n1/x/rel', {
      type: 'Release',
      lock: 'x',
      sessionId: holder,
      token: token as never,
      requestId: 'rel',
    });
    const grantedAt = index;
    lagging.restore(plainLockSnapshot(full.snapshot()));
    lagging.skipTo(logIndex(index));
    registry.restored(logIndex(index), (c, id) => lagging.attemptsOf(c, id));
    await Promise.resolve();
    // Not at `first`, where the session only waited: as of the snapshot, and its entry
    // kept for giving the grant back.
    expect(told as unknown).toEqual({
      index: grantedAt,
      attemptIndex: first,
      result: expect.objectContaining({ type: 'Acquired', token: grantedAt }),
    });
  });
});
