import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Prng } from '../../util/prng.ts';
import { NetnsNetwork } from './netns.ts';
import { netnsNodes } from './netns-cluster.ts';
import { type PartitionPlan, planPartition, shapesFor } from './partition-plan.ts';

/**
 * The environment-dependent faults of a Jepsen run: network partitions (nodes in
 * network namespaces, cuts in the hub's bridge table) and clock faults (a node
 * restarted under libfaketime). Each says why it cannot run, and the run reports it
 * skipped, never passed.
 */

/** Debian's faketime package puts the preload library here. */
export const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

/**
 * The clock rates a node may run at within the drift bound ε = 5 % of the README's
 * safety contract (the simulator's largest clockDriftMax, src/tools/simulate/options.ts).
 */
export const CLOCK_RATE_IN_BOUND: readonly [number, number] = [0.95, 1.05];
/**
 * Beyond the bound: the node's clocks, monotonic included, run this many times too fast.
 * Aimed at the leader, its leases end early in real time, so a client can still believe
 * it holds a lock the cluster has granted again: real-time mutual exclusion may be lost,
 * and only fencing keeps the resource safe.
 */
export const CLOCK_RATE_BEYOND: readonly [number, number] = [1.5, 3];
/** How far a wall-clock jump moves the node's clock (either way). */
const WALL_JUMP_S: readonly [number, number] = [30, 3_600];

export type ClockFaultKind = 'wall-jump-forward' | 'wall-jump-back' | 'rate' | 'rate-beyond';

export interface ClockFault {
  readonly kind: ClockFaultKind;
  /** The node's environment for its restart under the fault. */
  readonly env: Readonly<Record<string, string>>;
  /** For a jump: the offset written to the timestamp file once the node serves. */
  readonly jumpTo: string | null;
  readonly detail: string;
}

/**
 * A clock fault for one node, every draw made whatever the kind (the schedule depends on
 * the seed alone). A wall-clock jump restarts the node with libfaketime reading its
 * offset from a file ("+0" at first) and with CLOCK_MONOTONIC left alone
 * (FAKETIME_DONT_FAKE_MONOTONIC=1), then moves the offset while the node runs: the
 * node's Date.now() jumps, its monotonic clock does not, and nothing in dlm may care.
 * A rate change restarts the node with FAKETIME="+0 xR": libfaketime 0.9.10 scales
 * CLOCK_MONOTONIC too unless told not to (measured: process.hrtime, performance.now and
 * libuv's timers all run R times fast), so the node's leases and election timers run at
 * that rate. Within CLOCK_RATE_IN_BOUND nothing may break.
 */
export function planClockFault(prng: Prng, timestampFile: string, beyond = false): ClockFault {
  const drawn = prng.pick(['wall-jump-forward', 'wall-jump-back', 'rate'] as const);
  const kind = beyond ? 'rate-beyond' : drawn;
  const jumpS = prng.intBetween(...WALL_JUMP_S);
  const [low, high] = beyond ? CLOCK_RATE_BEYOND : CLOCK_RATE_IN_BOUND;
  const rate = Number((low + prng.nextFloat() * (high - low)).toFixed(3));
  if (kind === 'rate' || kind === 'rate-beyond') {
    return {
      kind,
      env: { LD_PRELOAD: LIBFAKETIME, FAKETIME: `+0 x${rate}` },
      jumpTo: null,
      detail: `clock rate x${rate} (monotonic too)${beyond ? ', beyond the drift bound' : ''}`,
    };
  }
  const offset = `${kind === 'wall-jump-forward' ? '+' : '-'}${jumpS}s`;
  return {
    kind,
    env: {
      LD_PRELOAD: LIBFAKETIME,
      FAKETIME_TIMESTAMP_FILE: timestampFile,
      // Re-read the file at most once a second: FAKETIME_NO_CACHE would read it on every
      // clock call, which the node makes thousands of times a second.
      FAKETIME_CACHE_DURATION: '1',
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    },
    jumpTo: offset,
    detail: `wall clock jumps ${offset} while running (monotonic untouched)`,
  };
}

/** Writes libfaketime's offset file; a node started with it reads it within a second. */
export function setClockOffset(file: string, offset: string): void {
  writeFileSync(file, `${offset}\n`);
}

export function clockFaultTimestampFile(dir: string, id: string): string {
  return join(dir, `faketime-${id}.rc`);
}

/** Why clock faults cannot run here, or null. */
export function clockFaultsUnavailable(): string | null {
  if (process.platform !== 'linux') return `libfaketime is for Linux, this is ${process.platform}`;
  if (!existsSync(LIBFAKETIME)) return `${LIBFAKETIME} not found (apt-get install -y faketime)`;
  return null;
}

/** A seeded partition for the nemesis: a shape that fits the cluster's size, then its nodes. */
export function drawPartition(
  prng: Prng,
  ids: readonly string[],
  leader: string | null,
): PartitionPlan {
  return planPartition(prng.pick(shapesFor(ids.length)), prng, ids, leader);
}

/** The namespaces for a run's nodes, or why there are none. */
export async function partitionNetwork(
  ids: readonly string[],
): Promise<{ network: NetnsNetwork; skipped: null } | { network: null; skipped: string }> {
  const created = await NetnsNetwork.create({ nodeIds: ids });
  return created.ok
    ? { network: created.network, skipped: null }
    : { network: null, skipped: created.skipped };
}

/** The ProcessCluster nodes of a network: each listens on its namespace's bridge address. */
export function partitionedNodes(
  network: NetnsNetwork,
): { id: string; peerAddress: string; clientAddress: string; metricsAddress: string }[] {
  return netnsNodes(network).map((node) => ({
    id: node.id,
    peerAddress: node.peerAddress,
    clientAddress: node.clientAddress,
    metricsAddress: node.metricsAddress ?? `${network.address(node.id)}:9100`,
  }));
}
