/**
 * Review of f20455b (a LeadershipHandle's `signal` also fires once a background Observe
 * of the election shows the term ended while the session lives: a Revoke, a max hold).
 *
 * The fix documents (DlmClient.campaign, docs/cli.md `dlm elect`: "69 when the session
 * was lost or the term ended early (revoked, max hold)") that a revoked leader is told.
 * The handle learns it only through its one background Observe, and `watchTerm` ends
 * silently on any error the stream does not reopen on (`catch {}`): from then on the
 * signal fires only at the lease's end, which never comes while the session is kept
 * alive. Each test below is an interleaving in which a revoked leader keeps being told
 * it leads (its signal never fires) while the next holder acts: each FAILS on main
 * (f20455b).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { tokenEntry } from '../../src/api/auth/tokens.ts';
import { CLUSTER_SERVICE_NAME } from '../../src/api/proto.ts';
import { bearerInterceptor } from '../../src/client/bearer.ts';
import { DlmClient } from '../../src/client/index.ts';
import { parseClusterConfig } from '../../src/config/index.ts';
import { BEHAVIOUR_SEMAPHORES_ELECTIONS } from '../../src/lock/index.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, IDS, ServiceClient, sleep } from '../api/harness.ts';

let cluster: ApiCluster | null = null;
const clients: DlmClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  cluster?.network.heal();
  await cluster?.stop();
  cluster = null;
});

async function electionsReady(started: ApiCluster): Promise<void> {
  await eventually(() =>
    [...started.nodes.values()].every(
      (node) => node.locks.behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS,
    ),
  );
}

function address(started: ApiCluster, id: NodeId): string {
  return `127.0.0.1:${started.at(id).server.port}`;
}

function client(endpoints: readonly string[], token?: string): DlmClient {
  const made = new DlmClient({
    endpoints: [...endpoints],
    attemptTimeoutMs: 500,
    ...(token === undefined ? {} : { token }),
  });
  clients.push(made);
  return made;
}

describe('f20455b: a revoked leader whose handle cannot read the election', () => {
  /**
   * Interleaving: identity `worker` has `lock` on `svc/` and not `read` (docs/api.md:
   * Campaign needs `lock`, Observe needs `read`; a role for a worker that only takes
   * its turn is natural). It campaigns and leads. The handle's background Observe is
   * refused PERMISSION_DENIED, which observeLeader throws and watchTerm swallows. An
   * operator revokes the election (RevokeLock); the worker's session lives on.
   *
   * Untrue answer: the handle's signal never fires, so `dlm elect` keeps CMD running
   * after the revoke (no exit 69), although the docs promise it for a revoke, without a
   * word that it needs `read` (nor any error or log at campaign time that the term will
   * not be followed). A truthful handle would either follow the election another way
   * (the keepalive or the session stream could tell a grant's end), refuse/flag the
   * campaign, or document the `read` requirement for the signal.
   */
  it('its signal fires after an operator Revoke (FAILS on main: PERMISSION_DENIED swallowed)', async () => {
    const workerToken = 'worker-token-0123456789';
    const adminToken = 'admin-token-0123456789a';
    const section = {
      tokens: [
        await tokenEntry('worker', workerToken, 'sha256'),
        await tokenEntry('ops', adminToken, 'sha256'),
      ],
      roles: {
        candidate: [{ prefix: 'svc/', grant: ['lock'] }],
        operator: [{ prefix: '', grant: ['read', 'lock', 'admin'] }],
      },
      identities: { worker: ['candidate'], ops: ['operator'] },
    };
    const nodes = IDS.map((id, k) => ({
      id,
      peerAddress: `127.0.0.1:${7301 + k}`,
      clientAddress: `127.0.0.1:${8301 + k}`,
      metricsAddress: `127.0.0.1:${9301 + k}`,
    }));
    const auth = parseClusterConfig({ nodes, dataDir: 'data', auth: section }, '/tmp').auth;
    const started = await ApiCluster.start({}, {}, auth);
    cluster = started;
    await electionsReady(started);
    const endpoints = IDS.map((id) => address(started, id));
    const worker = client(endpoints, workerToken);
    const ops = client(endpoints, adminToken);

    const leading = await worker.campaign('svc/scheduler', 'worker:1', { owner: 'w' });
    expect((await ops.leader('svc/scheduler'))?.token).toBe(leading.token);

    const leaderNode = await started.leaderId();
    const admin = new ServiceClient(CLUSTER_SERVICE_NAME, started.at(leaderNode).server.port, {
      interceptors: [bearerInterceptor(adminToken)],
    });
    try {
      const revoked = await admin.call('RevokeLock', { lock: 'svc/scheduler', reason: 'review' });
      expect(revoked.freed).toBe(1);
    } finally {
      admin.raw.close();
    }
    // Nobody leads now, and the worker's session is alive (its keepalives go on).
    expect(await ops.leader('svc/scheduler')).toBeNull();
    await sleep(4_000);
    expect((await ops.leader('svc/scheduler')) ?? null).toBeNull();
    // FAILS on main: the handle still says the worker leads.
    expect(leading.signal.aborted).toBe(true);
    await leading.resign().catch(() => {});
  }, 30_000);
});

