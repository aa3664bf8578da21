/** What the bench needs from a running cluster, dlm or etcd. */
export type SystemName = 'dlm' | 'etcd';

export interface ServerMember {
  readonly name: string;
  readonly clientAddress: string;
  /** The OS process, when this run started it: its CPU is then measured. */
  readonly pid: number | null;
  /** Where a dlm node this run started writes its log (its pauses are read from it). */
  readonly logPath?: string;
}

export interface ServerCluster {
  readonly system: SystemName;
  readonly members: readonly ServerMember[];
  /** The current leader's member name, or null when no member names one. */
  leader(): Promise<string | null>;
  /** Stops what this run started and removes its data; idempotent. */
  stop(): Promise<void>;
}

/** How long a cluster may take to elect a leader after start-up. */
export const LEADER_WAIT_MS = 30_000;
/** How long one leader must stay leader before a run counts on it. */
export const LEADER_STABLE_MS = 500;

/**
 * Waits until the same member has been leader for LEADER_STABLE_MS: right after
 * start-up a first leader can still be replaced, and the run would then measure CPU
 * against the wrong process.
 */
export async function waitForStableLeader(
  cluster: Pick<ServerCluster, 'leader' | 'system'>,
  timeoutMs = LEADER_WAIT_MS,
): Promise<string> {
  const deadlineMs = Date.now() + timeoutMs;
  let candidate: string | null = null;
  let sinceMs = Date.now();
  while (Date.now() < deadlineMs) {
    const leader = await cluster.leader();
    if (leader !== candidate) {
      candidate = leader;
      sinceMs = Date.now();
    } else if (candidate !== null && Date.now() - sinceMs >= LEADER_STABLE_MS) {
      return candidate;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${cluster.system}: no stable leader within ${timeoutMs} ms`);
}

export type Via = 'leader' | 'follower';

/**
 * The members' client addresses, the one clients should call first at the head:
 * the leader, or (via follower) the first member that is not the leader. Both clients
 * stay with the first address while it answers.
 */
export function endpointsVia(
  members: readonly ServerMember[],
  leader: string | null,
  via: Via,
): string[] {
  const first = (member: ServerMember): number =>
    Number(via === 'leader' ? member.name === leader : member.name !== leader);
  // A stable sort keeps the members' own order among equals.
  const sorted = [...members].sort((a, b) => first(b) - first(a));
  return sorted.map((member) => member.clientAddress);
}
