import { type LockWorkloadStats, noLockStats } from './lock-workload.ts';
import type { SimResult, SimStats } from './simulator.ts';

/**
 * What `npm run simulate` prints for a seed and for a run of seeds: the Raft figures and,
 * next to them, the lock workload the seed drove (sessions opened, grants, releases,
 * expiries, retries), so a reader sees what the safety checks were exercised on.
 */

/** The lock figures, in the order printed, with their labels. */
const LOCK_FIGURES: readonly (readonly [keyof LockWorkloadStats, string])[] = [
  ['sessionsOpened', 'sessions opened'],
  ['grants', 'grants'],
  ['releases', 'releases'],
  ['sessionsExpired', 'expiries'],
  ['retriesSent', 'retries'],
  ['retriesDeduplicated', 'deduplicated'],
  ['staleRejections', 'stale rejections'],
  ['clientCrashes', 'client crashes'],
  ['clientPauses', 'client pauses'],
  ['setGrants', 'set grants'],
  ['setsQueued', 'sets queued'],
  ['deadlockRefusals', 'deadlock refusals'],
  ['permitGrants', 'permit grants'],
  ['leaderGrants', 'elections won'],
  ['proclaims', 'proclaims'],
  ['proclaimRefusals', 'proclaim refusals'],
  ['kindMismatches', 'kind mismatches'],
];

const RAFT_FIGURES: readonly (readonly [keyof SimStats, string])[] = [
  ['elections', 'elections'],
  ['commits', 'commits'],
  ['applied', 'applied'],
  ['crashes', 'crashes'],
  ['pauses', 'pauses'],
  ['partitions', 'partitions'],
  ['staleLeaderFaults', 'stale-leader faults'],
  ['transfers', 'transfers'],
  ['snapshotsInstalled', 'snapshots installed'],
  ['configChangesProposed', 'config changes proposed'],
  ['configChangesApplied', 'applied'],
  ['registerWrites', 'register writes'],
  ['readsServed', 'reads served'],
  ['readsReturned', 'returned'],
  ['readsRefused', 'refused'],
  ['messagesSent', 'messages'],
  ['messagesDropped', 'dropped'],
];

function figures<T>(stats: T, labels: readonly (readonly [keyof T, string])[]): string {
  return labels.map(([key, label]) => `${label} ${String(stats[key])}`).join('  ');
}

/** One seed that passed: its Raft figures and its lock workload, a line each. */
export function formatSeedReport(result: SimResult): string {
  return (
    `seed ${result.seed} ok\n` +
    `  raft:  ${figures(result.stats, RAFT_FIGURES)}\n` +
    `  locks: ${figures(result.lockStats, LOCK_FIGURES)}\n`
  );
}

/** Sums of the lock figures over many seeds. */
export class LockTotals {
  readonly totals: LockWorkloadStats = noLockStats();

  add(stats: LockWorkloadStats): void {
    for (const key of Object.keys(this.totals) as (keyof LockWorkloadStats)[]) {
      this.totals[key] += stats[key];
    }
  }

  format(): string {
    return `  locks: ${figures(this.totals, LOCK_FIGURES)}\n`;
  }
}