describe('f20455b: the background Observe reopens onto a name now held as a lock', () => {
  /**
   * Interleaving: A leads E through a client whose first endpoint is follower F1, so
   * the handle's Observe runs at F1. F1 is cut off (a partition; its stream stays open
   * and silent). An operator revokes E at the leader, and another service takes E as a
   * plain lock (the name's record was emptied, so its kind is free again). Then F1 goes
   * away: the handle's Observe reopens, as documented, at F2. F2's CURRENT reads the
   * election's leader with leaderOf, which throws kindMismatch (the name is held as a
   * lock): FAILED_PRECONDITION, not a status observeLeader reopens on, so it throws and
   * watchTerm swallows it.
   *
   * Untrue answer: A's signal never fires although its term ended (revoked) and the
   * name is now held by someone else; A's session lives on at F2, so the lease's signal
   * never comes either. The name being held as something else is exactly "another token
   * leads": the handle should fire on kindMismatch (and on any decisive Observe error
   * that says the election no longer is as it was), not go silent.
   */
  it('its signal fires once the revoked election is held by another (FAILS on main: kindMismatch swallowed)', async () => {
    const started = await ApiCluster.start();
    cluster = started;
    await electionsReady(started);
    const leaderNode = await started.leaderId();
    const [f1, f2] = IDS.filter((id) => id !== leaderNode) as [NodeId, NodeId];
    const a = client([address(started, f1), address(started, f2)]);
    const other = client([address(started, leaderNode)]);

    const leading = await a.campaign('rev/elect-kind', 'a:1', { owner: 'a' });
    // The handle's Observe is open at F1 and has told it the term stands.
    await sleep(300);
    expect(leading.signal.aborted).toBe(false);

    started.network.isolate(
      f1,
      IDS.filter((id) => id !== f1),
    );
    const revoked = await started.at(leaderNode).cluster.call('RevokeLock', {
      lock: 'rev/elect-kind',
      reason: 'review',
    });
    expect(revoked.freed).toBe(1);
    const session = await other.openSession({ ttlMs: 10_000 });
    const lock = await session.acquire('rev/elect-kind');
    expect(lock.token).not.toBe(leading.token);

    // F1 goes away: A's keepalives and its Observe move to F2.
    await started.at(f1).server.close(0);
    await sleep(4_000);
    // A's session is alive (its lease is kept), so the lease signal has not fired...
    // ...and the term is over: somebody else holds the name. FAILS on main.
    expect(leading.signal.aborted).toBe(true);
    await session.close();
  }, 30_000);
});

