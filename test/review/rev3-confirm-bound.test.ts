/**
 * Review of cf06c8a/4dae8c9: the bound on how long an Observe stream at a node cut off
 * one way stays open. LeadershipHandle.signal (src/client/session.ts) and docs/api.md
 * promise that such a node ends its streams within runtime.observeConfirmIntervalMs
 * plus proposalTimeoutMs (2 + 5 s by default). But a confirming read vouches only for
 * what the leader had committed when the READ BEGAN, and it may take up to
 * proposalTimeoutMs to succeed; the next confirm starts only at the interval tick after
 * it finished (`confirming` skips the ticks in between) and may take proposalTimeoutMs
 * to fail. A change committed just after a slow confirm began is therefore unseen for up
 * to ~ timeout + interval + timeout (12 s by default), while the stream (and a
 * LeadershipHandle whose term was revoked) says nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient } from '../../src/client/index.ts';
import { BEHAVIOUR_SEMAPHORES_ELECTIONS } from '../../src/lock/index.ts';
import type { PeerMessage } from '../../src/node/peer-message.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, IDS, sleep } from '../api/harness.ts';

let cluster: ApiCluster | null = null;
const clients: DlmClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  cluster?.network.heal();
  cluster?.network.releaseHeld();
  await cluster?.stop();
  cluster = null;
});

const INTERVAL_MS = 300;
const TIMEOUT_MS = 1_000;

describe('rev3: the cut-off bound interval + proposalTimeoutMs', () => {
  it('a revoke at a node cut off just after a slow confirm began ends its Observe within the bound', async () => {
    const started = await ApiCluster.start(
      { observeConfirmIntervalMs: INTERVAL_MS },
      { proposalTimeoutMs: TIMEOUT_MS, snapshotEntriesThreshold: 100_000 },
    );
    cluster = started;
    await eventually(() =>
      [...started.nodes.values()].every(
        (node) => node.locks.behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS,
      ),
    );
    const leader = await started.leaderId();
    const [f1] = IDS.filter((id) => id !== leader) as [NodeId, NodeId];
    const a = new DlmClient({
      endpoints: [`127.0.0.1:${started.at(leader).server.port}`],
      attemptTimeoutMs: 500,
    });
    clients.push(a);
    await a.campaign('rev3/bound', 'a:1', { owner: 'a', ttlMs: 20_000 });

    // A raw Observe at F1.
    const open = started.at(f1).lock.stream('Observe', { election: 'rev3/bound' });
    const first = new Promise((resolve) => open.once('data', resolve));
    let endedAt: number | null = null;
    open.on('data', () => {});
    open.on('error', () => {
      endedAt = Date.now();
    });
    await first;

    // The next confirming read's answer is kept back (the leader took its index); from
    // then on F1 gets no entries (it still hears heartbeats, so keeps its leader).
    const stashed: PeerMessage[] = [];
    let stashAnswers = true;
    let blockEntries = false;
    started.network.hold((message) => {
      if (message.kind !== 'raft' || message.message.to !== f1) return false;
      const type = message.message.type;
      if (stashAnswers && type === 'ReadIndexResponse') {
        stashed.push(message);
        blockEntries = true;
        return true;
      }
      return blockEntries && (type === 'AppendEntries' || type === 'InstallSnapshot');
    });
    await eventually(() => stashed.length > 0);
    const readAnsweredAt = Date.now();
    stashAnswers = false;

    const revoked = await started.at(leader).cluster.call('RevokeLock', {
      lock: 'rev3/bound',
      reason: 'review',
    });
    expect(revoked.freed).toBe(1);
    const revokedAt = Date.now();

    // The slow confirm succeeds just inside its deadline: F1 applied its index already.
    await sleep(Math.max(0, readAnsweredAt + TIMEOUT_MS - 150 - Date.now()));
    const handler = (
      started.network as unknown as { handlers: Map<NodeId, (m: PeerMessage) => void> }
    ).handlers.get(f1);
    for (const message of stashed) handler?.(message);

    const deadline = Date.now() + 8_000;
    while (endedAt === null && Date.now() < deadline) await sleep(20);
    const staleMs = (endedAt ?? Date.now()) - revokedAt;
    const view = started.nodes.get(f1)?.status();
    console.log(
      'F1 stream ended',
      staleMs,
      'ms after the revoke; F1',
      view?.leaderId,
      view?.appliedIndex,
      'leader commit',
      started.nodes.get(leader)?.status().commitIndex,
    );
    expect(endedAt).not.toBeNull();
    // FAILED the first promise (interval + timeout): ~ (TIMEOUT - 150) + up to INTERVAL + TIMEOUT ≈ 2 s > 1.3 s.
    // The documented bound is interval + 2 × timeout: a confirmation that succeeded late
    // covers only what was committed when it began (this review showed interval +
    // timeout, the first promise, does not hold).
    expect(staleMs).toBeLessThanOrEqual(INTERVAL_MS + 2 * TIMEOUT_MS + 200);
  }, 30_000);
});
