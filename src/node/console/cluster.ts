import { type MetricsClientTls, metricsGet } from './metrics-get.ts';
import type { NodeSummary } from './view.ts';

/** A member of the cluster as the console knows it: from the config file. */
export interface ConsoleMember {
  readonly id: string;
  readonly metricsAddress: string;
}

export type MemberHealth = 'ok' | 'no leader' | 'lagging' | 'unreachable';

export interface MemberView {
  readonly id: string;
  readonly metricsAddress: string;
  /** What the member said of itself; null when it did not answer. */
  readonly summary: NodeSummary | null;
  /** Why it did not answer. */
  readonly problem: string | null;
  /** Entries the cluster committed that this member has not applied yet. */
  readonly lagEntries: number | null;
  readonly health: MemberHealth;
}

export interface ClusterView {
  readonly members: readonly MemberView[];
  /** The highest commit index any member reported. */
  readonly commitIndex: number;
}

/** A member that has not applied this many committed entries is shown lagging. */
export const LAGGING_ENTRIES = 100;

/**
 * Asks every other member for its summary (GET /console/node.json on its metrics
 * address), at most `timeoutMs` each, all at once; this node's own comes without a
 * request. Only while someone watches the console.
 */
export async function clusterView(
  self: NodeSummary,
  selfAddress: string,
  members: readonly ConsoleMember[],
  timeoutMs: number,
  tls: MetricsClientTls | null = null,
): Promise<ClusterView> {
  const answers = await Promise.all(
    members.map((member) =>
      member.id === self.id
        ? { member: { ...member, metricsAddress: selfAddress }, summary: self, problem: null }
        : askMember(member, timeoutMs, tls),
    ),
  );
  // The node itself may not be in the file (it joined later): it is a member all the same.
  if (!members.some((member) => member.id === self.id)) {
    answers.unshift({
      member: { id: self.id, metricsAddress: selfAddress },
      summary: self,
      problem: null,
    });
  }
  const commitIndex = Math.max(...answers.map((answer) => answer.summary?.commitIndex ?? 0));
  return {
    commitIndex,
    members: answers.map(({ member, summary, problem }) => {
      const lagEntries = summary === null ? null : Math.max(0, commitIndex - summary.appliedIndex);
      return {
        id: member.id,
        metricsAddress: member.metricsAddress,
        summary,
        problem,
        lagEntries,
        health: healthOf(summary, lagEntries),
      };
    }),
  };
}

function healthOf(summary: NodeSummary | null, lagEntries: number | null): MemberHealth {
  if (summary === null) return 'unreachable';
  if (summary.leaderId === null) return 'no leader';
  if (lagEntries !== null && lagEntries > LAGGING_ENTRIES) return 'lagging';
  return 'ok';
}

async function askMember(
  member: ConsoleMember,
  timeoutMs: number,
  tls: MetricsClientTls | null,
): Promise<{ member: ConsoleMember; summary: NodeSummary | null; problem: string | null }> {
  try {
    const answer = await metricsGet(member.metricsAddress, '/console/node.json', timeoutMs, tls);
    if (answer.status !== 200) {
      return { member, summary: null, problem: `answered HTTP ${answer.status}` };
    }
    return { member, summary: JSON.parse(answer.body) as NodeSummary, problem: null };
  } catch (error) {
    const reason = error instanceof Error ? (error.cause ?? error) : error;
    const text = reason instanceof Error ? reason.message : String(reason);
    return { member, summary: null, problem: text };
  }
}
