import type { LockLimits } from '../lock/limits.ts';
import { Problems } from './fields.ts';
import type { RaftConfig } from './types.ts';

/**
 * Checks that the Raft timing and the session TTLs can work together. Each section is
 * valid on its own by now; these are combinations that pass every field check and
 * still cannot run:
 *
 * - An election timeout of fewer than ELECTION_HEARTBEATS_MIN heartbeats: one or two
 *   late heartbeats (a GC pause, a slow fsync, a busy link) and a follower starts an
 *   election against a healthy leader. etcd refuses the same ratio.
 * - A session TTL shorter than three keepalive rounds: clients send a keepalive every
 *   TTL / 3 (DESIGN §7), and a keepalive commits no sooner than one heartbeat round
 *   (followers learn the commit from the next heartbeat) plus one tick (the leader
 *   checks expiry timers once per tick). Below that, sessions expire while healthy.
 * - A session TTL shorter than the election timeout: after the leader fails, followers
 *   wait at least that long before they elect another, and no keepalive commits in
 *   the meantime, so every session expires at every failover. At the minimum a
 *   session survives only a failover whose election starts promptly (docs/operations.md).
 *
 * The TTL checks are skipped when the timing itself is refused: the minimums they
 * would show are derived from values that have to change anyway.
 */
export const ELECTION_HEARTBEATS_MIN = 5;
/** Clients send a keepalive every TTL / 3 (src/client, DESIGN §7). */
export const KEEPALIVES_PER_TTL = 3;

export function checkTiming(problems: Problems, raft: RaftConfig, lock: LockLimits): void {
  if (!checkHeartbeatRatio(problems, raft)) return;
  checkKeepAliveRound(problems, raft, lock);
  checkFailover(problems, raft, lock);
}

/**
 * What checkTiming finds in lock rules the node did not read from its file (the ones the
 * log put in force), as `path: message` lines; empty when they suit `raft`.
 */
export function lockTimingProblems(raft: RaftConfig, lock: LockLimits): readonly string[] {
  const problems = new Problems();
  checkTiming(problems, raft, lock);
  return problems.list;
}

function checkHeartbeatRatio(problems: Problems, raft: RaftConfig): boolean {
  const { electionTimeoutTicks, heartbeatIntervalTicks } = raft;
  const electionTicksMin = ELECTION_HEARTBEATS_MIN * heartbeatIntervalTicks;
  if (electionTimeoutTicks >= electionTicksMin) return true;
  problems.add(
    'raft.electionTimeoutTicks',
    `${electionTimeoutTicks} ticks is less than ${ELECTION_HEARTBEATS_MIN} × raft.heartbeatIntervalTicks = ${ELECTION_HEARTBEATS_MIN} × ${heartbeatIntervalTicks} = ${electionTicksMin} ticks: a follower would start an election after one or two late heartbeats (spurious elections); raise it to at least ${electionTicksMin} or lower the heartbeat`,
  );
  return false;
}

/** The shortest time in which one keepalive can commit and refresh the expiry timers. */
export function keepAliveRoundMs(raft: RaftConfig): number {
  return raft.heartbeatIntervalTicks * raft.tickIntervalMs + raft.tickIntervalMs;
}

/** How long followers go without a leader, at least, before they elect a new one. */
export function electionTimeoutMs(raft: RaftConfig): number {
  return raft.electionTimeoutTicks * raft.tickIntervalMs;
}

function checkKeepAliveRound(problems: Problems, raft: RaftConfig, lock: LockLimits): void {
  const roundMs = keepAliveRoundMs(raft);
  const ttlMsMin = KEEPALIVES_PER_TTL * roundMs;
  if (lock.sessionTtlMsMin >= ttlMsMin) return;
  const { heartbeatIntervalTicks, tickIntervalMs } = raft;
  problems.add(
    'lock.sessionTtlMsMin',
    `${lock.sessionTtlMsMin} ms cannot survive a keepalive round: clients keep a session alive every TTL / ${KEEPALIVES_PER_TTL}, and one keepalive needs at least raft.heartbeatIntervalTicks × raft.tickIntervalMs + raft.tickIntervalMs = ${heartbeatIntervalTicks} × ${tickIntervalMs} + ${tickIntervalMs} = ${roundMs} ms to commit and reach the expiry timers, so the minimum is ${KEEPALIVES_PER_TTL} × ${roundMs} = ${ttlMsMin} ms`,
  );
}

function checkFailover(problems: Problems, raft: RaftConfig, lock: LockLimits): void {
  const ttlMsMin = electionTimeoutMs(raft);
  if (lock.sessionTtlMsMin >= ttlMsMin) return;
  problems.add(
    'lock.sessionTtlMsMin',
    `${lock.sessionTtlMsMin} ms cannot survive a failover: followers wait raft.electionTimeoutTicks × raft.tickIntervalMs = ${raft.electionTimeoutTicks} × ${raft.tickIntervalMs} = ${ttlMsMin} ms without a leader before they elect a new one, so every session shorter than that expires at every failover; the minimum is ${ttlMsMin} ms`,
  );
}