describe('f20455b: the background Observe sits at a follower that was cut off', () => {
  /**
   * Interleaving: A leads E; its client's first endpoint is follower F1, where the
   * handle's Observe opens. F1 is cut off from the other nodes (and stays so). A's
   * keepalives to F1 fail and the client moves on to F2, so A's session lives on. An
   * operator revokes E and B (waiting) is elected. F1 never applies the Revoke, and
   * its server keeps the Observe stream open and silent (nothing ends an event stream
   * when its node loses the leader), so the handle is never told.
   *
   * Untrue answer: A's signal does not fire for as long as F1 is cut off, while B leads
   * and the client itself already moved off F1 for every other call; `dlm elect` keeps
   * CMD running beside B's. (The signal is documented to fire once the term is seen to
   * end; the client here could see it at F2, where its session is kept.)
   */
  // Fixed: a node that knows no leader ends its Observe streams UNAVAILABLE (and refuses
  // new ones), so the handle reopens at F2 and sees B lead. FAILS without that.
  it('its signal fires after a Revoke though the node it first observed at is partitioned', async () => {
    const started = await ApiCluster.start();
    cluster = started;
    await electionsReady(started);
    const leaderNode = await started.leaderId();
    const [f1, f2] = IDS.filter((id) => id !== leaderNode) as [NodeId, NodeId];
    const a = client([address(started, f1), address(started, f2)]);
    const b = client(IDS.map((id) => address(started, id)));

    const leading = await a.campaign('rev/elect-cutoff', 'a:1', { owner: 'a', ttlMs: 3_000 });
    const campaignB = b.campaign('rev/elect-cutoff', 'b:1', { owner: 'b', waitMs: 15_000 });
    await eventually(async () => (await b.describe('rev/elect-cutoff')).waiters.length === 1);
    await sleep(300);

    started.network.isolate(
      f1,
      IDS.filter((id) => id !== f1),
    );
    const revoked = await started.at(leaderNode).cluster.call('RevokeLock', {
      lock: 'rev/elect-cutoff',
      reason: 'review',
    });
    expect(revoked.freed).toBe(1);
    const leaderB = await campaignB;
    // Several TTLs: A's session must have moved its keepalives to F2 to be alive.
    await sleep(6_000);
    const describe = await b.describe('rev/elect-cutoff');
    expect(describe.holders.map((holder) => holder.token)).toEqual([leaderB.token]);
    // A's session lives (its keepalives moved to F2), and its term is over: the handle
    // must say so. FAILS on main: not aborted.
    expect(leading.signal.aborted).toBe(true);
    await leaderB.resign();
  }, 40_000);
});

describe('f20455b: a session that campaigns again and again', () => {
  /**
   * Each LeadershipHandle adds an 'abort' listener to its session's signal (to fire its
   * own) and never removes it: not at resign(), not at release(). A long-lived session
   * that takes turns leading (campaign, lead a while, resign, campaign again: the
   * pattern `session.campaign` is documented for, "for several elections or locks under
   * one lease") keeps every handle it ever had reachable from its signal, and from the
   * 11th Node warns "Possible EventTarget memory leak detected. 11 abort listeners added
   * to [AbortSignal]". Not an untrue answer, a leak the fix brought: its listener should
   * go when the handle's term ends (resign, release, endTerm). FAILS on main.
   */
  it('does not pile up a lease listener per handle after resign (FAILS on main)', async () => {
    const started = await ApiCluster.start();
    cluster = started;
    await electionsReady(started);
    const dlm = client(IDS.map((id) => address(started, id)));
    const session = await dlm.openSession({ ttlMs: 10_000 });
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => {
      if (warning.name === 'MaxListenersExceededWarning') warnings.push(warning.message);
    };
    process.on('warning', onWarning);
    try {
      for (let turn = 0; turn < 12; turn++) {
        const handle = await session.campaign('rev/elect-turns', `turn:${turn}`);
        await handle.resign();
      }
      await sleep(100);
    } finally {
      process.off('warning', onWarning);
    }
    // FAILS on main: "Possible EventTarget memory leak detected. 11 abort listeners
    // added to [AbortSignal]" (the session's signal, one per resigned handle).
    expect(warnings).toEqual([]);
    await session.close();
  }, 30_000);
});
