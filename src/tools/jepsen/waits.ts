import { setTimeout as sleep } from 'node:timers/promises';
import type { ProcessCluster } from '../process-cluster.ts';
import { now } from './history.ts';

/**
 * Bounded waits for the nemeses of a Jepsen run: every one returns (false when the time
 * ran out) rather than hang the run.
 */

/** Set once the run heals: every nemesis ends its fault and returns. */
export interface NemesisStop {
  readonly nemesis: boolean;
}

/** Sleeps `ms`, or less if the run heals meanwhile. */
export async function sleepUnless(ms: number, stop: NemesisStop): Promise<void> {
  const until = now() + ms;
  while (!stop.nemesis && now() < until) await sleep(Math.min(100, until - now()));
}

const POLL_MS = 50;
const STATUS_DEADLINE_MS = 500;

/** Until the node answers Status, so the next fault does not take two nodes down. */
export async function waitUntilServing(
  cluster: ProcessCluster,
  id: string,
  timeoutMs: number,
): Promise<boolean> {
  const until = now() + timeoutMs;
  while (now() < until) {
    if ((await statusOf(cluster, id)) !== null) return true;
    await sleep(POLL_MS);
  }
  return false;
}

/**
 * Until the node's process has exited: the one of pid `pid` when given (the process
 * another nemesis may already have restarted since, a new pid), else the one running now.
 */
export async function waitUntilExited(
  cluster: ProcessCluster,
  id: string,
  timeoutMs: number,
  pid: number | undefined = cluster.pid(id),
): Promise<boolean> {
  const stillThere = () => cluster.isRunning(id) && cluster.pid(id) === pid;
  const until = now() + timeoutMs;
  while (stillThere() && now() < until) await sleep(POLL_MS);
  return !stillThere();
}

/**
 * Until the node knows a leader and has applied what the other members had committed
 * when the wait began: it is back in the cluster, not just up.
 */
export async function waitUntilCaughtUp(
  cluster: ProcessCluster,
  id: string,
  members: readonly string[],
  timeoutMs: number,
): Promise<boolean> {
  let target = 0;
  for (const other of members) {
    if (other === id || !cluster.isRunning(other)) continue;
    target = Math.max(target, Number((await statusOf(cluster, other))?.commit_index ?? 0));
  }
  const until = now() + timeoutMs;
  while (now() < until) {
    const status = await statusOf(cluster, id);
    const leader = (status?.header as { leader_id?: string } | undefined)?.leader_id ?? '';
    if (status !== null && leader !== '' && Number(status.applied_index) >= target) return true;
    await sleep(POLL_MS);
  }
  return false;
}

/** The node's Status, or null if it does not answer in time. */
export async function statusOf(
  cluster: ProcessCluster,
  id: string,
): Promise<Record<string, unknown> | null> {
  try {
    return await cluster.call(id, 'Status', {}, STATUS_DEADLINE_MS, 'Cluster');
  } catch {
    return null;
  }
}
